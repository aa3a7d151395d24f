"""The router's fast lane: a batch of ordinary inbound messages in a few multi-row statements.

Most messages a child sends need nothing from the engine: a known sender, an open case, no
words of danger or legal signal, no keyword, consent given, no check-in waiting for an answer,
no out-of-hours reply due. Such a message becomes three rows (message, participation entry,
filing job) and two counters moved on. Through the ORM that cost a dozen statements and a unit
of work per message; here a whole group-commit batch (``bot/storage/group.py``) costs one read
for provider retries, one for the senders with their cases and counters, one for the case keys,
and one multi-row statement per table.

Everything else — an unknown sender, a closed case, anything the engine must see
(:meth:`bot.engine.hooks.Bot.needs_turn`) — takes the ordinary path, in the same transaction
and in arrival order. A case with any such message in the batch takes it for all of its
messages in that batch, so a case's numbers are never allocated by both lanes at once.

Counters are read and written back whole, which is safe because nobody else writes them
meanwhile: on SQLite the transaction holds the write lock from ``BEGIN IMMEDIATE``, and on
PostgreSQL the read takes the conversation-state rows ``FOR UPDATE``, in case order (the
ordinary path's ``UPDATE`` takes the same row lock).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.caselog.entries import entry_rows
from bot.crypto import DataKey
from bot.engine.hooks import Bot, Glance
from bot.keys import KeyService
from bot.messages import Stored, child_message_entry, child_message_row
from bot.storage.models import (
    Case,
    ChannelIdentity,
    ConversationState,
    Direction,
    Message,
    Outbox,
    ParticipationEntry,
    utcnow,
)
from channels.base import Inbound

# The ordinary path for one message, inside the batch's transaction (Router._store_in).
SlowPath = Callable[[Inbound, str, AsyncSession], Awaitable[Stored | None]]

_MESSAGE = Message.__table__  # type: ignore[attr-defined]
_ENTRY = ParticipationEntry.__table__  # type: ignore[attr-defined]
_OUTBOX = Outbox.__table__  # type: ignore[attr-defined]
_IDENTITY = ChannelIdentity.__table__  # type: ignore[attr-defined]
_CASE = Case.__table__  # type: ignore[attr-defined]
_STATE = ConversationState.__table__  # type: ignore[attr-defined]

_SENDERS = (
    select(
        _IDENTITY.c.id,
        _IDENTITY.c.case_id,
        _IDENTITY.c.channel,
        _IDENTITY.c.address_index,
        _IDENTITY.c.consented_at,
        _CASE.c.case_ref,
        _CASE.c.closed_at,
        _STATE.c.next_seq,
        _STATE.c.next_entry_seq,
        _STATE.c.active_checkin_id,
        _STATE.c.bot_paused,
        _STATE.c.last_auto_reply_at,
    )
    .select_from(
        _IDENTITY.join(_CASE, _CASE.c.id == _IDENTITY.c.case_id).join(
            _STATE, _STATE.c.case_id == _IDENTITY.c.case_id
        )
    )
    # Two lists rather than a list of pairs: SQLite's planner reaches the (channel,
    # address_index) index only this way (with pairs it scanned every identity). The blind
    # index already differs per channel; the rows are matched on both again in Python.
    .where(
        _IDENTITY.c.channel.in_(bindparam("p_channels", expanding=True)),
        _IDENTITY.c.address_index.in_(bindparam("p_indexes", expanding=True)),
    )
)
# PostgreSQL: the counters are read to be written, so their rows are locked, in case order
# (two batches never wait for each other crosswise). SQLite's writer lock covers it there, and
# with the ORDER BY its planner would scan every case.
_SENDERS_LOCKED = _SENDERS.order_by(_STATE.c.case_id).with_for_update(of=_STATE)
# Built once (a statement built per batch cost its construction and cache key every time).
_STORED_BEFORE = select(
    _MESSAGE.c.id,
    _MESSAGE.c.case_id,
    _MESSAGE.c.seq,
    _MESSAGE.c.channel,
    _MESSAGE.c.provider_message_id,
).where(
    # The channel leads the unique index (channel, direction, provider id): without it, every
    # batch scanned the whole message table.
    _MESSAGE.c.channel.in_(bindparam("p_channels", expanding=True)),
    _MESSAGE.c.direction == Direction.INBOUND.value,
    _MESSAGE.c.provider_message_id.in_(bindparam("p_ids", expanding=True)),
)
_INSERT_MESSAGES = insert(_MESSAGE)
_INSERT_ENTRIES = insert(_ENTRY)
_INSERT_JOBS = insert(_OUTBOX)
_COUNTERS = (
    update(_STATE)
    .where(_STATE.c.case_id == bindparam("b_case"))
    .values(
        next_seq=bindparam("b_seq"),
        next_entry_seq=bindparam("b_entry_seq"),
        last_inbound_at=bindparam("b_at"),
        handled_at=None,
    )
)


@dataclass(frozen=True, slots=True)
class Pending:
    """An inbound message waiting for its batch, with its sender's blind index."""

    inbound: Inbound
    index: str


