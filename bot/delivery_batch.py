"""Delivery records in bulk: the outbox's "sent" records and the providers' reports.

Every reply costs three writes: the send's answer (the provider's id and "sent"), then the
provider's reports (sent, delivered, or a failure). They come in bursts, many cases at once, so
each kind is a bulk piece of group commit (``Database.grouped_bulk``): a batch's items cost one
read of their messages, one of the reports that came early, and one executemany of the new
states, instead of an ORM load and flush per item. The rules are ``bot.delivery_state``'s:
states only move forward (``advanced``); a report whose message does not know its provider id
yet waits in ``early_status`` and is applied when the send's answer is stored; on PostgreSQL the
provider id's advisory lock orders "store the id" against "a report for the id" (taken in
sorted order within a batch).

Watermark reports (Messenger's "everything up to") are rare and read messages by time, so a
batch that holds one is applied report by report (``apply_reports``).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.delivery_state import (
    FAILED,
    FAILED_VALUES,
    Applied,
    advanced,
    apply_reports,
    early_row,
    expire_loaded,
    lock_provider_id,
)
from bot.keys import KeyService
from bot.ops.metrics import reason_label
from bot.outbox_claim import finish
from bot.storage.models import Direction, EarlyStatus, Message
from channels.base import DeliveryState, StatusUpdate

_M = Message.__table__  # type: ignore[attr-defined]
_E = EarlyStatus.__table__  # type: ignore[attr-defined]

_COLUMNS = (
    _M.c.id,
    _M.c.case_id,
    _M.c.seq,
    _M.c.channel,
    _M.c.provider_message_id,
    _M.c.delivery_state,
    _M.c.delivered_at,
    _M.c.delivery_reason,
)
# FOR UPDATE (PostgreSQL; SQLite's writer lock covers it): a web chat "seen" committed between
# this read and the write would otherwise be overwritten with an older state.
_BY_ID = (
    select(*_COLUMNS)
    .where(_M.c.id.in_(bindparam("p_ids", expanding=True)))
    .order_by(_M.c.id)
    .with_for_update()
)
# Both lists, so SQLite reaches the (channel, direction, provider_message_id) unique index.
_BY_PROVIDER_ID = (
    select(*_COLUMNS)
    .where(
        _M.c.channel.in_(bindparam("p_channels", expanding=True)),
        _M.c.direction == Direction.OUTBOUND.value,
        _M.c.provider_message_id.in_(bindparam("p_ids", expanding=True)),
    )
    .order_by(_M.c.id)
    .with_for_update()
)
_EARLY = (
    select(_E.c.id, _E.c.channel, _E.c.provider_message_id, _E.c.state, _E.c.reason)
    .where(_E.c.provider_message_id.in_(bindparam("p_ids", expanding=True)))
    .order_by(_E.c.received_at, _E.c.id)
)
_FORGET_EARLY = delete(_E).where(_E.c.id.in_(bindparam("p_ids", expanding=True)))
_STORE = (
    update(_M)
    .where(_M.c.id == bindparam("b_id"))
    .values(
        provider_message_id=bindparam("b_provider_id"),
        delivery_state=bindparam("b_state"),
        delivered_at=bindparam("b_delivered_at"),
        delivery_reason=bindparam("b_reason"),
    )
)


@dataclass(frozen=True, slots=True)
class Sent:
    """A provider accepted a message: its id and state, and the outbox job that sent it."""

    job_id: str
    message_id: str
    channel: str
    provider_message_id: str
    state: DeliveryState


@dataclass(slots=True)
class _Row:
    """An outbound message's delivery columns, moved forward in memory, then written once."""

    id: str
    case_id: str
    seq: int
    channel: str
    provider_message_id: str | None
    state: str
    delivered_at: dt.datetime | None
    reason: str | None

    def advance(self, new: DeliveryState, reason: str | None) -> bool:
        after = advanced(self.state, self.delivered_at, new)
        if after is None:
            return False
        self.state, self.delivered_at = after
        if self.state in FAILED_VALUES:
            self.reason = reason
        return True

    @property
    def where(self) -> tuple[str, str, int]:
        return self.case_id, self.id, self.seq

    def params(self) -> dict[str, object]:
        return {
            "b_id": self.id,
            "b_provider_id": self.provider_message_id,
            "b_state": self.state,
            "b_delivered_at": self.delivered_at,
            "b_reason": self.reason,
        }


