"""Configuration, read once into one frozen object.

Nothing else in Stemme reads ``os.environ``: :func:`Settings.from_env` is called by the CLI and the
result is passed down. Every variable has the prefix ``STEMME_``; the defaults make a working demo
on a laptop (SQLite under ``./var/``, a generated key file, http on 127.0.0.1). In production mode
the service refuses to start until the secrets and a public https URL are configured, and the
error says exactly what to set.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

PREFIX = "STEMME_"
Mode = Literal["demo", "production"]


class ConfigError(Exception):
    """The configuration cannot be used; the message names the variables to set."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything Stemme is configured with. Build it with :meth:`from_env`."""

    mode: Mode = "demo"
    host: str = "127.0.0.1"
    port: int = 8080
    public_base_url: str = "http://127.0.0.1:8080"
    data_dir: Path = Path("var")
    database_url: str = ""
    # Secrets. Either both keys as variables, or a key file (generated in demo mode).
    master_key: str = dataclasses.field(default="", repr=False)
    index_key: str = dataclasses.field(default="", repr=False)
    key_file: Path | None = None
    default_language: Literal["da", "en"] = "da"
    municipality_name: str = "Demo Kommune (fiktiv)"
    quick_exit_url: str = "https://www.dr.dk/"
    caselog_dir: Path | None = None
    # -- where participation entries are filed (JSONL file; a signed webhook when a URL is set) --
    caselog_jsonl: bool = True
    caselog_webhook_url: str = ""
    caselog_webhook_secret: str = dataclasses.field(default="", repr=False)  # whsec_<base64>
    caselog_webhook_timeout: float = 10.0  # seconds per attempt
    caselog_webhook_ca_file: Path | None = None  # a private CA for the receiver's certificate
    # A FHIR R4 server (transactions to its base URL) and/or printable PDF journal notes.
    caselog_fhir_url: str = ""
    caselog_fhir_token: str = dataclasses.field(default="", repr=False)  # bearer token, if any
    caselog_fhir_timeout: float = 10.0  # seconds per attempt
    caselog_fhir_ca_file: Path | None = None  # a private CA for the FHIR server's certificate
    caselog_fhir_case_system: str = "urn:stemme:case-ref"  # identifier system of case_ref
    caselog_pdf_dir: Path | None = None  # set: a PDF journal note is written here
    caselog_pdf_per: str = "entry"  # "entry": one file per entry; "day": per case and day
    outbox_poll_seconds: float = 1.0
    outbox_batch: int = 50
    session_idle_minutes: int = 30
    session_absolute_hours: int = 10
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one JSON object per line; both redacted
    # -- operations: /readyz, /metrics, slow clients --
    metrics_token: str = dataclasses.field(default="", repr=False)  # empty: /metrics is off
    ready_max_outbox_lag_seconds: float = 300.0  # /readyz answers 503 above this outbox lag
    request_body_timeout: float = 10.0  # seconds to receive a request's body, else 408

    # -- the bot ---------------------------------------------------------------------------
    office_hours: str = "08:00-15:00"  # Europe/Copenhagen; outside: auto-reply ("24:00" ends)
    office_days: str = "1-5"  # ISO weekdays (1 = Monday) the caseworkers read messages
    oncall_phone: str = ""  # the municipality's døgnvagt, told to the child and alerted
    oncall_webhook_url: str = ""
    escalate_after_minutes: int = 30  # an unacknowledged urgent flag goes to on-call after this
    checkin_expiry_hours: int = 24
    invitation_hours: int = 72
    response_hours: int = 24  # the team queue shows what nobody answered within this
    secure_link_days: int = 7  # a reply sent as a secure link can be read this long
    retention_days: int = 30  # local copy after confirmed filing
    licence_holders: str = ""  # comma-separated; restricted instruments need their holder here
    instruments_dir: Path | None = None  # the municipality's own or licensed instruments
    verbatim_entries: bool = False

    # -- channels (SMS switches on with credentials; Telegram/Messenger need the DPIA flag) ---
    sandbox: bool = True  # demo only: run the fake providers in-process (`stemme phone`)
    sandbox_port: int = 8090
    twilio_account_sid: str = ""
    twilio_auth_token: str = dataclasses.field(default="", repr=False)
    twilio_from: str = ""
    twilio_whatsapp_from: str = ""
    twilio_api_base_url: str = ""  # empty: the real Twilio API
    telegram_enabled: bool = False
    telegram_dpia_approved: bool = False
    telegram_bot_token: str = dataclasses.field(default="", repr=False)
    telegram_webhook_secret: str = dataclasses.field(default="", repr=False)
    telegram_api_base_url: str = ""  # empty: the real Bot API
    telegram_mode: str = "webhook"  # or "polling" without a public URL
    messenger_enabled: bool = False
    messenger_dpia_approved: bool = False
    messenger_page_token: str = dataclasses.field(default="", repr=False)
    messenger_app_secret: str = dataclasses.field(default="", repr=False)
    messenger_verify_token: str = dataclasses.field(default="", repr=False)
    messenger_graph_url: str = "https://graph.facebook.com"

    # -- derived values -------------------------------------------------------------------

    @property
    def production(self) -> bool:
        return self.mode == "production"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'stemme.db').as_posix()}"

    @property
    def effective_key_file(self) -> Path:
        return self.key_file if self.key_file is not None else self.data_dir / "keyring.json"

    @property
    def effective_caselog_dir(self) -> Path:
        return self.caselog_dir if self.caselog_dir is not None else self.data_dir / "caselog"

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.public_base_url).scheme == "https"

    @property
    def office_hours_range(self) -> tuple[dt.time, dt.time]:
        start, _, end = self.office_hours.partition("-")
        end = end.strip()
        until = dt.time.max if end in ("24:00", "24:00:00") else dt.time.fromisoformat(end)
        return dt.time.fromisoformat(start.strip()), until

    @property
    def office_weekdays(self) -> frozenset[int]:
        """Python weekdays (0 = Monday) from ``office_days`` such as "1-5" or "1,2,3"."""
        days: set[int] = set()
        for part in self.office_days.split(","):
            first, _, last = part.strip().partition("-")
            low, high = int(first), int(last or first)
            if not 1 <= low <= high <= 7:
                raise ValueError(part)
            days.update(range(low - 1, high))
        return frozenset(days)

    @property
    def sandbox_active(self) -> bool:
        """The fake providers run only in demo mode; production never starts them."""
        return self.sandbox and not self.production

    @property
    def sms_configured(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from)

    @property
    def licence_holder_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.licence_holders.split(",") if n.strip())

    def public_url(self, path: str) -> str:
        """An absolute URL under the configured public base (never the request's Host)."""
        return self.public_base_url.rstrip("/") + "/" + path.lstrip("/")

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        validate: bool = True,
        **overrides: object,
    ) -> Settings:
        """Read ``STEMME_*`` variables (default: the process environment) and validate.

        ``validate=False`` only reads the values, for ``stemme check-config``, which reports
        every problem of a configuration instead of stopping at the first.

        Raises:
            ConfigError: a value is malformed, or production mode lacks what it needs.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, str(f.type), raw)
        values.update(overrides)
        if "public_base_url" not in values and ("port" in values or "host" in values):
            defaults = {f.name: f.default for f in dataclasses.fields(cls)}
            host = values.get("host", defaults["host"])
            values["public_base_url"] = f"http://{host}:{values.get('port', defaults['port'])}"
        settings = cls(**values)  # type: ignore[arg-type]
        if validate:
            settings.validate()
        return settings

    def validate(self) -> None:
        """Check the combination of values; production mode is strict."""
        if self.mode not in ("demo", "production"):
            raise ConfigError("STEMME_MODE must be 'demo' or 'production'.")
        try:
            start, end = self.office_hours_range
        except ValueError:
            raise ConfigError("STEMME_OFFICE_HOURS must look like 08:00-15:00.") from None
        if not start < end:
            raise ConfigError("STEMME_OFFICE_HOURS must start before it ends, e.g. 08:00-15:00.")
        try:
            weekdays = self.office_weekdays
        except ValueError:
            weekdays = frozenset()
        if not weekdays:
            raise ConfigError("STEMME_OFFICE_DAYS must look like 1-5 (1 is Monday).")
        if self.default_language not in ("da", "en"):
            raise ConfigError("STEMME_DEFAULT_LANGUAGE must be 'da' or 'en'.")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError("STEMME_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR.")
        if self.log_format not in ("text", "json"):
            raise ConfigError("STEMME_LOG_FORMAT must be 'text' or 'json'.")
        if self.request_body_timeout <= 0 or self.ready_max_outbox_lag_seconds <= 0:
            raise ConfigError(
                "STEMME_REQUEST_BODY_TIMEOUT and STEMME_READY_MAX_OUTBOX_LAG_SECONDS must be "
                "positive numbers of seconds."
            )
        if self.metrics_token and len(self.metrics_token) < 24:
            raise ConfigError(
                "STEMME_METRICS_TOKEN must be at least 24 characters (`openssl rand -hex 24`)."
            )
        if not 1 <= self.secure_link_days <= 365:
            raise ConfigError("STEMME_SECURE_LINK_DAYS must be a number of days from 1 to 365.")
        if self.retention_days < 0:
            # Negative puts the cutoff in the future: copies would go the moment they are filed.
            raise ConfigError("STEMME_RETENTION_DAYS must be 0 or more days.")
        url = urlsplit(self.public_base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(
                "STEMME_PUBLIC_BASE_URL must be an absolute URL such as https://stemme.example.dk"
            )
        _validate_caselog(self)
        if not self.production:
            return
        problems: list[str] = []
        has_env_keys = bool(self.master_key and self.index_key)
        if not has_env_keys and self.key_file is None:
            problems.append(
                "set STEMME_MASTER_KEY and STEMME_INDEX_KEY (or STEMME_KEY_FILE pointing to a "
                "keyring outside the database; create one with `stemme keys generate`)"
            )
        for name, enabled, approved in (
            ("TELEGRAM", self.telegram_enabled, self.telegram_dpia_approved),
            ("MESSENGER", self.messenger_enabled, self.messenger_dpia_approved),
        ):
            if enabled and not approved:
                problems.append(
                    f"STEMME_{name}_ENABLED needs STEMME_{name}_DPIA_APPROVED=true, set only "
                    "after the municipality's data-protection impact assessment"
                )
        if self.telegram_mode not in ("webhook", "polling"):
            problems.append("set STEMME_TELEGRAM_MODE to 'webhook' or 'polling'")
        if self.caselog_webhook_url and urlsplit(self.caselog_webhook_url).scheme != "https":
            problems.append("set STEMME_CASELOG_WEBHOOK_URL to an https address")
        if self.caselog_fhir_url and urlsplit(self.caselog_fhir_url).scheme != "https":
            problems.append("set STEMME_CASELOG_FHIR_URL to an https address")
        if url.scheme != "https":
            problems.append(
                "set STEMME_PUBLIC_BASE_URL to the public https address, "
                "e.g. https://stemme.example.dk"
            )
        if problems:
            raise ConfigError(
                "Refusing to start in production mode: " + "; and ".join(problems) + "."
            )


def _validate_caselog(settings: Settings) -> None:
    remote = settings.caselog_webhook_url or settings.caselog_fhir_url
    if not settings.caselog_jsonl and not remote and settings.caselog_pdf_dir is None:
        raise ConfigError(
            "Participation entries need somewhere to go: set STEMME_CASELOG_WEBHOOK_URL, "
            "STEMME_CASELOG_FHIR_URL, STEMME_CASELOG_PDF_DIR or STEMME_CASELOG_JSONL=true."
        )
    _validate_caselog_fhir_pdf(settings)
    if not settings.caselog_webhook_url:
        return
    hook = urlsplit(settings.caselog_webhook_url)
    if hook.scheme not in ("http", "https") or not hook.netloc:
        raise ConfigError("STEMME_CASELOG_WEBHOOK_URL must be an absolute http(s) URL.")
    secret = settings.caselog_webhook_secret
    try:
        valid = secret.startswith("whsec_") and len(base64.b64decode(secret[6:] + "==")) >= 24
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(
            "STEMME_CASELOG_WEBHOOK_SECRET must be whsec_ followed by at least 24 random bytes "
            "in base64 (make one with `stemme caselog secret`)."
        )
    if settings.caselog_webhook_timeout <= 0:
        raise ConfigError("STEMME_CASELOG_WEBHOOK_TIMEOUT must be a positive number of seconds.")


def _validate_caselog_fhir_pdf(settings: Settings) -> None:
    if settings.caselog_pdf_per not in ("entry", "day"):
        raise ConfigError("STEMME_CASELOG_PDF_PER must be 'entry' or 'day'.")
    if not settings.caselog_fhir_url:
        return
    fhir = urlsplit(settings.caselog_fhir_url)
    if fhir.scheme not in ("http", "https") or not fhir.netloc:
        raise ConfigError("STEMME_CASELOG_FHIR_URL must be an absolute http(s) URL (the base).")
    if settings.caselog_fhir_timeout <= 0:
        raise ConfigError("STEMME_CASELOG_FHIR_TIMEOUT must be a positive number of seconds.")


def _convert(name: str, type_name: str, raw: str) -> object:
    variable = PREFIX + name.upper()
    try:
        if "Path" in type_name:
            return Path(raw)
        if type_name == "bool":
            lowered = raw.strip().lower()
            if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(raw)
            return lowered in ("1", "true", "yes", "on")
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{variable} must be a number (or true/false).") from None
    return raw
