"""The queries behind the statistics page: counts and durations, aggregated in SQL.

Nothing here reads a message body or a name. Months are the caseworkers' (Europe/Copenhagen)
calendar months, bucketed in SQL with a ``CASE`` over bound UTC boundaries, which reads the
same on SQLite and PostgreSQL. Every figure comes with the number of distinct children behind
it, so the page can suppress small cells. The one exception to "no decryption" is the change
per instrument: a check-in's score exists only inside its encrypted result, so exactly two
results per child and instrument (the first and the latest) are opened, and only when at
least :data:`MIN_CHILDREN` children could contribute.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, distinct, func, or_, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.engine.actions import URGENT_ACKNOWLEDGE
from bot.inbox.i18n import LOCAL_ZONE
from bot.storage.models import AuditEvent, Checkin, Message, Outbox, UTCDateTime

MIN_CHILDREN = 5
Scope = Select[tuple[str]] | None  # case ids to count (a query), or None for every case


@dataclass(frozen=True, slots=True)
class Month:
    key: str  # "2026-10"
    start: dt.datetime  # UTC
    end: dt.datetime  # UTC, exclusive


@dataclass(slots=True)
class Durations:
    """Durations (seconds) of one month, the children behind them, and the open ones."""

    seconds: list[float] = field(default_factory=list)
    children: set[str] = field(default_factory=set)
    open: int = 0


@dataclass(frozen=True, slots=True)
class Count:
    value: int
    children: int


@dataclass(frozen=True, slots=True)
class CheckinCount:
    sent: int
    completed: int
    children: int


@dataclass(frozen=True, slots=True)
class Change:
    """First vs latest completed check-in per child, for the children with a comparable pair."""

    children: int
    first: float | None  # means; None while suppressed (nothing was decrypted)
    latest: float | None


def months_until(now: dt.datetime, count: int) -> list[Month]:
    """The ``count`` local calendar months up to and including ``now``'s, oldest first."""
    local = now.astimezone(LOCAL_ZONE)
    year, month = local.year, local.month
    starts: list[tuple[int, int]] = []
    for _ in range(count + 1):
        starts.append((year, month))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    starts.reverse()  # count + 1 starts: the last one is this month's
    edges = [dt.datetime(y, m, 1, tzinfo=LOCAL_ZONE).astimezone(dt.UTC) for y, m in starts[1:]]
    edges.append(_next_month(starts[-1]))
    return [
        Month(f"{y:04d}-{m:02d}", edges[i], edges[i + 1]) for i, (y, m) in enumerate(starts[1:])
    ]


def _next_month(start: tuple[int, int]) -> dt.datetime:
    year, month = start
    year, month = (year, month + 1) if month < 12 else (year + 1, 1)
    return dt.datetime(year, month, 1, tzinfo=LOCAL_ZONE).astimezone(dt.UTC)


def _bucket(column: Any, months: Sequence[Month]) -> ColumnElement[str]:
    return case(*((and_(column >= m.start, column < m.end), m.key) for m in months), else_=None)


def in_period(column: Any, months: Sequence[Month]) -> ColumnElement[bool]:
    return and_(column >= months[0].start, column < months[-1].end)


def scoped(column: Any, scope: Scope) -> list[ColumnElement[bool]]:
    return [] if scope is None else [col(column).in_(scope)]


async def contacts(
    session: AsyncSession, months: Sequence[Month], scope: Scope
) -> dict[tuple[str, str], Count]:
    """Messages from children per (month, channel), with the children who wrote them."""
    inner = (
        select(
            _bucket(col(Message.created_at), months).label("month"),
            col(Message.channel).label("channel"),
            col(Message.case_id).label("case_id"),
        )
        .where(
            col(Message.author) == "child",
            col(Message.direction) == "in",
            in_period(col(Message.created_at), months),
            *scoped(Message.case_id, scope),
        )
        .subquery()
    )
    query = select(
        inner.c.month, inner.c.channel, func.count(), func.count(distinct(inner.c.case_id))
    ).group_by(inner.c.month, inner.c.channel)
    rows = (await session.execute(query)).all()
    return {(m, ch): Count(int(n), int(k)) for m, ch, n, k in rows}


