"""``stemme check-config``: what is missing or insecure in a configuration, and the webhook URLs.

:func:`check` is pure: it looks at the :class:`~bot.settings.Settings` and at :class:`Facts`
gathered beforehand (the keyring, the key file's mode, what the database holds; see
:mod:`bot.ops.facts`), so every finding is testable without a process. Findings name variables,
never their values, and :func:`report` scrubs every secret value from what it prints as well.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from bot.crypto import Keyring
from bot.ops.check_caselog import caselog_findings
from bot.settings import ConfigError, Settings

Severity = Literal["problem", "warning"]

# Telegram's rule for webhook secret tokens (setWebhook refuses anything else).
_TELEGRAM_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
# Words that mark a value copied from documentation instead of generated.
_PLACEHOLDERS = ("change-me", "changeme", "replace-me", "example")
# 32 random bytes have about 30 distinct values; fewer than 16 means they were not random.
_MIN_DISTINCT_BYTES = 16


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing to fix (``problem``) or to know (``warning``); ``code`` is stable for scripts."""

    severity: Severity
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Facts:
    """What the check needs from outside the settings.

    Attributes:
        keyring: The keyring as ``stemme serve`` would load it, if it loads.
        keyring_error: Why it does not load (never key material).
        key_file_mode: Permission bits of the key file in use; None when none is used or found.
        data_dir_mode: Permission bits of the data directory, if it exists.
        database_error: Why the database could not be opened (no credentials in it).
        database_revision: Migration revision in the database (None: empty or missing).
        head_revision: The newest migration this code has.
        demo_accounts: Active caseworker accounts that ``stemme demo`` creates.
        processes: How many Stemme processes will share the database.
        caselog_file_errors: ``(variable, why)`` for case-log CA files and a PDF directory
            that cannot be used (see :mod:`bot.ops.check_caselog`).
        caselog_pdf_dir_mode: Permission bits of the PDF journal directory, if it exists.
    """

    keyring: Keyring | None = None
    keyring_error: str | None = None
    key_file_mode: int | None = None
    data_dir_mode: int | None = None
    database_error: str | None = None
    database_revision: str | None = None
    head_revision: str | None = None
    demo_accounts: tuple[str, ...] = ()
    processes: int = 1
    caselog_file_errors: tuple[tuple[str, str], ...] = ()
    caselog_pdf_dir_mode: int | None = None


def check(settings: Settings, facts: Facts) -> list[Finding]:
    """Every finding for this configuration, problems first."""
    findings = [
        *_readable(settings),
        *_urls(settings),
        *_keys(settings, facts),
        *_channels(settings),
        *_database(settings, facts),
        *_operations(settings, facts),
        *(
            Finding(*found)
            for found in caselog_findings(
                settings,
                file_errors=facts.caselog_file_errors,
                pdf_dir_mode=facts.caselog_pdf_dir_mode,
            )
        ),
    ]
    return sorted(findings, key=lambda f: f.severity != "problem")


# -- the checks -----------------------------------------------------------------------------


def _problem(code: str, message: str) -> Finding:
    return Finding("problem", code, message)


def _warning(code: str, message: str) -> Finding:
    return Finding("warning", code, message)


def _readable(settings: Settings) -> Iterator[Finding]:
    """Values ``stemme serve`` cannot use at all (checked as in demo mode; production follows)."""
    if settings.mode not in ("demo", "production"):
        yield _problem("mode", "STEMME_MODE must be 'demo' or 'production'.")
        return
    try:
        dataclasses.replace(settings, mode="demo").validate()
    except ConfigError as exc:
        yield _problem("invalid-value", str(exc))
    if not settings.production:
        yield _warning(
            "demo-mode",
            "STEMME_MODE is 'demo': fake providers, a generated key file and relaxed checks. "
            "Set STEMME_MODE=production before real children's data arrives.",
        )
    if settings.production and settings.log_level.upper() == "DEBUG":
        yield _warning(
            "log-debug",
            "STEMME_LOG_LEVEL=DEBUG in production: libraries log request details at that level.",
        )


def _https(url: str) -> bool:
    return urlsplit(url).scheme == "https"


