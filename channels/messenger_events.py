"""Reading Meta's page webhook for Messenger (pure, so property tests can drive it).

A body looks like::

    {"object": "page", "entry": [{"id": PAGE_ID, "time": ms, "messaging": [event, ...]}, ...]}

One body may carry several entries and events: messages (text, quick reply, attachments),
postbacks, the page's own echoes (skipped), and delivery/read receipts, which
:func:`parse_statuses` turns into status updates (per message id, and as watermarks).
``Inbound.raw`` holds only ``kind`` (``text``, ``quick_reply``, ``postback``, ``attachment``,
``other``), ``attachments`` (their types) and ``page_id`` — never the child's words.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from channels.base import ChannelName, DeliveryState, Inbound, ProviderMessageId, StatusUpdate
from channels.errors import BadRequest

NAME = ChannelName("messenger")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant a datetime holds
# Messaging events carry milliseconds, but some of Meta's newer examples show seconds; no real
# millisecond timestamp is this small (it would be before March 1973).
_SECONDS_BELOW = 100_000_000_000


def parse_messages(body: bytes) -> list[Inbound]:
    """The children's messages and postbacks in a page webhook body, in order; echoes skipped.

    Raises:
        BadRequest: the body is not a well-formed page webhook.
    """
    found: list[Inbound] = []
    for page_id, event in _events(body):
        inbound = _inbound(page_id, event)
        if inbound is not None:
            found.append(inbound)
    return found


def parse_statuses(body: bytes) -> list[StatusUpdate]:
    """Delivery and read receipts in a page webhook body: one per message id, plus watermarks.

    Raises:
        BadRequest: the body is not a well-formed page webhook.
    """
    updates: list[StatusUpdate] = []
    for _page_id, event in _events(body):
        for key, state in (("delivery", DeliveryState.DELIVERED), ("read", DeliveryState.READ)):
            if key not in event:
                continue
            receipt = _object(event, key)
            mids = receipt.get("mids") or []
            if not isinstance(mids, list) or not all(isinstance(m, str) and m for m in mids):
                raise BadRequest(f"{key}.mids is not a list of ids")
            updates += [StatusUpdate(NAME, ProviderMessageId(m), state) for m in mids]
            psid = _sender(event)
            if receipt.get("watermark") is not None and psid is not None:
                up_to = _moment(receipt["watermark"])
                updates.append(
                    StatusUpdate(NAME, ProviderMessageId(""), state, address=psid, up_to=up_to)
                )
    return updates


def _events(body: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # ValueError covers bad UTF-8 and bad JSON
        raise BadRequest("body is not JSON") from None
    if not isinstance(payload, dict) or payload.get("object") != "page":
        raise BadRequest("not a page webhook")
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise BadRequest("entry is not a list")
    for entry in entries:
        if not isinstance(entry, dict):
            raise BadRequest("entry item is not an object")
        page_id = entry.get("id")
        # Entries without "messaging" (standby, feed changes) are not for this channel.
        events = entry.get("messaging", [])
        if not isinstance(events, list):
            raise BadRequest("messaging is not a list")
        for event in events:
            if not isinstance(event, dict):
                raise BadRequest("messaging item is not an object")
            yield (page_id if isinstance(page_id, str) else ""), event


def _inbound(page_id: str, event: dict[str, Any]) -> Inbound | None:
    if "message" in event:
        message = _object(event, "message")
        if message.get("is_echo"):  # what the page itself sent
            return None
        psid = _sender(event)
        if psid is None:
            return None
        mid, text = message.get("mid"), message.get("text", "")
        if not isinstance(mid, str) or not mid:
            raise BadRequest("message without mid")
        if not isinstance(text, str):
            raise BadRequest("message.text is not a string")
        button = None
        if message.get("quick_reply") is not None:
            button = _object(message, "quick_reply").get("payload")
            if not isinstance(button, str):
                raise BadRequest("quick_reply.payload is not a string")
        attachments = message.get("attachments") or []
        if not isinstance(attachments, list):
            raise BadRequest("attachments is not a list")
        types = tuple(_attachment_type(a) for a in attachments)
        kind = "quick_reply" if button is not None else "text" if text else "other"
        if not text and types:
            kind = "attachment"
        return _make(psid, mid, text, event, button, kind, page_id, types)
    if "postback" in event:
        postback = _object(event, "postback")
        psid = _sender(event)
        if psid is None:
            return None
        title, payload, mid = (
            postback.get("title", ""),
            postback.get("payload"),
            postback.get("mid"),
        )
        if not isinstance(title, str) or not isinstance(payload, str):
            raise BadRequest("postback without a title or payload string")
        if not isinstance(mid, str) or not mid:
            # Older postbacks have no mid; Meta's retry of the same tap repeats sender and time.
            moment = _moment(event.get("timestamp"))
            seed = f"{psid}\x00{moment.isoformat()}".encode("utf-8", "surrogatepass")
            mid = "postback-" + hashlib.sha256(seed).hexdigest()[:40]
        return _make(psid, mid, title, event, payload, "postback", page_id, ())
    return None  # reactions, referrals, opt-ins, receipts …


def _make(
    psid: str,
    mid: str,
    text: str,
    event: Mapping[str, Any],
    button: str | None,
    kind: str,
    page_id: str,
    attachments: tuple[str, ...],
) -> Inbound:
    return Inbound(
        channel=NAME,
        address=psid,
        provider_message_id=ProviderMessageId(mid),
        text=text,
        received_at=_moment(event.get("timestamp")),
        button_payload=button,
        raw=MappingProxyType({"kind": kind, "attachments": attachments, "page_id": page_id}),
    )


def _attachment_type(attachment: Any) -> str:
    kind = attachment.get("type") if isinstance(attachment, dict) else None
    return kind if isinstance(kind, str) else "unknown"


def _object(parent: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise BadRequest(f"{key} is not an object")
    return value


def _sender(event: Mapping[str, Any]) -> str | None:
    """The sender's page-scoped id, or None for a plugin's ``user_ref`` (nobody to answer)."""
    sender = _object(event, "sender")
    psid = sender.get("id")
    if psid is None and "user_ref" in sender:
        return None
    if not isinstance(psid, str) or not psid:
        raise BadRequest("sender.id is not an id")
    return psid


def _moment(value: Any) -> dt.datetime:
    """A Meta timestamp (integer milliseconds, sometimes as a string) as an aware UTC datetime."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_MS:
        raise BadRequest("bad timestamp")
    if value < _SECONDS_BELOW:
        value *= 1000
    return _EPOCH + dt.timedelta(milliseconds=value)