async def response_times(
    session: AsyncSession, months: Sequence[Month], scope: Scope
) -> dict[str, Durations]:
    """From the child's first message after the caseworker last wrote to the next reply.

    A run of child messages counts once (from its first message); bot messages are ignored.
    Window functions pair each run with the reply that ended it, in SQL.
    """
    talk = (
        select(
            col(Message.case_id).label("case_id"),
            col(Message.seq).label("seq"),
            col(Message.author).label("author"),
            col(Message.created_at).label("at"),
            func.lag(col(Message.author))
            .over(partition_by=col(Message.case_id), order_by=col(Message.seq))
            .label("prev"),
        )
        .where(
            col(Message.author).in_(("child", "caseworker")),
            # A month before the period tells whether its first messages continue a run.
            col(Message.created_at) >= months[0].start - dt.timedelta(days=31),
            *scoped(Message.case_id, scope),
        )
        .subquery()
    )
    starts = and_(talk.c.author == "child", or_(talk.c.prev.is_(None), talk.c.prev != "child"))
    ends = and_(talk.c.author == "caseworker", talk.c.prev == "child")
    turns = (
        select(
            talk.c.case_id,
            talk.c.author,
            talk.c.at,
            func.lead(talk.c.at, type_=UTCDateTime())
            .over(partition_by=talk.c.case_id, order_by=talk.c.seq)
            .label("answered_at"),
        )
        .where(or_(starts, ends))
        .subquery()
    )
    query = select(
        _bucket(turns.c.at, months), turns.c.case_id, turns.c.at, turns.c.answered_at
    ).where(turns.c.author == "child", in_period(turns.c.at, months))
    found: dict[str, Durations] = {}
    for month, case_id, asked, answered in (await session.execute(query)).all():
        into = found.setdefault(month, Durations())
        into.children.add(case_id)
        if answered is None:
            into.open += 1
        else:
            into.seconds.append((answered - asked).total_seconds())
    return found


async def checkin_rates(
    session: AsyncSession, months: Sequence[Month], scope: Scope
) -> dict[str, CheckinCount]:
    """Check-ins sent to children per month (by start), how many they completed."""
    inner = (
        select(
            _bucket(col(Checkin.started_at), months).label("month"),
            col(Checkin.status).label("status"),
            col(Checkin.case_id).label("case_id"),
        )
        .where(
            col(Checkin.rater) == "child",
            in_period(col(Checkin.started_at), months),
            *scoped(Checkin.case_id, scope),
        )
        .subquery()
    )
    completed = func.sum(case((inner.c.status == "completed", 1), else_=0))
    query = select(
        inner.c.month, func.count(), completed, func.count(distinct(inner.c.case_id))
    ).group_by(inner.c.month)
    rows = (await session.execute(query)).all()
    return {m: CheckinCount(int(n), int(done or 0), int(k)) for m, n, done, k in rows}


async def urgent_flags(
    session: AsyncSession, months: Sequence[Month], scope: Scope
) -> dict[str, Durations]:
    """Urgent (risk) flags per month and the time until a caseworker acknowledged each.

    Each raised risk flag queues exactly one ``escalate`` job, and a new flag is raised only
    after the previous one was acknowledged, so the first acknowledgement after the job is
    the one that answered it.
    """
    acknowledged = (
        select(func.min(AuditEvent.occurred_at))
        .where(
            col(AuditEvent.action) == URGENT_ACKNOWLEDGE,
            col(AuditEvent.case_id) == col(Outbox.case_id),
            col(AuditEvent.occurred_at) >= col(Outbox.created_at),
        )
        .correlate(Outbox)
        .scalar_subquery()
    )
    query = select(
        _bucket(col(Outbox.created_at), months),
        col(Outbox.case_id),
        col(Outbox.created_at),
        acknowledged,
    ).where(
        col(Outbox.kind) == "escalate",
        in_period(col(Outbox.created_at), months),
        *scoped(Outbox.case_id, scope),
    )
    found: dict[str, Durations] = {}
    for month, case_id, raised, acked in (await session.execute(query)).all():
        into = found.setdefault(month, Durations())
        into.children.add(str(case_id))
        if acked is None:
            into.open += 1
        else:
            into.seconds.append((acked - raised).total_seconds())
    return found
