"""Retention: Stemme's own copy of an exchange is removed once the case system has filed it.

An entry is *confirmed filed* when every configured sink has accepted it: the outbox sets
``filed_at`` only after the last sink returned. Once ``retention_days`` have passed since then,
the sweep removes the local copy of what that entry records:

- the entry's own payload (``payload_enc`` → NULL, ``erased_at`` set);
- for a ``message`` entry, the message's body (``body_enc`` → NULL, ``body_removed_at`` set);
- for a ``checkin`` entry, the child's own words in the stored result (the closing text and the
  goals' text): the result is sealed again without them (``text_removed_at`` set). The numbers
  stay, so the next check-in can still show a fall since last time.

Rows are never deleted: sequence numbers, delivery states, the outbox and the inbox's
"removed after filing" line all point at them. Nothing is touched whose entry is not confirmed
filed. Each case is swept in its own write transaction with its conversation row locked
(``FOR UPDATE`` on PostgreSQL; SQLite has a single writer), and the entries are chosen again
inside it, so processes sweeping at the same time do each entry once.

A check-in result has no link to its entry; the entry is matched on the check-in's case,
instrument, rater and finish time, which :mod:`bot.engine.checkins` sets from the same clock
reading as the entry's ``occurred_at``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.caselog.entries import FIELD as ENTRY_FIELD
from bot.caselog.entries import TABLE as ENTRY_TABLE
from bot.crypto import DataKey
from bot.engine.checkins import RESULT as CHECKIN_RESULT
from bot.engine.checkins import TABLE as CHECKIN_TABLE
from bot.keys import KeyService
from bot.storage.db import Database
from bot.storage.models import (
    Checkin,
    ConversationState,
    Message,
    ParticipationEntry,
    utcnow,
)

log = logging.getLogger(__name__)

MESSAGE_TABLE = "message"
MESSAGE_FIELD = "body"


@dataclass(frozen=True, slots=True)
class RetentionCounts:
    """What a sweep removed (or, for a dry run, would remove) and what it kept."""

    entries: int = 0
    messages: int = 0
    checkins: int = 0
    cases: int = 0
    kept_unfiled: int = 0
    kept_in_period: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def _cutoff(now: dt.datetime, retention: dt.timedelta) -> dt.datetime:
    return now - retention


def _due(cutoff: dt.datetime) -> Any:
    return (
        col(ParticipationEntry.filed_at).is_not(None),
        col(ParticipationEntry.filed_at) <= cutoff,
        col(ParticipationEntry.payload_enc).is_not(None),
    )


async def plan(
    db: Database, *, retention: dt.timedelta, now: dt.datetime | None = None
) -> RetentionCounts:
    """The dry run: how many entries are due, by kind, and how many are kept and why.

    Reads metadata only; no payload is decrypted.
    """
    cutoff = _cutoff(now or utcnow(), retention)
    async with db.read() as session:
        kinds = (
            await session.exec(
                select(ParticipationEntry.kind, func.count())
                .where(*_due(cutoff))
                .group_by(col(ParticipationEntry.kind))
            )
        ).all()
        cases = (
            await session.exec(
                select(func.count(func.distinct(ParticipationEntry.case_id))).where(*_due(cutoff))
            )
        ).one()
        unfiled = (
            await session.exec(
                select(func.count()).where(col(ParticipationEntry.filed_at).is_(None))
            )
        ).one()
        in_period = (
            await session.exec(
                select(func.count()).where(
                    col(ParticipationEntry.filed_at) > cutoff,
                    col(ParticipationEntry.payload_enc).is_not(None),
                )
            )
        ).one()
    by_kind = {str(kind): int(n) for kind, n in kinds}
    return RetentionCounts(
        entries=sum(by_kind.values()),
        messages=by_kind.get("message", 0),
        checkins=by_kind.get("checkin", 0),
        cases=int(cases),
        kept_unfiled=int(unfiled),
        kept_in_period=int(in_period),
        by_kind=by_kind,
    )


async def sweep(
    db: Database,
    keys: KeyService,
    *,
    retention: dt.timedelta,
    now: dt.datetime | None = None,
    max_cases: int = 200,
) -> RetentionCounts:
    """Remove the local copy of every entry filed more than ``retention`` ago.

    Args:
        db: The database.
        keys: Opens the case keys (entry payloads name the message they record).
        retention: How long a filed entry's local copy is kept.
        now: The clock (tests move it).
        max_cases: At most this many cases per call; the next round takes the rest.

    Returns:
        What was removed.
    """
    now = now or utcnow()
    cutoff = _cutoff(now, retention)
    async with db.read() as session:
        case_ids = (
            await session.exec(
                select(ParticipationEntry.case_id).where(*_due(cutoff)).distinct().limit(max_cases)
            )
        ).all()
    totals: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for case_id in case_ids:
        async with db.write() as session:
            done = await _sweep_case(session, keys, case_id, cutoff=cutoff, now=now)
        if done is None:
            continue
        counts, case_kinds = done
        totals.update(counts)
        kinds.update(case_kinds)
        totals["cases"] += 1
    if totals["entries"]:
        log.info(
            "retention: removed the local copy of %d filed entries (%d messages, %d check-ins)",
            totals["entries"],
            totals["messages"],
            totals["checkins"],
        )
    return RetentionCounts(
        entries=totals["entries"],
        messages=totals["messages"],
        checkins=totals["checkins"],
        cases=totals["cases"],
        by_kind=dict(kinds),
    )


async def _sweep_case(
    session: AsyncSession, keys: KeyService, case_id: str, *, cutoff: dt.datetime, now: dt.datetime
) -> tuple[Counter[str], Counter[str]] | None:
    # The conversation row orders a case's writes (router, outbox) and serialises sweepers.
    state = await session.get(ConversationState, case_id, with_for_update=True)
    if state is None:
        return None
    entries = (
        await session.exec(
            select(ParticipationEntry)
            .where(ParticipationEntry.case_id == case_id, *_due(cutoff))
            .order_by(col(ParticipationEntry.seq))
        )
    ).all()
    if not entries:
        return None  # another process swept it meanwhile
    key = await keys.case_key(session, case_id)
    counts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for entry in entries:
        assert entry.payload_enc is not None  # selected on it
        body = json.loads(
            await keys.decrypt_text(
                session,
                case_id,
                entry.payload_enc,
                table=ENTRY_TABLE,
                row_id=entry.id,
                field=ENTRY_FIELD,
            )
        )
        if entry.kind == "message":
            counts["messages"] += await _remove_message(session, body, now=now)
        elif entry.kind == "checkin":
            counts["checkins"] += await _remove_checkin_text(
                session, keys, key, entry, body, now=now
            )
        entry.payload_enc, entry.erased_at = None, now
        counts["entries"] += 1
        kinds[entry.kind] += 1
    return counts, kinds


async def _remove_message(session: AsyncSession, body: dict[str, Any], *, now: dt.datetime) -> int:
    message_id = (body.get("links") or {}).get("message_id")
    if not isinstance(message_id, str):
        return 0
    message = await session.get(Message, message_id)
    if message is None or message.body_enc is None:
        return 0
    message.body_enc, message.body_removed_at = None, now
    return 1


async def _remove_checkin_text(
    session: AsyncSession,
    keys: KeyService,
    key: DataKey,
    entry: ParticipationEntry,
    body: dict[str, Any],
    *,
    now: dt.datetime,
) -> int:
    scores = body.get("scores") or {}
    candidates = (
        await session.exec(
            select(Checkin).where(
                Checkin.case_id == entry.case_id,
                Checkin.rater == "child",
                Checkin.instrument_id == str(scores.get("instrument", "")),
                col(Checkin.text_removed_at).is_(None),
            )
        )
    ).all()
    removed = 0
    for checkin in candidates:
        if checkin.finished_at != entry.occurred_at:
            continue
        checkin.state_enc = None
        if checkin.result_enc is not None:
            result = json.loads(
                await keys.decrypt_text(
                    session,
                    entry.case_id,
                    checkin.result_enc,
                    table=CHECKIN_TABLE,
                    row_id=checkin.id,
                    field=CHECKIN_RESULT,
                )
            )
            result["closing_text"] = None
            result["goals"] = {}
            checkin.result_enc = key.encrypt(
                json.dumps(result, ensure_ascii=False),
                table=CHECKIN_TABLE,
                row_id=checkin.id,
                field=CHECKIN_RESULT,
            )
        checkin.text_removed_at = now
        removed += 1
    return removed
