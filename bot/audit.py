"""Append-only, hash-chained audit events (who read which transcript, when).

Each row's ``hash`` is SHA-256 over the previous row's hash and this row's content, so a changed
or deleted row breaks the chain from that point on (:func:`verify_log`, ``stemme audit verify``,
the admin page). Appends run inside write transactions, which
are serialised (SQLite) or take an advisory lock (PostgreSQL), so the chain has no forks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.ids import uuid7
from bot.storage.db import Database
from bot.storage.models import AuditEvent, utcnow

GENESIS = "0" * 64
_PG_AUDIT_LOCK = 0x5354454D  # "STEM"


def _digest(
    prev_hash: str,
    event_id: str,
    occurred_at: dt.datetime,
    actor: str,
    action: str,
    case_id: str | None,
    detail: str,
) -> str:
    body = json.dumps(
        [prev_hash, event_id, occurred_at.isoformat(), actor, action, case_id, detail],
        separators=(",", ":"),
    )
    return hashlib.sha256(body.encode()).hexdigest()


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    case_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's write transaction. ``detail`` must hold no child text."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.exec(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=_PG_AUDIT_LOCK))  # type: ignore[call-overload]
    last = (
        await session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1))
    ).first()
    prev = last.hash if last is not None else GENESIS
    event_id = uuid7()
    # Microsecond precision survives both databases, so the hash can be recomputed.
    now = utcnow()
    payload = json.dumps(detail or {}, sort_keys=True, separators=(",", ":"))
    event = AuditEvent(
        id=event_id,
        occurred_at=now,
        actor=actor,
        action=action,
        case_id=case_id,
        detail=payload,
        prev_hash=prev,
        hash=_digest(prev, event_id, now, actor, action, case_id, payload),
    )
    session.add(event)
    await session.flush()
    return event


def verify_chain(events: Sequence[AuditEvent]) -> int | None:
    """The ``seq`` of the first event that breaks the chain, or ``None`` if it is intact."""
    walk = _ChainWalk()
    for event in events:
        broken = walk.step(event)
        if broken is not None:
            return broken.seq
    return None


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """Where the chain first breaks, and how.

    ``reason`` is ``edited`` (the row's content no longer gives its hash) or ``gap`` (the row
    does not follow the one before it: a row between them was deleted, or rows were reordered).
    ``after`` is the seq of the last intact row before it, if any.
    """

    seq: int
    reason: str
    after: int | None

    def describe(self) -> str:
        if self.reason == EDITED:
            return f"audit event seq {self.seq} was changed (its hash no longer matches)"
        where = f"seq {self.after}" if self.after is not None else "the start of the log"
        return (
            f"audit event seq {self.seq} does not follow {where}: an event in between was "
            "deleted, or events were reordered"
        )


@dataclass(frozen=True, slots=True)
class ChainStatus:
    """The result of walking the whole log."""

    count: int
    head_seq: int | None
    head_hash: str
    broken: ChainBreak | None


EDITED = "edited"
GAP = "gap"


class _ChainWalk:
    def __init__(self) -> None:
        self.prev = GENESIS
        self.prev_seq: int | None = None

    def step(self, event: AuditEvent) -> ChainBreak | None:
        assert event.seq is not None
        # The link first: a row that follows the wrong predecessor is a gap or a move, even if
        # its own content is intact.
        if not hmac.compare_digest(event.prev_hash, self.prev):
            return ChainBreak(seq=event.seq, reason=GAP, after=self.prev_seq)
        expected = _digest(
            event.prev_hash,
            event.id,
            event.occurred_at,
            event.actor,
            event.action,
            event.case_id,
            event.detail,
        )
        if not hmac.compare_digest(event.hash, expected):
            return ChainBreak(seq=event.seq, reason=EDITED, after=self.prev_seq)
        self.prev, self.prev_seq = event.hash, event.seq
        return None


async def verify_log(db: Database, *, batch: int = 1000) -> ChainStatus:
    """Walk the whole audit log in ``seq`` order, a batch at a time (memory stays flat).

    Rows deleted from the *end* of the log leave no trace in the chain itself; compare
    ``head_seq``/``head_hash`` with a copy kept elsewhere (e.g. from a previous run) for that.
    """
    walk = _ChainWalk()
    count = 0
    after = 0
    while True:
        async with db.read() as session:
            query = (
                select(AuditEvent)
                .where(col(AuditEvent.seq) > after)
                .order_by(col(AuditEvent.seq))
                .limit(batch)
            )
            rows = list((await session.exec(query)).all())
        for event in rows:
            broken = walk.step(event)
            if broken is not None:
                return ChainStatus(count, walk.prev_seq, walk.prev, broken)
            count += 1
        if len(rows) < batch:
            return ChainStatus(count, walk.prev_seq, walk.prev, None)
        assert rows[-1].seq is not None
        after = rows[-1].seq


async def newest(db: Database, *, before: int | None = None, limit: int = 50) -> list[AuditEvent]:
    """A page of events, newest first; ``before`` is the seq to continue below."""
    async with db.read() as session:
        query = select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(limit)
        if before is not None:
            query = query.where(col(AuditEvent.seq) < before)
        return list((await session.exec(query)).all())
