"""Closing a case, and the answer a child gets who writes to a closed case.

Closing (:func:`close_case`, ``stemme case close``, and what the inbox calls) stops everything
the bot would start: scheduled check-ins are switched off, and the scheduler already skips
closed cases for check-ins and rights notes. A child who writes to a closed case gets one kind
answer (``consent.case_closed``: where to turn, 112 and BørneTelefonen 116 111) and the message
is not stored: there is nobody left to read it. If the words speak of danger, the on-call
contact is alerted at once (:func:`flag_risk_on_closed_case`): nobody will acknowledge a flag on a
closed case, so waiting for the usual deadline would only delay help.

Once the case is closed and everything is filed, :mod:`bot.caselog.retention_shred` destroys
its data key (crypto-shredding).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import audit
from bot.errors import NotFound
from bot.ids import uuid7
from bot.keys import KeyService
from bot.storage.db import Database
from bot.storage.models import (
    Case,
    CodeAttempt,
    ConversationState,
    Outbox,
    PendingReply,
    Schedule,
    utcnow,
)
from channels.base import Inbound

log = logging.getLogger(__name__)

CASE_CLOSE = "case.close"
CLOSED_TEXT = "consent.case_closed"
CLOSED_REPLY_EVERY = dt.timedelta(hours=1)  # one answer per sender, not one per retry or line


@dataclass(frozen=True, slots=True)
class ClosedCase:
    """A closed case; ``already_closed`` when it was closed before this call."""

    case_id: str
    case_ref: str
    closed_at: dt.datetime
    already_closed: bool
    schedules_stopped: int


async def case_id_of(db: Database, case_ref: str) -> str:
    """The case's id from the municipality's reference."""
    async with db.read() as session:
        found = (await session.exec(select(Case.id).where(Case.case_ref == case_ref))).first()
    if found is None:
        raise NotFound("case")
    return found


async def close_case(
    db: Database, *, case_id: str, actor: str, now: dt.datetime | None = None
) -> ClosedCase:
    """Close a case: no more bot messages, check-ins or rights notes. Idempotent.

    Args:
        db: The database.
        case_id: The case (callers authorise first).
        actor: Who closes it, for the audit trail: a caseworker id, or ``"cli"``.
        now: The clock.

    Raises:
        NotFound: No such case.
    """
    now = now or utcnow()
    async with db.write() as session:
        case = await session.get(Case, case_id, with_for_update=True)
        if case is None:
            raise NotFound("case")
        if case.closed_at is not None:
            return ClosedCase(case.id, case.case_ref, case.closed_at, True, 0)
        case.closed_at = now
        stopped = await session.execute(
            update(Schedule)
            .where(col(Schedule.case_id) == case_id, col(Schedule.active).is_(True))
            .values(active=False, next_due_at=None)
        )
        await audit.record(session, actor=actor, action=CASE_CLOSE, case_id=case_id)
    log.info("case %s closed", case_id)
    return ClosedCase(case_id, case.case_ref, now, False, int(getattr(stopped, "rowcount", 0)))


async def closed_case_reply(
    session: AsyncSession,
    keys: KeyService,
    inbound: Inbound,
    case: Case,
    *,
    sender_index: str,
    now: dt.datetime,
) -> None:
    """Queue the "this case is closed" answer; the inbound itself is not stored.

    The address goes under the service's own key and is deleted once sent, as for an unknown
    sender. At most one answer per sender per hour, so provider retries do not repeat it.
    """
    recent = (
        await session.exec(
            select(CodeAttempt.id).where(
                CodeAttempt.sender_index == sender_index,
                CodeAttempt.kind == "case_closed",
                col(CodeAttempt.at) > now - CLOSED_REPLY_EVERY,
            )
        )
    ).first()
    if recent is not None:
        return
    session.add(CodeAttempt(id=uuid7(), sender_index=sender_index, kind="case_closed", at=now))
    reply_id = uuid7()
    session.add(
        PendingReply(
            id=reply_id,
            channel=inbound.channel,
            address_enc=keys.system_key().encrypt(
                inbound.address, table="pending_reply", row_id=reply_id, field="address"
            ),
            text_key=CLOSED_TEXT,
            language=case.language,
            created_at=now,
        )
    )
    session.add(
        Outbox(id=uuid7(), kind="prompt", case_id=None, ref_id=reply_id, next_attempt_at=now)
    )


async def flag_risk_on_closed_case(
    session: AsyncSession, case_id: str, *, reasons: list[str], now: dt.datetime
) -> None:
    """A child wrote about danger to a closed case: flag it and alert on-call now.

    Only the categories are kept (never the words). The outbox's escalation sends the on-call
    contact the case reference, as for an open case whose flag nobody acknowledged in time.
    """
    state = await session.get(ConversationState, case_id)
    if state is None:
        return
    if state.urgent_since is None or state.acknowledged_at is not None:
        state.urgent_since, state.acknowledged_at, state.escalated_at = now, None, None
        session.add(
            Outbox(
                id=uuid7(), kind="escalate", case_id=case_id, ref_id=case_id, next_attempt_at=now
            )
        )
    state.urgent_reasons = ",".join(reasons)[:200] or "risk"
    log.warning("risk words on closed case %s: on-call alerted", case_id)