@dataclass(slots=True)
class _Counters:
    """A case's next numbers, shared by all its senders in the batch."""

    next_seq: int
    next_entry_seq: int


@dataclass(frozen=True, slots=True)
class _Sender:
    identity_id: str
    case_id: str
    case_ref: str
    consented: bool
    closed: bool
    counters: _Counters
    checkin_open: bool
    bot_paused: bool
    last_auto_reply_at: dt.datetime | None


class InboundBatch:
    """Stores a batch of inbound messages; one :class:`Stored` (or ``None``) per message."""

    def __init__(
        self, *, keys: KeyService, bot: Bot, slow: SlowPath, verbatim_entries: bool
    ) -> None:
        self.keys = keys
        self.bot = bot
        self.slow = slow
        self.verbatim_entries = verbatim_entries
        self.fast_count = 0  # for tests and benchmarks: how many took the fast lane

    async def __call__(self, session: AsyncSession, items: list[Pending]) -> list[Stored | None]:
        results: list[Stored | None] = [None] * len(items)
        stored_before = await _stored_before(session, items)
        first_of: dict[tuple[str, str], int] = {}
        copies: list[tuple[int, int]] = []  # (item, the earlier item in this batch it repeats)
        new: list[int] = []
        for n, item in enumerate(items):
            inbound = item.inbound
            ident = (inbound.channel, inbound.provider_message_id)
            if inbound.provider_message_id and ident in stored_before:
                results[n] = stored_before[ident]
            elif inbound.provider_message_id and ident in first_of:
                copies.append((n, first_of[ident]))
            else:
                first_of[ident] = n
                new.append(n)

        senders = await _senders(session, [items[n] for n in new])
        keys = await self.keys.preload(session, list({s.case_id for s in senders.values()}))
        now = utcnow()
        slow_cases: set[str] = set()
        for n in new:
            item = items[n]
            sender = senders.get((item.inbound.channel, item.index))
            if sender is None:
                continue  # enrolment or the prompt: the ordinary path, no case to hold back
            if sender.closed or sender.case_id not in keys or self._needs_turn(item, sender, now):
                slow_cases.add(sender.case_id)

        fast: list[int] = []
        for n in new:
            item = items[n]
            sender = senders.get((item.inbound.channel, item.index))
            if sender is None or sender.case_id in slow_cases:
                results[n] = await self.slow(item.inbound, item.index, session)
            else:
                fast.append(n)
        if fast:
            lane = [
                (n, items[n], senders[(items[n].inbound.channel, items[n].index)]) for n in fast
            ]
            for n, done in await self._store(session, lane, keys):
                results[n] = done
            self.fast_count += len(fast)
        for n, earlier in copies:
            stored = results[earlier]
            results[n] = None if stored is None else _as_duplicate(stored)
        return results

    def _needs_turn(self, item: Pending, sender: _Sender, now: dt.datetime) -> bool:
        inbound = item.inbound
        glance = Glance(
            text=inbound.text,
            button_payload=inbound.button_payload,
            consented=sender.consented,
            checkin_open=sender.checkin_open,
            bot_paused=sender.bot_paused,
            last_auto_reply_at=sender.last_auto_reply_at,
            now=now,
        )
        # Safety first, as on the ordinary path: any word of danger takes it.
        return self.bot.needs_turn(self.bot.assess(inbound.text), glance)

    async def _store(
        self,
        session: AsyncSession,
        batch: Sequence[tuple[int, Pending, _Sender]],
        keys: dict[str, DataKey],
    ) -> list[tuple[int, Stored]]:
        messages: list[dict[str, Any]] = []
        entries: list[dict[str, Any]] = []
        jobs: list[dict[str, Any]] = []
        counters: dict[str, dict[str, Any]] = {}
        out: list[tuple[int, Stored]] = []
        for n, item, sender in batch:
            inbound, key = item.inbound, keys[sender.case_id]
            numbers = sender.counters
            seq, entry_seq = numbers.next_seq, numbers.next_entry_seq
            numbers.next_seq, numbers.next_entry_seq = seq + 1, entry_seq + 1
            row = child_message_row(
                key,
                case_id=sender.case_id,
                seq=seq,
                identity_id=sender.identity_id,
                inbound=inbound,
            )
            messages.append(row)
            entry, job = entry_rows(
                case_id=sender.case_id,
                key=key,
                seq=entry_seq,
                verbatim=self.verbatim_entries,
                draft=child_message_entry(
                    case_ref=sender.case_ref, inbound=inbound, message_id=str(row["id"])
                ),
            )
            entries.append(entry)
            jobs.append(job)
            counters[sender.case_id] = {
                "b_case": sender.case_id,
                "b_seq": numbers.next_seq,
                "b_entry_seq": numbers.next_entry_seq,
                "b_at": inbound.received_at,
            }
            out.append((n, Stored(str(row["id"]), sender.case_id, seq, turn=False)))
        conn = await session.connection()
        await conn.execute(_INSERT_MESSAGES, messages)
        await conn.execute(_INSERT_ENTRIES, entries)
        await conn.execute(_INSERT_JOBS, jobs)
        await conn.execute(_COUNTERS, list(counters.values()))
        return out


