"""stemme check-config: one test per finding through the pure check, then the real command."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.cases import add_caseworker
from bot.cli import DEMO_USER
from bot.crypto import KEY_BYTES, Keyring
from bot.ops.check_caselog import caselog_file_facts, caselog_findings
from bot.ops.check_config import Facts, Finding, check
from bot.ops.config_report import report, secret_values
from bot.ops.facts import gather_facts
from bot.providers import MESSENGER_WEBHOOK, SMS_INBOUND, SMS_STATUS, TELEGRAM_WEBHOOK
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.migrate import upgrade, upgrade_async
from tests.caselog.test_webhook_tls import private_ca

HEAD = "0003"
# Obviously fake values; the tests look for them in the output.
DB_PASSWORD = "fake-db-password-4711"
TWILIO_TOKEN = "fake-twilio-token-0815"
GOOD: dict[str, str] = {
    "STEMME_MODE": "production",
    "STEMME_PUBLIC_BASE_URL": "https://stemme.example.dk",
    "STEMME_DATABASE_URL": f"postgresql+asyncpg://stemme:{DB_PASSWORD}@db.example.dk/stemme",
    "STEMME_KEY_FILE": "/etc/stemme/keyring.json",
    "STEMME_DATA_DIR": "/var/lib/stemme",
    "STEMME_ONCALL_PHONE": "+447700900123",  # Ofcom's drama range: fictional
}
GOOD_FACTS = Facts(
    keyring=Keyring.generate(),
    key_file_mode=0o400,
    data_dir_mode=0o700,
    database_revision=HEAD,
    head_revision=HEAD,
    processes=2,
)
ZERO = "0" * 43 + "="  # urlsafe base64 of 32 zero bytes
RANDOM_KEY = "MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3BxcnN0dXY="  # 32 distinct bytes, fake


# Case-log sinks, fully configured (fictional receivers; the secret is test-only).
WEBHOOK: dict[str, str | None] = {
    "STEMME_CASELOG_WEBHOOK_URL": "https://sag.example.dk/entries",
    "STEMME_CASELOG_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}
FHIR: dict[str, str | None] = {
    "STEMME_CASELOG_FHIR_URL": "https://fhir.example.dk/r4",
    "STEMME_CASELOG_FHIR_TOKEN": "fake-fhir-token-0042",
    "STEMME_CASELOG_FHIR_CASE_SYSTEM": "urn:oid:1.2.208.999.1",  # fictional OID arc
}
HTTP = "http://sag.example.dk/entries"
WEAK = "whsec_" + "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh"  # 24 times "a": long enough, not random


def findings(env: dict[str, str | None], **facts: Any) -> list[Finding]:
    merged = {k: v for k, v in (GOOD | env).items() if v is not None}
    settings = Settings.from_env(merged, validate=False)
    return check(settings, dataclasses.replace(GOOD_FACTS, **facts))


def test_a_good_production_configuration_has_no_findings() -> None:
    assert findings({}) == []


CASES: list[tuple[str, str, dict[str, str | None], dict[str, Any]]] = [
    # (code, severity, settings changed, facts changed)
    ("mode", "problem", {"STEMME_MODE": "staging"}, {}),
    ("invalid-value", "problem", {"STEMME_OFFICE_HOURS": "8-15"}, {}),
    ("demo-mode", "warning", {"STEMME_MODE": "demo"}, {}),
    ("invalid-value", "problem", {"STEMME_LOG_LEVEL": "chatty"}, {}),
    ("log-debug", "warning", {"STEMME_LOG_LEVEL": "debug"}, {}),
    (
        "public-url-not-https",
        "problem",
        {"STEMME_PUBLIC_BASE_URL": "http://stemme.example.dk"},
        {},
    ),
    ("quick-exit-not-https", "warning", {"STEMME_QUICK_EXIT_URL": "http://example.dk/"}, {}),
    (
        "oncall-webhook-not-https",
        "problem",
        {"STEMME_ONCALL_WEBHOOK_URL": "http://alarm.example.dk/hook"},
        {},
    ),
    (
        "provider-api-overridden",
        "warning",
        {"STEMME_TWILIO_API_BASE_URL": "https://relay.example.dk"},
        {},
    ),
    (
        "provider-api-not-https",
        "problem",
        {"STEMME_MESSENGER_GRAPH_URL": "http://graph.example.dk"},
        {},
    ),
    ("keys-incomplete", "problem", {"STEMME_MASTER_KEY": "1:" + RANDOM_KEY}, {}),
    ("keys-not-configured", "problem", {"STEMME_KEY_FILE": None}, {}),
    ("keys-unusable", "problem", {}, {"keyring": None, "keyring_error": "No keyring: …"}),
    (
        "key-file-generated",
        "warning",
        {"STEMME_MODE": "demo", "STEMME_KEY_FILE": None},
        {"keyring": None, "keyring_error": "No keyring: …", "key_file_mode": None},
    ),
    (
        "keys-twice",
        "warning",
        {"STEMME_MASTER_KEY": "1:" + RANDOM_KEY, "STEMME_INDEX_KEY": RANDOM_KEY},
        {},
    ),
    (
        "keys-in-environment",
        "warning",
        {
            "STEMME_MASTER_KEY": "1:" + RANDOM_KEY,
            "STEMME_INDEX_KEY": RANDOM_KEY,
            "STEMME_KEY_FILE": None,
        },
        {},
    ),
    ("key-file-readable", "problem", {}, {"key_file_mode": 0o604}),
    ("key-file-group-readable", "warning", {}, {"key_file_mode": 0o640}),
    ("key-file-in-data-dir", "warning", {"STEMME_KEY_FILE": "/var/lib/stemme/keyring.json"}, {}),
    (
        "key-weak",
        "problem",
        {},
        {"keyring": Keyring({1: bytes(KEY_BYTES)}, 1, os.urandom(KEY_BYTES))},
    ),
    (
        "telegram-without-dpia",
        "problem",
        {
            "STEMME_TELEGRAM_ENABLED": "true",
            "STEMME_TELEGRAM_BOT_TOKEN": "1:fake",
            "STEMME_TELEGRAM_WEBHOOK_SECRET": "fake_secret",
        },
        {},
    ),
    (
        "messenger-without-dpia",
        "problem",
        {
            "STEMME_MESSENGER_ENABLED": "true",
            "STEMME_MESSENGER_PAGE_TOKEN": "fake-page",
            "STEMME_MESSENGER_APP_SECRET": "fake-app",
            "STEMME_MESSENGER_VERIFY_TOKEN": "fake-v",
        },
        {},
    ),
    ("sms-incomplete", "problem", {"STEMME_TWILIO_ACCOUNT_SID": "AC" + "0" * 32}, {}),
    (
        "telegram-token-missing",
        "problem",
        {
            "STEMME_TELEGRAM_ENABLED": "true",
            "STEMME_TELEGRAM_DPIA_APPROVED": "true",
            "STEMME_TELEGRAM_WEBHOOK_SECRET": "fake_secret",
        },
        {},
    ),
    (
        "telegram-mode",
        "problem",
        {
            "STEMME_TELEGRAM_ENABLED": "true",
            "STEMME_TELEGRAM_DPIA_APPROVED": "true",
            "STEMME_TELEGRAM_BOT_TOKEN": "1:fake",
            "STEMME_TELEGRAM_MODE": "push",
        },
        {},
    ),
    (
        "telegram-secret",
        "problem",
        {
            "STEMME_TELEGRAM_ENABLED": "true",
            "STEMME_TELEGRAM_DPIA_APPROVED": "true",
            "STEMME_TELEGRAM_BOT_TOKEN": "1:fake",
        },
        {},
    ),
    (
        "messenger-credentials",
        "problem",
        {"STEMME_MESSENGER_ENABLED": "true", "STEMME_MESSENGER_DPIA_APPROVED": "true"},
        {},
    ),
    (
        "placeholder-secret",
        "problem",
        {"STEMME_DATABASE_URL": "postgresql+asyncpg://stemme:CHANGE-ME@db.example.dk/stemme"},
        {},
    ),
    ("sqlite-several-processes", "problem", {"STEMME_DATABASE_URL": None}, {"processes": 2}),
    ("sqlite-in-production", "warning", {"STEMME_DATABASE_URL": None}, {"processes": 1}),
    ("database-unreachable", "problem", {}, {"database_error": "Cannot open the database …"}),
    ("database-not-migrated", "problem", {}, {"database_revision": "0001"}),
    ("demo-account", "problem", {}, {"demo_accounts": (DEMO_USER,)}),
    ("oncall-missing", "problem", {"STEMME_ONCALL_PHONE": None}, {}),
    ("data-dir-open", "warning", {}, {"data_dir_mode": 0o755}),
    # -- the case log's sinks --
    ("caselog-webhook-not-https", "problem", WEBHOOK | {"STEMME_CASELOG_WEBHOOK_URL": HTTP}, {}),
    (
        "caselog-webhook-secret-weak",
        "problem",
        WEBHOOK | {"STEMME_CASELOG_WEBHOOK_SECRET": WEAK},
        {},
    ),
    ("caselog-timeout", "warning", WEBHOOK | {"STEMME_CASELOG_WEBHOOK_TIMEOUT": "120"}, {}),
    ("caselog-timeout", "warning", FHIR | {"STEMME_CASELOG_FHIR_TIMEOUT": "0.2"}, {}),
    ("caselog-ca-unused", "warning", {"STEMME_CASELOG_WEBHOOK_CA_FILE": "/etc/stemme/ca.pem"}, {}),
    ("caselog-ca-unused", "warning", {"STEMME_CASELOG_FHIR_CA_FILE": "/etc/stemme/ca.pem"}, {}),
    ("caselog-fhir-not-https", "problem", FHIR | {"STEMME_CASELOG_FHIR_URL": HTTP}, {}),
    ("caselog-fhir-no-token", "warning", FHIR | {"STEMME_CASELOG_FHIR_TOKEN": None}, {}),
    ("caselog-fhir-case-system", "warning", FHIR | {"STEMME_CASELOG_FHIR_CASE_SYSTEM": None}, {}),
    (
        "caselog-file-unusable",
        "problem",
        FHIR,
        {"caselog_file_errors": (("STEMME_CASELOG_FHIR_CA_FILE", "holds no PEM certificate."),)},
    ),
    ("caselog-pdf-dir-open", "warning", {}, {"caselog_pdf_dir_mode": 0o755}),
]


@pytest.mark.parametrize(
    ("code", "severity", "env", "facts"), CASES, ids=[case[0] for case in CASES]
)
def test_each_finding(
    code: str, severity: str, env: dict[str, str | None], facts: dict[str, Any]
) -> None:
    found = {(f.code, f.severity) for f in findings(env, **facts)}
    assert (code, severity) in found


def test_every_finding_code_has_a_test() -> None:
    source = Path(check.__code__.co_filename).read_text(encoding="utf-8")
    source += Path(caselog_findings.__code__.co_filename).read_text(encoding="utf-8")
    # Codes appear as the first string argument of _problem/_warning/Finding.
    codes = set(re.findall(r'(?:_problem|_warning)\(\s*"([a-z-]+)"', source))
    codes |= {"telegram-without-dpia", "messenger-without-dpia", "database-not-migrated"}
    assert codes <= {case[0] for case in CASES}


def test_configured_sinks_have_no_findings() -> None:
    assert findings(WEBHOOK | FHIR) == []


def test_sink_findings_never_show_the_secrets() -> None:
    text = " ".join(
        f.message for f in findings(WEBHOOK | FHIR | {"STEMME_CASELOG_FHIR_URL": HTTP})
    )
    assert text and "fake-fhir-token-0042" not in text
    assert str(WEBHOOK["STEMME_CASELOG_WEBHOOK_SECRET"])[6:] not in text


def test_weak_keys_are_named_without_showing_them() -> None:
    master = os.urandom(KEY_BYTES)
    for keyring in (
        Keyring({1: master}, 1, master),  # the index key reused as a master key
        Keyring({1: master, 2: master}, 2, os.urandom(KEY_BYTES)),  # one key, two versions
        Keyring({1: bytes(range(8)) * 4}, 1, os.urandom(KEY_BYTES)),  # patterned
    ):
        weak = [f for f in findings({}, keyring=keyring) if f.code == "key-weak"]
        assert weak and all(master.hex() not in f.message for f in weak)


def test_demo_mode_on_a_laptop_is_fine() -> None:
    settings = Settings.from_env({}, validate=False)
    facts = Facts(keyring=Keyring.generate(), key_file_mode=0o600, data_dir_mode=0o700)
    assert {f.severity for f in check(settings, facts)} == {"warning"}


def test_report_shows_the_webhook_urls_and_hides_every_secret() -> None:
    env = GOOD | {
        "STEMME_TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
        "STEMME_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "STEMME_TWILIO_FROM": "+447700900001",
        "STEMME_MASTER_KEY": "1:" + RANDOM_KEY,  # would be reported with keys-twice
        "STEMME_INDEX_KEY": RANDOM_KEY,
    }
    settings = Settings.from_env(env, validate=False)
    text = report(settings, check(settings, GOOD_FACTS))
    for path in (SMS_INBOUND, SMS_STATUS, TELEGRAM_WEBHOOK, MESSENGER_WEBHOOK):
        assert f"https://stemme.example.dk{path}" in text
    for secret in (DB_PASSWORD, TWILIO_TOKEN, RANDOM_KEY):
        assert secret in secret_values(settings)
        assert secret not in text
    assert "postgresql+asyncpg://stemme:***@db.example.dk/stemme" in text


# -- gathering the facts from real files and databases -------------------------------------------


async def test_facts_come_from_the_key_file_and_the_database(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "keyring.json"
    key_file.parent.mkdir()
    Keyring.generate().save(key_file)
    key_file.chmod(0o644)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    settings = Settings.from_env(
        {"STEMME_DATA_DIR": str(data), "STEMME_KEY_FILE": str(key_file)}, validate=False
    )
    missing = await gather_facts(settings, demo_username=DEMO_USER)
    assert (missing.database_revision, missing.head_revision) == (None, HEAD)
    assert not (data / "stemme.db").exists()  # looking never creates a database
    await upgrade_async(settings.effective_database_url)
    db = Database(settings.effective_database_url)
    try:
        await add_caseworker(
            db, username=DEMO_USER, display_name="Demo (fiktiv)", password="x" * 12
        )
    finally:
        await db.dispose()
    facts = await gather_facts(settings, demo_username=DEMO_USER, processes=3)
    assert facts.keyring is not None and facts.keyring_error is None
    assert (facts.key_file_mode, facts.data_dir_mode) == (0o644, 0o700)
    assert (facts.database_revision, facts.demo_accounts, facts.processes) == (HEAD, ("demo",), 3)


async def test_an_unreachable_database_is_reported_without_its_password(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql+asyncpg://stemme:{DB_PASSWORD}@127.0.0.1:{port}/stemme"
    settings = Settings.from_env({"STEMME_DATABASE_URL": url, "STEMME_DATA_DIR": str(tmp_path)})
    facts = await gather_facts(settings, demo_username=DEMO_USER)
    assert facts.database_error is not None and f":{port}/stemme" in facts.database_error
    assert DB_PASSWORD not in facts.database_error


def test_case_log_files_are_looked_at(tmp_path: Path) -> None:
    ca_file = private_ca(tmp_path)[0]
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    journal = tmp_path / "journal"
    journal.mkdir(mode=0o750)
    good = Settings.from_env(
        {
            "STEMME_CASELOG_WEBHOOK_CA_FILE": str(ca_file),
            "STEMME_CASELOG_FHIR_CA_FILE": str(garbage),
            "STEMME_CASELOG_PDF_DIR": str(journal),
        },
        validate=False,
    )
    errors, mode = caselog_file_facts(good)
    assert mode == 0o750
    assert [variable for variable, _ in errors] == ["STEMME_CASELOG_FHIR_CA_FILE"]
    assert "no PEM certificate" in errors[0][1]
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    missing = tmp_path / "missing.pem"
    bad = Settings.from_env(
        {
            "STEMME_CASELOG_WEBHOOK_CA_FILE": str(missing),
            "STEMME_CASELOG_PDF_DIR": str(blocked),
        },
        validate=False,
    )
    errors, _ = caselog_file_facts(bad)
    assert dict(errors) == {
        "STEMME_CASELOG_WEBHOOK_CA_FILE": f"the CA file {missing} does not exist.",
        "STEMME_CASELOG_PDF_DIR": "is not a directory Stemme can write.",
    }


# -- the command -------------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    stemme = Path(sys.executable).with_name("stemme")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STEMME_")}
    return subprocess.run(
        [str(stemme), *args],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_command_exits_0_when_fine_and_1_with_problems_never_printing_secrets(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "keyring.json"
    keyring = Keyring.generate()
    keyring.save(key_file)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    env = {
        "STEMME_MODE": "production",
        "STEMME_PUBLIC_BASE_URL": "https://stemme.example.dk",
        "STEMME_KEY_FILE": str(key_file),
        "STEMME_DATA_DIR": str(data),
        "STEMME_ONCALL_PHONE": "+447700900123",
    }
    upgrade(f"sqlite+aiosqlite:///{data / 'stemme.db'}")  # what `stemme init` does
    fine = run_cli("check-config", env=env)
    assert fine.returncode == 0, fine.stdout
    assert "0 problem(s)" in fine.stdout and "[sqlite-in-production]" in fine.stdout

    secrets = {
        "STEMME_TELEGRAM_BOT_TOKEN": "123456:fake-telegram-token-for-tests",
        "STEMME_TELEGRAM_WEBHOOK_SECRET": "fake_webhook_secret_for_tests",
        "STEMME_MESSENGER_APP_SECRET": "fake-messenger-app-secret",
        "STEMME_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
    }
    insecure = (
        env
        | secrets
        | {
            "STEMME_PUBLIC_BASE_URL": "http://stemme.example.dk",
            "STEMME_TELEGRAM_ENABLED": "true",
        }
    )
    key_file.chmod(0o644)
    result = run_cli("check-config", "--processes", "2", env=insecure)
    assert result.returncode == 1
    for code in (
        "public-url-not-https",
        "telegram-without-dpia",
        "key-file-readable",
        "sqlite-several-processes",
        "sms-incomplete",
    ):
        assert f"[{code}]" in result.stdout
    assert f"http://stemme.example.dk{SMS_INBOUND}" in result.stdout
    everything = result.stdout + result.stderr
    for value in [*secrets.values(), keyring.to_json()]:
        assert value not in everything