def _urls(settings: Settings) -> Iterator[Finding]:
    if settings.production and not _https(settings.public_base_url):
        yield _problem(
            "public-url-not-https",
            "STEMME_PUBLIC_BASE_URL is not https: logins, the child's chat link and provider "
            "signatures would travel in the clear. Set the https address the world sees.",
        )
    if not _https(settings.quick_exit_url):
        yield _warning("quick-exit-not-https", "STEMME_QUICK_EXIT_URL should be an https page.")
    if (
        settings.production
        and settings.oncall_webhook_url
        and not _https(settings.oncall_webhook_url)
    ):
        yield _problem(
            "oncall-webhook-not-https",
            "STEMME_ONCALL_WEBHOOK_URL is not https: on-call alerts name the case.",
        )
    for variable, value in (
        ("STEMME_TWILIO_API_BASE_URL", settings.twilio_api_base_url),
        ("STEMME_TELEGRAM_API_BASE_URL", settings.telegram_api_base_url),
    ):
        if settings.production and value:
            yield _warning(
                "provider-api-overridden",
                f"{variable} is set: messages go to that address instead of the provider. "
                "Leave it empty unless you run a vetted relay.",
            )
    if settings.production and not _https(settings.messenger_graph_url):
        yield _problem(
            "provider-api-not-https", "STEMME_MESSENGER_GRAPH_URL must be an https address."
        )


def _keys(settings: Settings, facts: Facts) -> Iterator[Finding]:
    env_master, env_index = bool(settings.master_key), bool(settings.index_key)
    if env_master != env_index:
        yield _problem(
            "keys-incomplete",
            "Only one of STEMME_MASTER_KEY and STEMME_INDEX_KEY is set; set both, or neither "
            "and use STEMME_KEY_FILE.",
        )
    uses_env = env_master and env_index
    if settings.production and not uses_env and settings.key_file is None:
        yield _problem(
            "keys-not-configured",
            "No keys configured: set STEMME_KEY_FILE to a file made with `stemme keys "
            "generate`, kept outside the data directory (or STEMME_MASTER_KEY and "
            "STEMME_INDEX_KEY).",
        )
    elif facts.keyring_error is not None:
        if not settings.production and not uses_env and facts.key_file_mode is None:
            yield _warning(
                "key-file-generated",
                f"No key file at {settings.effective_key_file}: demo mode creates one at start.",
            )
        else:
            yield _problem("keys-unusable", facts.keyring_error)
    if uses_env and settings.key_file is not None:
        yield _warning(
            "keys-twice",
            "Both STEMME_MASTER_KEY/STEMME_INDEX_KEY and STEMME_KEY_FILE are set; the "
            "variables win and the key file is ignored.",
        )
    if settings.production and uses_env:
        yield _warning(
            "keys-in-environment",
            "The keys are in environment variables, which other tools show (`docker inspect`, "
            "`systemctl show`); prefer STEMME_KEY_FILE with a Docker secret or LoadCredential=.",
        )
    if not uses_env and facts.key_file_mode is not None:
        mode = facts.key_file_mode
        if mode & 0o007 or mode & 0o020:
            yield _problem(
                "key-file-readable",
                f"Other users can read or change the key file {settings.effective_key_file} "
                f"(mode {mode:04o}); chmod 600 it (640 root:stemme for admin commands).",
            )
        elif mode & 0o040:
            yield _warning(
                "key-file-group-readable",
                f"The key file {settings.effective_key_file} is readable by its group (mode "
                f"{mode:04o}): make sure the service account is the group's only member.",
            )
        if settings.production and _inside(settings.effective_key_file, settings.data_dir):
            yield _warning(
                "key-file-in-data-dir",
                "The key file is inside STEMME_DATA_DIR, so a copy of the data directory "
                "carries the keys with the data. Keep it elsewhere (e.g. /etc/stemme).",
            )
    if facts.keyring is not None:
        for reason in _weak(facts.keyring):
            yield _problem("key-weak", reason)


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def _weak(keyring: Keyring) -> Iterator[str]:
    keys = dict(keyring.master_keys)
    for version, key in sorted(keys.items()):
        if len(set(key)) < _MIN_DISTINCT_BYTES:
            yield (
                f"Master key version {version} is not random (too few distinct bytes); make "
                "new keys with `stemme keys generate`."
            )
    if len(set(keys.values())) < len(keys):
        yield "Two master key versions hold the same key."
    if keyring.index_key in keys.values():
        yield "The index key equals a master key; they must be independent."
    if len(set(keyring.index_key)) < _MIN_DISTINCT_BYTES:
        yield "The index key is not random (too few distinct bytes)."


