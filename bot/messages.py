"""Message rows and what the router answers about them (shared by the router's two lanes)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.caselog.entries import EntryDraft, message_summary
from bot.crypto import DataKey
from bot.ids import uuid7
from bot.storage.models import Author, Direction
from channels.base import DeliveryState, Inbound

MESSAGE_TABLE = "message"
BODY = "body"


@dataclass(frozen=True, slots=True)
class Stored:
    """Where a message ended up. ``duplicate`` means a provider retry of a stored message.

    ``turn`` is False for a message stored without the engine's turn (the router's fast lane):
    it queued a case-log entry and nothing to send.
    """

    message_id: str
    case_id: str
    seq: int
    duplicate: bool = False
    turn: bool = True


def message_row(
    key: DataKey,
    *,
    case_id: str,
    seq: int,
    direction: Direction,
    channel: str,
    identity_id: str,
    author: Author,
    text: str,
    provider_message_id: str | None,
    state: DeliveryState,
    at: dt.datetime,
    caseworker_id: str | None = None,
) -> dict[str, Any]:
    """A message's column values, its text encrypted (for the ORM or a Core insert)."""
    message_id = uuid7()
    return {
        "id": message_id,
        "case_id": case_id,
        "seq": seq,
        "direction": direction.value,
        "channel": channel,
        "identity_id": identity_id,
        "author": author.value,
        "caseworker_id": caseworker_id,
        "body_enc": key.encrypt(text, table=MESSAGE_TABLE, row_id=message_id, field=BODY),
        "provider_message_id": provider_message_id,
        "delivery_state": state.value,
        "created_at": at,
        "delivered_at": at if state == DeliveryState.DELIVERED else None,
    }


def child_message_row(
    key: DataKey, *, case_id: str, seq: int, identity_id: str, inbound: Inbound
) -> dict[str, Any]:
    """The row of a message the child sent (both of the router's lanes store it this way)."""
    return message_row(
        key,
        case_id=case_id,
        seq=seq,
        direction=Direction.INBOUND,
        channel=inbound.channel,
        identity_id=identity_id,
        author=Author.CHILD,
        text=inbound.text,
        provider_message_id=inbound.provider_message_id,
        state=DeliveryState.DELIVERED,
        at=inbound.received_at,
    )


def child_message_entry(
    *, case_ref: str, inbound: Inbound, message_id: str, signals: Sequence[str] = ()
) -> EntryDraft:
    """The participation entry for a message the child sent."""
    return EntryDraft(
        kind="message",
        occurred_at=inbound.received_at,
        case_ref=case_ref,
        channel=inbound.channel,
        direction="in",
        actor="child",
        summary=message_summary(actor="child", channel=inbound.channel, text=inbound.text),
        text=inbound.text,
        message_id=message_id,
        legal_signals=tuple(signals),
    )
