"""Participation entries: one per exchange, for the municipality's case record.

The payload follows ``docs/participation-entry.schema.json`` (served at
``/api/schema/participation-entry``). By default it holds metadata, scores and a short Danish
summary only; verbatim text is included when the municipality's policy says so. ``seq`` numbers a
case's entries without gaps, so a receiver can see a missing or reordered entry.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.crypto import DataKey
from bot.ids import uuid7
from bot.storage.models import (
    ConversationState,
    Outbox,
    OutboxStatus,
    ParticipationEntry,
    utcnow,
)

SCHEMA_VERSION = 1
TABLE = "participation_entry"
FIELD = "payload"

_CHANNEL_DA = {
    "webchat": "webchat",
    "sms": "SMS",
    "telegram": "Telegram",
    "messenger": "Messenger",
}


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """What happened, before it is numbered and encrypted."""

    kind: str
    occurred_at: dt.datetime
    case_ref: str
    channel: str | None
    direction: str | None
    actor: str
    summary: str
    text: str | None = None
    message_id: str | None = None
    legal_signals: tuple[str, ...] = ()
    scores: dict[str, Any] | None = None


def message_summary(*, actor: str, channel: str, text: str) -> str:
    """A short Danish summary that does not quote the child."""
    words = len(text.split())
    via = _CHANNEL_DA.get(channel, channel)
    who = {
        "child": "Barnet skrev",
        "caseworker": "Rådgiveren svarede",
        "bot": "Stemme sendte en automatisk besked",
    }.get(actor, "Besked")
    return f"{who} via {via} ({words} ord)."


def payload(entry_id: str, draft: EntryDraft, *, seq: int, verbatim: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "id": entry_id,
        "seq": seq,
        "case_ref": draft.case_ref,
        "occurred_at": draft.occurred_at.isoformat(),
        "kind": draft.kind,
        "channel": draft.channel,
        "direction": draft.direction,
        "actor": draft.actor,
        "summary": draft.summary,
        "scores": draft.scores,
        "legal_signals": list(draft.legal_signals),
        "links": {"message_id": draft.message_id} if draft.message_id else {},
    }
    if verbatim and draft.text is not None:
        data["text"] = draft.text
    return data


async def add_entry(
    session: AsyncSession, *, case_id: str, key: DataKey, draft: EntryDraft, verbatim: bool
) -> ParticipationEntry:
    """Number, encrypt and store an entry, and queue its delivery — in the caller's transaction."""
    result = await session.execute(
        update(ConversationState)
        .where(col(ConversationState.case_id) == case_id)
        .values(next_entry_seq=col(ConversationState.next_entry_seq) + 1)
        .returning(col(ConversationState.next_entry_seq))
    )
    seq = int(result.scalar_one()) - 1
    values, job = entry_rows(case_id=case_id, key=key, draft=draft, seq=seq, verbatim=verbatim)
    entry = ParticipationEntry(**values)
    session.add(entry)
    session.add(Outbox(**job))
    return entry


def entry_rows(
    *, case_id: str, key: DataKey, draft: EntryDraft, seq: int, verbatim: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The entry numbered ``seq`` and its filing job, as column values (ORM or Core insert)."""
    entry_id = uuid7()
    body = json.dumps(payload(entry_id, draft, seq=seq, verbatim=verbatim), ensure_ascii=False)
    now = utcnow()
    entry = {
        "id": entry_id,
        "case_id": case_id,
        "seq": seq,
        "kind": draft.kind,
        "occurred_at": draft.occurred_at,
        "payload_enc": key.encrypt(body, table=TABLE, row_id=entry_id, field=FIELD),
    }
    job = {
        "id": uuid7(),
        "kind": "caselog",
        "case_id": case_id,
        "ref_id": entry_id,
        "seq": seq,
        "status": OutboxStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,  # filed as soon as committed, whenever it happened
        "created_at": now,
    }
    return entry, job
