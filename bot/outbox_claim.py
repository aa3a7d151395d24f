"""Claiming outbox jobs: one read finds the runs that may go, one update leases them.

A *run* is the start of one case's pending jobs of one kind, in ``seq`` order, up to the first
job that is not due yet or is leased by someone else: those jobs may be processed now, one
after the other, and nothing behind them may. Jobs without a case (prompts to someone not
enrolled) are each a run of their own.

The read numbers each case's pending jobs with window functions (position in the case and
kind, and how many jobs up to here are blocked), keeps the runs whose first job is due (the
``batch`` oldest of them) and at most ``follow`` jobs of each. The lease is one
``UPDATE … WHERE id IN (…)``. On SQLite both happen under the single writer lock, so what was
read is what is leased. On PostgreSQL another worker may claim between the read and the update:
the update locks with ``FOR UPDATE SKIP LOCKED`` and re-checks the lease, and a run keeps only
the jobs up to the first one it did not get (given back in the same transaction), so no job is
ever claimed ahead of an earlier pending one.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlmodel import col

from bot.storage.db import Database
from bot.storage.models import Outbox, OutboxStatus, utcnow

log = logging.getLogger(__name__)

LEASE = dt.timedelta(seconds=60)
CASELOG = "caselog"

_T = Outbox.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed outbox job: what the worker needs to process it."""

    id: str
    kind: str
    case_id: str | None
    ref_id: str
    seq: int


@functools.lru_cache(maxsize=16)  # built once per shape; the time is a parameter (p_now)
def _runs_query(  # type: ignore[no-untyped-def]
    *, batch: int, follow: int, file_follow: int, caselog: bool | None
):
    now: BindParameter[dt.datetime] = bindparam("p_now")
    part = func.coalesce(_T.c.case_id, _T.c.id)  # a job without a case is a run of its own
    blocked = or_(
        _T.c.next_attempt_at > now,
        and_(_T.c.claimed_until.is_not(None), _T.c.claimed_until >= now),
    )
    ranked = (
        select(
            _T.c.id,
            _T.c.kind,
            _T.c.case_id,
            _T.c.ref_id,
            _T.c.seq,
            _T.c.next_attempt_at,
            part.label("part"),
            func.row_number().over(partition_by=(part, _T.c.kind), order_by=_T.c.seq).label("rn"),
            func.sum(case((blocked, 1), else_=0))
            .over(partition_by=(part, _T.c.kind), order_by=_T.c.seq, rows=(None, 0))
            .label("blocked"),
        )
        .where(_T.c.status == OutboxStatus.PENDING.value, *_kinds(caselog))
        .cte("ranked")
    )
    heads = (
        select(ranked.c.part, ranked.c.kind)
        .where(ranked.c.rn == 1, ranked.c.blocked == 0)
        .order_by(ranked.c.next_attempt_at, ranked.c.seq)
        .limit(batch)
        .cte("heads")
    )
    return (
        select(ranked.c.id, ranked.c.kind, ranked.c.case_id, ranked.c.ref_id, ranked.c.seq)
        .join(heads, and_(heads.c.part == ranked.c.part, heads.c.kind == ranked.c.kind))
        .where(
            ranked.c.blocked == 0,
            ranked.c.rn <= case((ranked.c.kind == CASELOG, file_follow), else_=follow),
        )
        .order_by(ranked.c.part, ranked.c.kind, ranked.c.seq)
    )


def _kinds(caselog: bool | None) -> list[ColumnElement[bool]]:
    if caselog is None:
        return []
    return [_T.c.kind == CASELOG] if caselog else [_T.c.kind != CASELOG]


