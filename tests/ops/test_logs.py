"""The log output: text or JSON, and the redaction filter every line passes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.crypto import Keyring
from bot.ops.logs import MASK, configure_logging, redact
from bot.settings import ConfigError, Settings


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("from +4512345678 via sms", "+4512345678"),
        ("from +44 7700 900123", "7700 900123"),
        ("call 12 34 56 78 tonight", "12 34 56 78"),
        ("messenger psid 7000000000123 wrote", "7000000000123"),
        ("telegram chat 5123456789", "5123456789"),
        (
            "secret is whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw ok",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ("password=hunter2hunter2", "hunter2hunter2"),
        ('{"text": "jeg er bange", "n": 1}', "jeg er bange"),
        ("{'address': '+447700900123'}", "447700900123"),
        ("token pfMnLLAaUTM3iSMc7YHBiR0i8unGXxWd in path", "pfMnLLAaUTM3iSMc7YHBiR0i8unGXxWd"),
        ("GET /c/pfMnLLAaUTM3iSMc7YHBiR0i8unGXxWd/messages", "pfMnLLAaUTM3iSMc7YHBiR0i8unGXxWd"),
        ("code: K7M2QX", "K7M2QX"),
    ],
)
def test_redact_masks_secrets_and_addresses(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert MASK in redact(text)


def test_redact_masks_every_form_of_key_material() -> None:
    keyring = Keyring.generate()
    raw = json.loads(keyring.to_json())
    for key in [*raw["master_keys"].values(), raw["index_key"]]:
        assert key.rstrip("=") not in redact(f"key {key} loaded")
    assert raw["index_key"].rstrip("=") not in redact(keyring.to_json())


@pytest.mark.parametrize(
    "text",
    [
        "outbox job 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b (deliver) failed: TemporaryFailure",
        "released 3 outbox jobs left by a stopped process",
        "at 2026-11-23 03:25:31.123 on port 8080",
        "safety flag on case 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b: violence,risk",
        "sms: verification failed on /webhooks/twilio/sms: bad signature",
    ],
)
def test_redact_keeps_what_operators_need(text: str) -> None:
    assert redact(text) == text


@given(st.from_regex(r"\+45[2-9][0-9]{7}", fullmatch=True), st.text(max_size=40))
def test_no_danish_mobile_number_survives(number: str, noise: str) -> None:
    assert number not in redact(f"{noise} {number} {noise}")


def test_json_lines_are_redacted_with_extras_and_tracebacks(root_restored: None) -> None:
    out = io.StringIO()
    settings = Settings.from_env({}, log_format="json", log_level="DEBUG")
    configure_logging(settings, stream=out)
    log = logging.getLogger("stemme.test")
    log.debug("child wrote from %s", "+4512345678", extra={"text": "jeg er bange", "n": 3})
    try:
        raise ValueError("bad token pfMnLLAaUTM3iSMc7YHBiR0i8unGXxWd")
    except ValueError:
        log.exception("could not parse")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "DEBUG" and first["logger"] == "stemme.test"
    assert first["message"] == f"child wrote from {MASK}"
    assert (first["text"], first["n"]) == (MASK, 3)
    assert second["message"] == "could not parse"
    assert "ValueError" in second["exc"] and "pfMnLLAaUTM3" not in second["exc"]


def test_text_lines_are_redacted_too(root_restored: None) -> None:
    out = io.StringIO()
    configure_logging(Settings.from_env({}), stream=out)
    logging.getLogger("stemme.test").warning("secret whsec_abcdefghijklmnopqrstuvwx1")
    line = out.getvalue()
    assert " WARNING stemme.test secret whsec_[redacted]" in line
    logging.getLogger("stemme.test").debug("not at INFO")
    assert "not at INFO" not in out.getvalue()


def test_chatty_libraries_are_quiet_after_configuration(root_restored: None) -> None:
    configure_logging(Settings.from_env({}, log_level="DEBUG"), stream=io.StringIO())
    for name in ("httpx", "twilio", "sqlalchemy.engine"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    for name in ("telegram", "aiosqlite"):
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name


def test_operations_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="STEMME_LOG_FORMAT"):
        Settings.from_env({"STEMME_LOG_FORMAT": "xml"})
    with pytest.raises(ConfigError, match="STEMME_METRICS_TOKEN"):
        Settings.from_env({"STEMME_METRICS_TOKEN": "short"})
    with pytest.raises(ConfigError, match="STEMME_REQUEST_BODY_TIMEOUT"):
        Settings.from_env({"STEMME_REQUEST_BODY_TIMEOUT": "0"})
