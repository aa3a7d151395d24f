"""Twilio's webhook forms: how they are signed, what they hold, and what their codes mean.

The forms are an inbound message and a status callback. Statuses map to Stemme's delivery
states; error codes to plain Danish reasons for the caseworker. Nothing here logs.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from channels.base import ChannelName, DeliveryState, Inbound, ProviderMessageId, StatusUpdate
from channels.errors import BadRequest
from channels.phone_numbers import normalise_address

NAME = ChannelName("sms")
OPTED_OUT_CODE = "21610"
"""Twilio's "unsubscribed recipient": the router blocks sends to the child until START."""
OPTED_OUT_REASON = (
    "Barnet har stoppet SMS fra dette nummer. Der kan først sendes igen, når barnet skriver START."
)

# Plain Danish for a caseworker, keyed by Twilio error code (API errors and callback errors).
FAILURE_REASONS: Mapping[str, str] = MappingProxyType({
    OPTED_OUT_CODE: OPTED_OUT_REASON,
    "21211": "Telefonnummeret er ugyldigt.",
    "21408": "Stemme har ikke lov til at sende SMS til det land.",
    "21606": "Stemmes afsendernummer kan ikke sende beskeder. En administrator skal rette det.",
    "21612": "Nummeret kan ikke modtage SMS.",
    "21614": "Nummeret er ikke et mobilnummer og kan ikke modtage SMS.",
    "21617": "Beskeden er for lang til at blive sendt.",
    "30003": "Telefonen kunne ikke nås. Den er måske slukket eller uden dækning.",
    "30004": "Beskeden blev blokeret. Barnet har måske blokeret nummeret.",
    "30005": "Nummeret findes ikke eller er ikke længere i brug.",
    "30006": "Nummeret er en fastnettelefon og kan ikke modtage SMS.",
    "30007": "Telefonselskabet stoppede beskeden som mulig spam.",
    "30008": "Beskeden kunne ikke leveres af en ukendt grund.",
    "63003": "Nummeret kan ikke modtage WhatsApp-beskeder.",
    "63016": (
        "WhatsApp-beskeden blev ikke sendt, fordi barnet ikke har skrevet "
        "inden for de sidste 24 timer."
    ),
})  # fmt: skip
_CANCELED_REASON = "Beskeden blev annulleret, før den blev sendt."

_STATUSES: Mapping[str, DeliveryState] = MappingProxyType({
    "queued": DeliveryState.QUEUED,
    "accepted": DeliveryState.QUEUED,
    "scheduled": DeliveryState.QUEUED,
    "sending": DeliveryState.QUEUED,
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.READ,  # WhatsApp only
    "undelivered": DeliveryState.UNDELIVERED,
    "failed": DeliveryState.FAILED,
    "canceled": DeliveryState.FAILED,
})  # fmt: skip
_FAILED = (DeliveryState.UNDELIVERED, DeliveryState.FAILED)
_MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-f]{32}$")
_ERROR_CODE = re.compile(r"^[0-9]{1,6}$")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def compute_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's ``X-Twilio-Signature``: base64 HMAC-SHA1 of the URL and the sorted parameters.

    The same value as ``RequestValidator(auth_token).compute_signature(url, params)`` for text.
    A value that was not UTF-8 on the wire (kept as surrogate escapes by the form reader) is
    signed as the bytes that arrived, so such a request can be verified and then refused as
    malformed rather than as forged.
    """
    grouped: dict[str, set[str]] = {}
    for name, value in params:
        grouped.setdefault(name, set()).add(value)
    pieces = [name + value for name in sorted(grouped) for value in sorted(grouped[name])]
    payload = url + "".join(pieces)
    mac = hmac.digest(auth_token.encode(), payload.encode("utf-8", "surrogateescape"), "sha1")
    return base64.b64encode(mac).decode("ascii")


def inbound_from_form(form: Sequence[tuple[str, str]], *, region: str = "DK") -> Inbound:
    """Parse Twilio's inbound-message form. Raises :class:`BadRequest` if malformed."""
    fields = _fields(form)
    sid = _message_sid(fields)
    sender = fields.get("From")
    if not sender:
        raise BadRequest("missing From")
    # Twilio always sends both, Body even when empty: without them the form was cut short.
    if "Body" not in fields or not fields.get("AccountSid", "").startswith("AC"):
        raise BadRequest("missing Body or AccountSid (truncated form?)")
    return Inbound(
        channel=NAME,
        address=normalise_address(sender, region=region),
        provider_message_id=ProviderMessageId(sid),
        text=fields.get("Body", ""),
        received_at=dt.datetime.now(dt.UTC),
        raw=MappingProxyType(fields),
    )


def status_updates_from_form(form: Sequence[tuple[str, str]]) -> list[StatusUpdate]:
    """Parse a status callback; unknown statuses give no update. Raises :class:`BadRequest`."""
    fields = _fields(form)
    sid = _message_sid(fields)
    status = fields.get("MessageStatus")
    if not status:
        raise BadRequest("missing MessageStatus")
    code = fields.get("ErrorCode") or None
    if code is not None and not _ERROR_CODE.match(code):
        raise BadRequest("malformed ErrorCode")
    state = _STATUSES.get(status)
    if state is None:
        return []
    reason = None
    if state in _FAILED:
        reason = (
            _CANCELED_REASON if status == "canceled" and code is None else failure_reason(code)
        )
    return [StatusUpdate(NAME, ProviderMessageId(sid), state, reason=reason, code=code)]


def failure_reason(code: str | None) -> str:
    """A caseworker-readable sentence for a Twilio error code."""
    if code is None:
        return "Beskeden kunne ikke leveres."
    return FAILURE_REASONS.get(code, f"Beskeden kunne ikke leveres (Twilio-fejlkode {code}).")


def _fields(form: Sequence[tuple[str, str]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in form:
        if _SURROGATE.search(name) or _SURROGATE.search(value):
            raise BadRequest("form is not UTF-8")
        if name in fields:
            raise BadRequest("a form field appears twice")
        fields[name] = value
    return fields


def _message_sid(fields: Mapping[str, str]) -> str:
    sid = fields.get("MessageSid", "")
    if not _MESSAGE_SID.match(sid):
        raise BadRequest("missing or malformed MessageSid")
    return sid