async def claim(
    db: Database,
    worker_id: str,
    *,
    batch: int,
    follow: int,
    file_follow: int,
    caselog: bool | None = None,
) -> list[Job]:
    """Lease the runs that are due now to ``worker_id``; return their jobs in order per run.

    Args:
        db: the database.
        worker_id: written to ``claimed_by`` (host and process id).
        batch: the most runs (cases and kinds) in one claim.
        follow: the most jobs of one run.
        file_follow: the most jobs of a case-log run (filed as one batch, so more are cheap).
        caselog: only case-log jobs (True), all others (False), or every kind (None).
    """

    async def lease(session: AsyncSession) -> list[Job]:
        now = utcnow()
        query = _runs_query(
            batch=batch, follow=max(follow, 1), file_follow=max(file_follow, 1), caselog=caselog
        )
        rows = (await session.execute(query, {"p_now": now})).all()
        found = [Job(r.id, r.kind, r.case_id, r.ref_id, r.seq) for r in rows]
        if not found:
            return []
        ids = [job.id for job in found]
        values = {"claimed_by": worker_id, "claimed_until": now + LEASE}
        if db.is_sqlite:  # the writer lock held since the read: nothing changed meanwhile
            await session.execute(update(_T).where(_T.c.id.in_(ids)).values(**values))
            return found
        free = (
            select(_T.c.id)
            .where(
                _T.c.id.in_(ids),
                _T.c.status == OutboxStatus.PENDING.value,
                or_(_T.c.claimed_until.is_(None), _T.c.claimed_until < now),
            )
            .with_for_update(skip_locked=True)
        )
        got = set(
            (
                await session.execute(
                    update(_T).where(_T.c.id.in_(free)).values(**values).returning(_T.c.id)
                )
            ).scalars()
        )  # fmt: skip
        kept, behind = _prefixes(found, got)
        if behind:
            await session.execute(
                update(_T).where(_T.c.id.in_(behind)).values(claimed_by=None, claimed_until=None)
            )
        return kept

    # The lease shares a commit with the "done" writes of the round before (group commit).
    return await db.grouped(lease)


def _prefixes(found: Sequence[Job], got: set[str]) -> tuple[list[Job], list[str]]:
    """Per run, the jobs up to the first one not leased; and the leased ones behind that."""
    runs: defaultdict[tuple[str, str], list[Job]] = defaultdict(list)
    for job in found:
        runs[(job.case_id or job.id, job.kind)].append(job)
    kept: list[Job] = []
    behind: list[str] = []
    for run in runs.values():
        gap = False
        for job in run:
            gap = gap or job.id not in got
            if not gap:
                kept.append(job)
            elif job.id in got:
                behind.append(job.id)
    return kept, behind


def _dead_here(claimed_by: str | None, host: str) -> bool:
    owner, _, pid_text = (claimed_by or "").rpartition(":")
    if owner != host or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True  # we are starting up: that was an earlier process with our pid (containers)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def release_stale(db: Database) -> int:
    """Release the leases of workers that died on this host; return how many.

    A killed process leaves its claimed jobs leased, and a leased job holds back every later
    job of its case. With SQLite there is only one process, so every lease is stale at
    start-up; elsewhere a lease is stale if its process on this host no longer runs.
    """
    host = socket.gethostname()
    async with db.write() as session:
        query = select(_T.c.id, _T.c.claimed_by).where(
            _T.c.status == OutboxStatus.PENDING.value, _T.c.claimed_until.is_not(None)
        )
        rows = (await session.execute(query)).all()
        stale = [r.id for r in rows if db.is_sqlite or _dead_here(r.claimed_by, host)]
        if stale:
            await session.execute(
                update(_T).where(_T.c.id.in_(stale)).values(claimed_by=None, claimed_until=None)
            )
    if stale:
        log.info("released %d outbox jobs left by a stopped process", len(stale))
    return len(stale)


async def release(db: Database, ids: Sequence[str]) -> None:
    """Give leased jobs back (claimed behind a job that must go first)."""
    if not ids:
        return

    async def work(session: AsyncSession) -> None:
        await session.execute(
            update(_T)
            .where(col(Outbox.id).in_(list(ids)), _T.c.status == OutboxStatus.PENDING.value)
            .values(claimed_by=None, claimed_until=None)
        )

    await db.grouped(work)


async def finish(session: AsyncSession, ids: Sequence[str]) -> None:
    """Mark jobs done (in the caller's transaction)."""
    await session.execute(
        update(_T)
        .where(_T.c.id.in_(list(ids)))
        .values(status=OutboxStatus.DONE.value, done_at=utcnow(), claimed_until=None)
    )
