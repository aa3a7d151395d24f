"""Append-only, hash-chained audit events (who read which transcript, when).

Each row's ``hash`` is SHA-256 over the previous row's hash and this row's content, so a changed
or deleted row breaks the chain from that point on. Appends run inside write transactions, which
are serialised (SQLite) or take an advisory lock (PostgreSQL), so the chain has no forks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.ids import uuid7
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
    prev = GENESIS
    for event in events:
        expected = _digest(
            prev,
            event.id,
            event.occurred_at,
            event.actor,
            event.action,
            event.case_id,
            event.detail,
        )
        if event.prev_hash != prev or event.hash != expected:
            return event.seq
        prev = event.hash
    return None