def _channels(settings: Settings) -> Iterator[Finding]:
    for name, enabled, approved in (
        ("TELEGRAM", settings.telegram_enabled, settings.telegram_dpia_approved),
        ("MESSENGER", settings.messenger_enabled, settings.messenger_dpia_approved),
    ):
        if enabled and not approved:
            yield _problem(
                f"{name.lower()}-without-dpia",
                f"STEMME_{name}_ENABLED without STEMME_{name}_DPIA_APPROVED=true: messages "
                "would pass through a third party before the municipality's data-protection "
                "impact assessment approved it.",
            )
    sms = (settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_from)
    if any(sms) and not all(sms):
        yield _problem(
            "sms-incomplete",
            "SMS needs all of STEMME_TWILIO_ACCOUNT_SID, STEMME_TWILIO_AUTH_TOKEN and "
            "STEMME_TWILIO_FROM; with only some of them SMS stays off.",
        )
    if settings.telegram_enabled:
        if not settings.telegram_bot_token:
            yield _problem("telegram-token-missing", "Telegram needs STEMME_TELEGRAM_BOT_TOKEN.")
        if settings.telegram_mode not in ("webhook", "polling"):
            yield _problem("telegram-mode", "STEMME_TELEGRAM_MODE must be webhook or polling.")
        elif settings.telegram_mode == "webhook" and not _TELEGRAM_SECRET.fullmatch(
            settings.telegram_webhook_secret
        ):
            yield _problem(
                "telegram-secret",
                "STEMME_TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ "
                "and - (generate one: `openssl rand -hex 32`).",
            )
    if settings.messenger_enabled:
        for variable, value in (
            ("STEMME_MESSENGER_PAGE_TOKEN", settings.messenger_page_token),
            ("STEMME_MESSENGER_APP_SECRET", settings.messenger_app_secret),
            ("STEMME_MESSENGER_VERIFY_TOKEN", settings.messenger_verify_token),
        ):
            if not value:
                yield _problem("messenger-credentials", f"Messenger needs {variable}.")
    for f in dataclasses.fields(settings):
        value = str(getattr(settings, f.name)).lower()
        if not f.repr and any(word in value for word in _PLACEHOLDERS):
            yield _problem(
                "placeholder-secret",
                f"STEMME_{f.name.upper()} still holds a placeholder; set the real value.",
            )


def _database(settings: Settings, facts: Facts) -> Iterator[Finding]:
    url = settings.effective_database_url
    sqlite = url.startswith("sqlite")
    if any(word in "".join(url_passwords(url)).lower() for word in _PLACEHOLDERS):
        yield _problem(
            "placeholder-secret",
            "The password in STEMME_DATABASE_URL still is a placeholder; set the real one.",
        )
    if sqlite and facts.processes > 1:
        yield _problem(
            "sqlite-several-processes",
            f"SQLite with {facts.processes} processes: each process would release the others' "
            "outbox jobs at start-up and live updates would not cross processes. Use "
            "PostgreSQL (STEMME_DATABASE_URL=postgresql+asyncpg://…) to run several.",
        )
    elif sqlite and settings.production:
        yield _warning(
            "sqlite-in-production",
            "SQLite in production: fine for one process on one machine; several processes "
            "need PostgreSQL.",
        )
    if facts.database_error is not None:
        yield _problem("database-unreachable", facts.database_error)
    elif facts.head_revision is not None and facts.database_revision != facts.head_revision:
        found = f"at migration {facts.database_revision}" if facts.database_revision else "empty"
        yield Finding(
            "problem" if settings.production else "warning",
            "database-not-migrated",
            f"The database is {found} and this version needs migration {facts.head_revision}: "
            "run `stemme init` (after a backup) before `stemme serve`.",
        )
    if settings.production and facts.demo_accounts:
        yield _problem(
            "demo-account",
            f"The demo caseworker account ({', '.join(facts.demo_accounts)}) exists in a "
            "production database, with a password printed on a screen once. Deactivate or "
            "delete it.",
        )


def _operations(settings: Settings, facts: Facts) -> Iterator[Finding]:
    if settings.production and not (settings.oncall_phone or settings.oncall_webhook_url):
        yield _problem(
            "oncall-missing",
            "No on-call contact: a risk flag nobody acknowledges would reach no one. Set "
            "STEMME_ONCALL_PHONE (the døgnvagt) and/or STEMME_ONCALL_WEBHOOK_URL.",
        )
    if facts.data_dir_mode is not None and facts.data_dir_mode & 0o077:
        yield _warning(
            "data-dir-open",
            f"STEMME_DATA_DIR {settings.data_dir} is open to other users (mode "
            f"{facts.data_dir_mode:04o}); chmod 700 it.",
        )


def url_passwords(url: str) -> list[str]:
    """The password in a URL's user info, as written and percent-decoded (or nothing)."""
    if "://" not in url:
        return []
    netloc = urlsplit(url).netloc
    userinfo, at, _host = netloc.rpartition("@")
    if not at:
        return []
    _user, colon, password = userinfo.partition(":")
    return [password, unquote(password)] if colon and password else []
