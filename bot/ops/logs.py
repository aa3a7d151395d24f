"""Log output: plain text or one JSON object per line, always through a redaction filter.

The code is written not to log a child's words, addresses, tokens or keys. The filter here is
the second line of defence, for what a library or an exception message lets slip: it masks
values under sensitive names (``password=…``, ``"token": …``), ``whsec_`` secrets, bearer
tokens, long random-looking strings (tokens, keys, provider ids) and anything that looks like a
phone number, chat id or PSID (seven digits or more, ``+45 …``, ``12 34 56 78``).

``STEMME_LOG_FORMAT=json`` gives ``{"time", "level", "logger", "message"}`` plus any ``extra``
fields and ``exc`` for a traceback, all redacted.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from bot.settings import Settings

MASK = "[redacted]"
_OURS = "stemme_handler"
# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)
_SENSITIVE_NAMES = (
    "password|passwd|secret|token|cookie|session|authorization|api[_-]?key|auth[_-]?token|"
    "signature|code|address|phone|text|body|key|psid|chat[_-]?id"
)
# ``name=value``, ``name: value``, ``"name": "value"`` (JSON, reprs of dicts). The name is
# matched as a whole word (possessive: no backtracking) and checked in _mask_pair.
_PAIR = re.compile(
    r"""(?<![\w-])([\w-]++)(["']?\s*[:=]\s*)("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&)}\]]+)"""
)
_NAME = re.compile(rf"(?:{_SENSITIVE_NAMES})$", re.IGNORECASE)
_WHSEC = re.compile(r"whsec_[A-Za-z0-9+/=_-]+")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
# Random-looking: 20+ token characters with both a letter and a digit. UUIDs (our row ids) and
# plain words stay readable; tokens, keys, blind indexes and provider ids do not.
_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_-])(?=[A-Za-z_-]*[0-9])(?=[0-9_-]*[A-Za-z])[A-Za-z0-9_-]{20,}={0,2}"
)
_B64 = re.compile(r"[A-Za-z0-9+/]{20,}={0,2}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PHONE = re.compile(
    r"\+\d[\d ()-]{5,}\d"  # international form
    r"|(?<![\d.:])\d{7,}(?![\d.:])"  # phone numbers, chat ids, PSIDs, update ids
    r"|(?<!\d)\d{2}(?: \d{2}){3}(?!\d)"  # Danish spaced form
)


def redact(text: str) -> str:
    """Masks secrets, addresses and random-looking tokens in ``text``."""
    text = _WHSEC.sub("whsec_" + MASK, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _PAIR.sub(_mask_pair, text)
    text = _TOKEN.sub(_unless_uuid, text)
    text = _B64.sub(_unless_plain, text)
    return _PHONE.sub(MASK, text)


def _mask_pair(match: re.Match[str]) -> str:
    name, between, _value = match.groups()
    return name + between + MASK if _NAME.search(name) else match.group(0)


def _unless_uuid(match: re.Match[str]) -> str:
    found = match.group(0)
    return found if _UUID.fullmatch(found) else MASK


def _unless_plain(match: re.Match[str]) -> str:
    # Base64 needs + or / to tell it from a word; plain words and paths stay.
    found = match.group(0)
    has_digit = any(c.isdigit() for c in found)
    return MASK if has_digit and ("+" in found or found.endswith("=")) else found


def _sensitive_name(name: str) -> bool:
    return re.search(_SENSITIVE_NAMES, name, re.IGNORECASE) is not None


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    return redact(repr(value))


class RedactingFilter(logging.Filter):
    """Rewrites each record in place so every handler after it sees only redacted text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: keep the template only
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None  # the formatter would render the raw exception again
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name in list(record.__dict__):
            if name in _STANDARD:
                continue
            value = record.__dict__[name]
            record.__dict__[name] = MASK if _sensitive_name(name) else _clean(value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra`` fields become keys of their own."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name not in out:
                out[name] = value if isinstance(value, str | int | float | bool) else repr(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False)


# Loggers that would write what must not be logged: httpx logs request URLs at INFO (a
# Telegram URL holds the bot token); python-telegram-bot logs message content at DEBUG; the
# twilio client logs request parameters (the child's number and words) at INFO; aiosqlite and
# SQLAlchemy's engine log every statement with its parameters (session ids, provider ids).
QUIET = {
    "httpx": logging.WARNING,
    "telegram": logging.INFO,
    "twilio": logging.WARNING,
    "aiosqlite": logging.INFO,
    "sqlalchemy.engine": logging.WARNING,
}


def quiet_chatty_libraries(levels: Iterable[tuple[str, int]] = QUIET.items()) -> None:
    """Raises the level of library loggers that log request content."""
    for name, level in levels:
        logging.getLogger(name).setLevel(level)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is when a record comes (a test runner swaps it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def handler_for(log_format: str, *, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (stderr by default) with redaction and the chosen format."""
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.addFilter(RedactingFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    return handler


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Installs the redacting handler on the root logger (``stemme`` commands).

    A handler installed by an earlier call is replaced; handlers someone else added (a test
    runner's) are left alone.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _OURS, False):
            root.removeHandler(old)
    handler = handler_for(settings.log_format, stream=stream)
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    level = settings.log_level.upper()
    root.setLevel(level if level in logging.getLevelNamesMapping() else logging.INFO)
    quiet_chatty_libraries()
    logging.captureWarnings(True)
