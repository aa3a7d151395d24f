"""Sending to Telegram: buttons as inline keyboards, Telegram's errors as delivery errors."""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Sequence

import telegram.error as tg_error
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.warnings import PTBDeprecationWarning

from channels.base import Button
from channels.errors import DeliveryError, PermanentFailure, RateLimited, TemporaryFailure

MAX_CALLBACK_DATA_BYTES = 64
BLOCKED_REASON = "Barnet har blokeret Stemme i Telegram, så beskeden kan ikke leveres."
_REASONS = {
    "blocked": BLOCKED_REASON,
    "deactivated": "Barnets Telegram-konto er slettet, så beskeden kan ikke leveres.",
    "not_started": "Barnet har ikke startet en samtale med Stemme i Telegram.",
    "chat_not_found": "Telegram kender ikke barnets chat, så beskeden kan ikke leveres.",
    "rejected": "Telegram afviste beskeden.",
    "bad_address": "Barnets Telegram-adresse er ugyldig.",
    "invalid_token": "Stemmes Telegram-bot er ikke sat rigtigt op (ugyldig nøgle).",
    "network": "Telegram kunne ikke nås; beskeden sendes igen senere.",
    "rate_limited": "Telegram beder Stemme vente lidt; beskeden sendes igen.",
    "error": "Telegram svarede med en fejl; beskeden sendes igen senere.",
}


def inline_keyboard(buttons: Sequence[Button]) -> InlineKeyboardMarkup:
    """Lay out buttons as an inline keyboard.

    Short titles (a 0-10 scale) go up to six to a row, longer ones two or one, and rows are
    balanced (0-10 becomes 6 + 5, not 6 + 6 + ... ).

    Raises:
        ValueError: A payload is not 1-64 bytes of UTF-8 (Telegram's callback_data limit).
    """
    for button in buttons:
        size = len(button.payload.encode("utf-8"))
        if not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
            raise ValueError(f"button payload is {size} bytes; Telegram allows 1-64")
    longest = max((len(b.title) for b in buttons), default=0)
    per_row_max = 6 if longest <= 4 else 2 if longest <= 14 else 1
    rows = max(1, math.ceil(len(buttons) / per_row_max))
    per_row = max(1, math.ceil(len(buttons) / rows))
    keyboard = [
        [InlineKeyboardButton(b.title, callback_data=b.payload) for b in buttons[i : i + per_row]]
        for i in range(0, len(buttons), per_row)
    ]
    return InlineKeyboardMarkup(keyboard)


def delivery_error(exc: tg_error.TelegramError) -> DeliveryError:
    """Map a python-telegram-bot error to Stemme's delivery errors (caseworker-readable)."""
    detail = exc.message.lower()
    if isinstance(exc, tg_error.RetryAfter):
        code = "rate_limited"
        return RateLimited(_REASONS[code], retry_after=_retry_seconds(exc), code=code)
    if isinstance(exc, tg_error.Forbidden):
        code = "deactivated" if "deactivated" in detail else "blocked"
        code = "not_started" if "initiate" in detail else code
        return PermanentFailure(_REASONS[code], code=code)
    if isinstance(exc, tg_error.BadRequest):  # before NetworkError: it is a subclass
        code = "chat_not_found" if "chat not found" in detail else "rejected"
        return PermanentFailure(_REASONS[code], code=code)
    # A bad token is not the child's doing and an administrator can fix it: keep the message.
    code = "invalid_token" if isinstance(exc, tg_error.InvalidToken) else "error"
    code = "network" if isinstance(exc, tg_error.NetworkError) else code  # TimedOut included
    return TemporaryFailure(_REASONS[code], code=code)


def _retry_seconds(exc: tg_error.RetryAfter) -> float:
    # PTB 22 warns that retry_after becomes a timedelta; accept either without the warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def _chat_id(address: str) -> int:
    try:
        return int(address)
    except ValueError:
        raise PermanentFailure(_REASONS["bad_address"], code="bad_address") from None
