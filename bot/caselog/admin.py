"""What ``stemme caselog status | retry | dead-letters`` reports and does.

Only metadata leaves here: counts, ids, kinds, case references and the stored error (an HTTP
status or an error class). Entry payloads stay encrypted and are never read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, update
from sqlmodel import col, select

from bot.storage.db import Database
from bot.storage.models import Case, Outbox, OutboxStatus, ParticipationEntry, utcnow

KIND = "caselog"


@dataclass(frozen=True, slots=True)
class Status:
    pending: int
    filed: int
    dead: int
    oldest_pending_age: dt.timedelta | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    job_id: str
    entry_id: str
    kind: str
    case_ref: str
    seq: int
    attempts: int
    last_error: str | None
    created_at: dt.datetime


async def status(db: Database, *, now: dt.datetime | None = None) -> Status:
    """Counts of participation entries waiting, filed and dead-lettered."""
    async with db.read() as session:
        rows = (
            await session.exec(
                select(Outbox.status, func.count())
                .where(Outbox.kind == KIND)
                .group_by(col(Outbox.status))
            )
        ).all()
        oldest = (
            await session.exec(
                select(func.min(Outbox.created_at)).where(
                    Outbox.kind == KIND, Outbox.status == OutboxStatus.PENDING.value
                )
            )
        ).one()
    counts = {str(s): int(n) for s, n in rows}
    age = None
    if oldest is not None:
        when = oldest if oldest.tzinfo else oldest.replace(tzinfo=dt.UTC)
        age = (now or utcnow()) - when
    return Status(
        pending=counts.get(OutboxStatus.PENDING.value, 0),
        filed=counts.get(OutboxStatus.DONE.value, 0),
        dead=counts.get(OutboxStatus.DEAD.value, 0),
        oldest_pending_age=age,
    )


async def dead_letters(db: Database) -> list[DeadLetter]:
    """Dead-lettered entries, oldest first."""
    async with db.read() as session:
        rows = (
            await session.exec(
                select(Outbox, ParticipationEntry.kind, Case.case_ref)
                .join(ParticipationEntry, col(ParticipationEntry.id) == col(Outbox.ref_id))
                .join(Case, col(Case.id) == col(ParticipationEntry.case_id))
                .where(Outbox.kind == KIND, Outbox.status == OutboxStatus.DEAD.value)
                .order_by(col(Outbox.created_at), col(Outbox.seq))
            )
        ).all()
    return [
        DeadLetter(
            job_id=job.id,
            entry_id=job.ref_id,
            kind=kind,
            case_ref=case_ref,
            seq=job.seq,
            attempts=job.attempts,
            last_error=job.last_error,
            created_at=job.created_at,
        )
        for job, kind, case_ref in rows
    ]


async def retry(db: Database, *, now: dt.datetime | None = None) -> int:
    """Queue every dead-lettered entry again, with a fresh 72-hour window; return how many."""
    at = now or utcnow()
    async with db.write() as session:
        result = await session.execute(
            update(Outbox)
            .where(col(Outbox.kind) == KIND, col(Outbox.status) == OutboxStatus.DEAD.value)
            .values(
                status=OutboxStatus.PENDING.value,
                attempts=0,
                next_attempt_at=at,
                created_at=at,
                claimed_by=None,
                claimed_until=None,
                done_at=None,
            )
        )
    return int(getattr(result, "rowcount", 0) or 0)


def describe_age(age: dt.timedelta | None) -> str:
    if age is None:
        return "-"
    seconds = int(age.total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
