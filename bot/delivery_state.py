"""Delivery states: provider reports move a message's state forward, never back.

Reports name a message by the provider's id (Twilio, Telegram) or report everything up to a
time for one chat (Messenger's delivered/read watermarks). A report that arrives before the
send's answer stored the provider id is kept (``early_status``) and applied when it is stored.
Reports come in bursts (sent, delivered, for every reply): the router stores them in bulk
(``bot.delivery_batch``), and what is here applies them one by one where a batch holds a
watermark report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import bindparam, insert, update
from sqlalchemy import select as sa_select
from sqlalchemy import text as sql_text
from sqlalchemy.orm.util import identity_key
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.ids import uuid7
from bot.keys import KeyService
from bot.ops.metrics import reason_label
from bot.storage.models import ChannelIdentity, Direction, EarlyStatus, Message, utcnow
from channels.base import DeliveryState, StatusUpdate


@dataclass(slots=True)
class Applied:
    """What a set of reports changed: (case, message, seq) per message, and failures to count."""

    changed: list[tuple[str, str, int]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (channel, reason label)


async def apply_reports(
    session: AsyncSession, keys: KeyService, updates: Sequence[StatusUpdate]
) -> Applied:
    """Apply provider reports in the caller's transaction."""
    outcome = Applied()
    for status in updates:
        if status.up_to is None:
            await lock_provider_id(session, status.channel, status.provider_message_id)
            found = await _by_provider_id(session, status)
        else:
            found = [_Reported.of(m) for m in await _reported_messages(session, keys, status)]
        if not found and status.up_to is None and status.provider_message_id:
            # The report beat the send's answer: keep it until the outbox knows the id.
            await session.execute(insert(_EARLY), [early_row(status)])
        for message in found:
            after = advanced(message.state, message.delivered_at, status.state)
            if after is None:
                continue
            await _set_state(session, message, after, status.reason)
            outcome.changed.append(message.where)
            if after[0] == status.state.value and status.state in FAILED:
                outcome.failed.append((status.channel, reason_label(status.code, "failed")))
    return outcome


async def _reported_messages(
    session: AsyncSession, keys: KeyService, status: StatusUpdate
) -> Sequence[Message]:
    """The outbound messages a report is about: one by provider id, or all up to a watermark."""
    query = select(Message).where(
        Message.channel == status.channel, Message.direction == Direction.OUTBOUND.value
    )
    if status.up_to is None:
        query = query.where(Message.provider_message_id == status.provider_message_id)
        return (await session.exec(query.limit(1))).all()
    if status.address is None:
        return []
    identity = (
        await session.exec(
            select(ChannelIdentity).where(
                ChannelIdentity.channel == status.channel,
                ChannelIdentity.address_index
                == keys.address_index(status.channel, status.address),
            )
        )
    ).first()
    if identity is None:
        return []
    query = query.where(
        Message.identity_id == identity.id,
        col(Message.provider_message_id).is_not(None),
        col(Message.created_at) <= status.up_to,
        col(Message.delivery_state).in_([DeliveryState.SENT.value, DeliveryState.DELIVERED.value]),
    )
    return (await session.exec(query)).all()


async def lock_provider_id(session: AsyncSession, channel: str, provider_id: str) -> None:
    """Serialise "store the provider id" with "a report for that id" (PostgreSQL).

    Otherwise, under READ COMMITTED, a report could miss the message being committed and park
    itself in ``early_status`` just after the outbox looked there. SQLite writers are serial.
    """
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(
            sql_text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
            {"k": f"{channel}:{provider_id}"},
        )


def apply_delivery_state(message: Message, new: DeliveryState, reason: str | None) -> bool:
    after = advanced(message.delivery_state, message.delivered_at, new)
    if after is None:
        return False
    message.delivery_state, message.delivered_at = after
    if after[0] in FAILED_VALUES:
        message.delivery_reason = reason
    return True


def advanced(
    current: str, delivered_at: dt.datetime | None, new: DeliveryState
) -> tuple[str, dt.datetime | None] | None:
    """The state and delivery time after a report of ``new``; ``None`` if nothing changes.

    States only move forward (``DeliveryState.advance``); the delivery time is the first report
    of delivered or read.
    """
    state = DeliveryState(current)
    after = state.advance(new)
    if after == state:
        return None
    if after in (DeliveryState.DELIVERED, DeliveryState.READ) and delivered_at is None:
        delivered_at = utcnow()
    return after.value, delivered_at


FAILED = (DeliveryState.FAILED, DeliveryState.UNDELIVERED)
FAILED_VALUES = frozenset(state.value for state in FAILED)


@dataclass(frozen=True, slots=True)
class _Reported:
    """An outbound message a delivery report is about, as far as the report needs it."""

    id: str
    case_id: str
    seq: int
    state: str
    delivered_at: dt.datetime | None

    @classmethod
    def of(cls, message: Message) -> _Reported:
        return cls(
            message.id, message.case_id, message.seq, message.delivery_state, message.delivered_at
        )

    @property
    def where(self) -> tuple[str, str, int]:
        return self.case_id, self.id, self.seq


async def _by_provider_id(session: AsyncSession, status: StatusUpdate) -> list[_Reported]:
    """The message a report names by provider id: one prepared Core read (two per reply)."""
    # A delivery's "done" piece may have stored the provider id in this very transaction,
    # through the ORM: it must be written before the read looks for it.
    await session.flush()
    params = {"p_channel": status.channel, "p_provider_id": status.provider_message_id}
    row = (await session.execute(_BY_PROVIDER_ID, params)).first()
    return [] if row is None else [_Reported(*row)]


async def _set_state(
    session: AsyncSession,
    message: _Reported,
    after: tuple[str, dt.datetime | None],
    reason: str | None,
) -> None:
    state, delivered_at = after
    values = {"p_id": message.id, "p_state": state, "p_delivered_at": delivered_at}
    if state in FAILED_VALUES:
        await session.execute(_SET_FAILED, values | {"p_reason": reason})
    else:
        await session.execute(_SET_STATE, values)
    expire_loaded(session, [message.id])


def early_row(status: StatusUpdate) -> dict[str, object]:
    """The ``early_status`` row for a report that beat the send's answer (no address, no text)."""
    return {
        "id": uuid7(),
        "channel": status.channel,
        "provider_message_id": status.provider_message_id[:128],
        "state": status.state.value,
        "reason": (status.reason or None) and status.reason[:300],
        "received_at": utcnow(),
    }


def expire_loaded(session: AsyncSession, message_ids: Iterable[str]) -> None:
    """Copies of these messages loaded through the ORM earlier in the transaction are stale."""
    identity_map = session.sync_session.identity_map
    for message_id in message_ids:
        loaded = identity_map.get(identity_key(Message, message_id))
        if loaded is not None:
            session.sync_session.expire(loaded)


_M = Message.__table__  # type: ignore[attr-defined]
_EARLY = EarlyStatus.__table__  # type: ignore[attr-defined]
_BY_PROVIDER_ID = (
    sa_select(_M.c.id, _M.c.case_id, _M.c.seq, _M.c.delivery_state, _M.c.delivered_at)
    .where(
        _M.c.channel == bindparam("p_channel"),
        _M.c.direction == Direction.OUTBOUND.value,
        _M.c.provider_message_id == bindparam("p_provider_id"),
    )
    .limit(1)
)
_SET_STATE = (
    update(_M)
    .where(_M.c.id == bindparam("p_id"))
    .values(delivery_state=bindparam("p_state"), delivered_at=bindparam("p_delivered_at"))
)
_SET_FAILED = _SET_STATE.values(delivery_reason=bindparam("p_reason"))