async def record_sends(session: AsyncSession, items: list[Sent]) -> list[bool]:
    """Store the provider ids and states of sent messages, apply early reports, finish jobs.

    Returns, per item, whether its message was there to record: one that is gone meanwhile
    (its case erased) has nothing to record, and its job is finished all the same.
    """
    await session.flush()  # ORM changes of earlier pieces in this transaction come first
    await _lock(session, ((item.channel, item.provider_message_id) for item in items))
    found = await session.execute(_BY_ID, {"p_ids": [item.message_id for item in items]})
    rows = {row.id: _Row(*row) for row in found}
    early: defaultdict[tuple[str, str], list[tuple[str, str, str | None]]] = defaultdict(list)
    pids = [item.provider_message_id for item in items]
    for report_id, channel, pid, state, reason in await session.execute(_EARLY, {"p_ids": pids}):
        early[(channel, pid)].append((report_id, state, reason))
    applied: list[str] = []
    for item in items:
        row = rows.get(item.message_id)
        if row is None:
            continue
        row.provider_message_id = item.provider_message_id
        row.advance(item.state, None)
        for report_id, state, reason in early.pop((item.channel, item.provider_message_id), ()):
            row.advance(DeliveryState(state), reason)
            applied.append(report_id)
    if rows:
        await session.execute(_STORE, [row.params() for row in rows.values()])
        expire_loaded(session, rows)
    if applied:
        await session.execute(_FORGET_EARLY, {"p_ids": applied})
    await finish(session, [item.job_id for item in items])
    return [item.message_id in rows for item in items]


async def apply_report_batches(
    session: AsyncSession, keys: KeyService, batches: list[Sequence[StatusUpdate]]
) -> list[Applied]:
    """Apply the reports of many webhooks (one list each) in the caller's transaction."""
    if any(status.up_to is not None for batch in batches for status in batch):
        return [await apply_reports(session, keys, batch) for batch in batches]
    reports = [status for batch in batches for status in batch]
    await session.flush()  # a "sent" record stored earlier in this transaction through the ORM
    await _lock(session, ((s.channel, s.provider_message_id) for s in reports))
    params = {
        "p_channels": sorted({s.channel for s in reports}),
        "p_ids": sorted({s.provider_message_id for s in reports}),
    }
    rows = {
        (row.channel, row.provider_message_id): _Row(*row)
        for row in await session.execute(_BY_PROVIDER_ID, params)
    }
    dirty: dict[str, _Row] = {}
    early: list[dict[str, object]] = []
    out: list[Applied] = []
    for batch in batches:
        outcome = Applied()
        for status in batch:
            row = rows.get((status.channel, status.provider_message_id))
            if row is None:
                if status.provider_message_id:  # it beat the send's answer: keep it
                    early.append(early_row(status))
                continue
            if not row.advance(status.state, status.reason):
                continue
            dirty[row.id] = row
            outcome.changed.append(row.where)
            if row.state == status.state.value and status.state in FAILED:
                outcome.failed.append((status.channel, reason_label(status.code, "failed")))
        out.append(outcome)
    if dirty:
        await session.execute(_STORE, [row.params() for row in dirty.values()])
        expire_loaded(session, dirty)
    if early:
        await session.execute(insert(_E), early)
    return out


async def _lock(session: AsyncSession, keys: Iterable[tuple[str, str]]) -> None:
    """The provider ids' advisory locks (PostgreSQL), in one order for every batch."""
    for channel, provider_id in sorted(set(keys)):
        await lock_provider_id(session, channel, provider_id)
