"""The queue in one statement: the caseworker's cases with every fact their rows show.

Per case: its conversation state, one pass over its messages (unread count, last activity, the
caseworkers' last reply, the child's first and last message, the last one on Messenger), the
child's first message since the last reply, the channels and the next check-in. Columns only,
no ORM objects, and no message text. :func:`bot.inbox.queue.load` turns the rows into items.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, func
from sqlalchemy import case as when
from sqlalchemy import select as sa_select
from sqlmodel import col

from bot.storage.models import (
    Author,
    Case,
    ChannelIdentity,
    ConversationState,
    Direction,
    Message,
    Schedule,
)

MESSENGER = "messenger"


def _message_facts(cases: Any) -> Any:
    """Per case, in one pass over its messages: unread count, last activity, the caseworkers'
    last reply, the child's first and last message, and the child's last one on Messenger."""
    at = col(Message.created_at)
    inbound = col(Message.direction) == Direction.INBOUND.value
    unread = and_(inbound, col(Message.read_at).is_(None))
    return (
        sa_select(
            col(Message.case_id).label("case_id"),
            func.sum(when((unread, 1), else_=0)).label("unread"),
            func.max(at).label("last"),
            func.max(when((col(Message.author) == Author.CASEWORKER.value, at))).label("reply"),
            func.min(when((inbound, at))).label("first_in"),
            func.max(when((inbound, at))).label("last_in"),
            func.max(when((and_(inbound, col(Message.channel) == MESSENGER), at))).label(
                "messenger_in"
            ),
        )
        .where(col(Message.case_id).in_(cases))
        .group_by(col(Message.case_id))
        .subquery("facts")
    )


def _waiting(facts: Any) -> Any:
    """The child's first message after the caseworkers' last reply (all of them if none).

    Only a case whose child wrote after a reply needs a second look at its messages; the
    others are answered from the one pass (never replied to: the first message; nothing
    since the reply: not waiting).
    """
    since_reply = (
        sa_select(func.min(col(Message.created_at)))
        .where(
            col(Message.case_id) == facts.c.case_id,
            col(Message.direction) == Direction.INBOUND.value,
            col(Message.created_at) > facts.c.reply,
        )
        .scalar_subquery()
    )
    return when(
        (facts.c.reply.is_(None), facts.c.first_in),
        (facts.c.last_in > facts.c.reply, since_reply),
    ).label("waiting")


# Columns only, no ORM objects: building 1,000 model instances costs more than the query.
_CASE: tuple[Any, ...] = (
    Case.id,
    Case.case_ref,
    Case.child_name_enc,
    col(Case.closed_at).is_not(None).label("closed"),
    Case.quiet_start,
    Case.quiet_end,
)
# Flags as booleans in SQL: fewer timestamps to convert per row.
_STATE: tuple[Any, ...] = (
    and_(
        col(ConversationState.urgent_since).is_not(None),
        col(ConversationState.acknowledged_at).is_(None),
    ).label("flagged"),
    ConversationState.urgent_reasons,
    ConversationState.timer_due_at,
    ConversationState.timer_reason,
    col(ConversationState.handled_at).is_not(None).label("handled"),
)
# Per case, in the same statement: its channels ("sms:active,webchat:paused") and the next
# check-in. Two more queries would cost more than these index look-ups (ids, rows, round trips).
_CHANNELS = (
    sa_select(
        func.aggregate_strings(
            col(ChannelIdentity.channel) + ":" + col(ChannelIdentity.status), ","
        )
    )
    .where(
        col(ChannelIdentity.case_id) == col(Case.id),
        col(ChannelIdentity.status).in_(("active", "paused")),
    )
    .scalar_subquery()
    .label("channels")
)
_NEXT_CHECKIN = (
    sa_select(func.min(col(Schedule.next_due_at)))
    .where(
        col(Schedule.case_id) == col(Case.id),
        col(Schedule.active).is_(True),
        col(Schedule.next_due_at).is_not(None),
    )
    .scalar_subquery()
    .label("next_checkin")
)


def _query() -> Any:
    """The queue in one statement: cases, their states, message facts, channels, check-ins."""
    workers: Any = bindparam("caseworkers", expanding=True)
    facts = _message_facts(sa_select(col(Case.id)).where(col(Case.caseworker_id).in_(workers)))
    return (
        sa_select(
            *_CASE,
            *_STATE,
            func.coalesce(facts.c.unread, 0),
            facts.c.last,
            _waiting(facts),
            facts.c.messenger_in,
            _CHANNELS,
            _NEXT_CHECKIN,
        )
        .select_from(Case)
        .outerjoin(ConversationState, col(ConversationState.case_id) == col(Case.id))
        .outerjoin(facts, facts.c.case_id == col(Case.id))
        .where(col(Case.caseworker_id).in_(workers))
    )


# Built once: making the statement (and its cache key) cost more than running it on SQLite.
# Execute with ``{"caseworkers": [...]}``, the caseworkers whose cases to read.
QUERY = _query()