async def _stored_before(
    session: AsyncSession, items: Sequence[Pending]
) -> dict[tuple[str, str], Stored]:
    """Provider retries of messages stored in an earlier transaction."""
    ids = list({i.inbound.provider_message_id for i in items if i.inbound.provider_message_id})
    if not ids:
        return {}
    channels = list({i.inbound.channel for i in items})
    conn = await session.connection()
    rows = await conn.execute(_STORED_BEFORE, {"p_channels": channels, "p_ids": ids})
    return {
        (channel, provider_id): Stored(message_id, case_id, seq, duplicate=True)
        for message_id, case_id, seq, channel, provider_id in rows
    }


async def _senders(
    session: AsyncSession, items: Sequence[Pending]
) -> dict[tuple[str, str], _Sender]:
    pairs = list({(i.inbound.channel, i.index) for i in items})
    if not pairs:
        return {}
    conn = await session.connection()
    query = _SENDERS_LOCKED if conn.dialect.name == "postgresql" else _SENDERS
    found: dict[tuple[str, str], _Sender] = {}
    counters: dict[str, _Counters] = {}
    params = {"p_channels": list({c for c, _ in pairs}), "p_indexes": list({i for _, i in pairs})}
    for row in await conn.execute(query, params):
        numbers = counters.setdefault(row.case_id, _Counters(row.next_seq, row.next_entry_seq))
        found[(row.channel, row.address_index)] = _Sender(
            identity_id=row.id,
            case_id=row.case_id,
            case_ref=row.case_ref,
            consented=row.consented_at is not None,
            closed=row.closed_at is not None,
            counters=numbers,
            checkin_open=row.active_checkin_id is not None,
            bot_paused=bool(row.bot_paused),
            last_auto_reply_at=row.last_auto_reply_at,
        )
    return found


def _as_duplicate(stored: Stored) -> Stored:
    return Stored(stored.message_id, stored.case_id, stored.seq, duplicate=True)
