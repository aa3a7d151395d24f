"""Reading cases and conversations for the inbox, decrypted for the caseworker working them.

Callers authorise first (:mod:`bot.inbox.access`); nothing here checks who is asking. Decryption
goes
through the case's data key, so a row moved to another case fails loudly instead of showing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, update
from sqlalchemy import case as when
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.inbox.i18n import Translator
from bot.keys import KeyService
from bot.router import BODY, MESSAGE_TABLE
from bot.storage.models import (
    Author,
    Case,
    Caseworker,
    ConversationState,
    Direction,
    Message,
    utcnow,
)

CASE_TABLE = "child_case"
# A conversation opens with its newest messages; earlier ones are a link away. Decrypting and
# drawing 5,000 messages took over a second, and the newest are what a caseworker answers.
PAGE = 200
CHILD_NAME = "child_name"
ERASED_NAME = "\u2014"  # no words: the name is gone, in every language


@dataclass(frozen=True, slots=True)
class MessageView:
    """One message as the caseworker sees it: decrypted, labelled in their language."""

    message_id: str
    case_id: str
    seq: int
    direction: str
    author: str
    author_label: str
    text: str
    created_at: dt.datetime
    time_label: str
    delivery_state: str
    state_label: str | None

    def as_event(self) -> dict[str, Any]:
        return {
            "type": "message",
            "case_id": self.case_id,
            "seq": self.seq,
            "message_id": self.message_id,
            "direction": self.direction,
            "author": self.author,
            "author_label": self.author_label,
            "text": self.text,
            "created_at": self.created_at.isoformat(),
            "time_label": self.time_label,
            "delivery_state": self.delivery_state,
            "state_label": self.state_label,
        }

    def as_status(self) -> dict[str, Any]:
        return {
            "type": "status",
            "case_id": self.case_id,
            "seq": self.seq,
            "message_id": self.message_id,
            "delivery_state": self.delivery_state,
            "state_label": self.state_label,
        }


@dataclass(frozen=True, slots=True)
class QueueRow:
    case_id: str
    case_ref: str
    child_name: str
    unread: int
    last_activity: dt.datetime | None
    closed: bool
    urgent: bool = False
    urgent_reasons: str | None = None
    timer_due_at: dt.datetime | None = None
    covering_for: str | None = None  # the away colleague's name when this is a covered case


@dataclass(frozen=True, slots=True)
class Urgency:
    """What puts a case at the top: an unacknowledged urgent flag or a running legal timer."""

    flagged: bool
    reasons: str | None
    timer_due_at: dt.datetime | None
    timer_reason: str | None

    @property
    def urgent(self) -> bool:
        return self.flagged or self.timer_due_at is not None

    @property
    def all_reasons(self) -> str | None:
        """The flag's categories and the timer's legal signal, each once, comma-separated."""
        names = [*(self.reasons or "").split(","), self.timer_reason or ""]
        unique = list(dict.fromkeys(n.strip() for n in names if n.strip()))
        return ",".join(unique) or None

    @classmethod
    def of(cls, state: ConversationState | None, now: dt.datetime) -> Urgency:
        if state is None:
            return cls(False, None, None, None)
        flagged = state.urgent_since is not None and state.acknowledged_at is None
        running = state.timer_due_at is not None and state.timer_due_at > now
        return cls(
            flagged=flagged,
            reasons=state.urgent_reasons if flagged else None,
            timer_due_at=state.timer_due_at if running else None,
            timer_reason=state.timer_reason if running else None,
        )


async def urgency(session: AsyncSession, case_id: str) -> Urgency:
    return Urgency.of(await session.get(ConversationState, case_id), utcnow())


async def child_name(session: AsyncSession, keys: KeyService, case: Case) -> str:
    """The child's name, or a dash once the case is crypto-shredded (nothing is left)."""
    if case.child_name_enc is None or case.data_erased_at is not None:
        return ERASED_NAME
    return await keys.decrypt_text(
        session, case.id, case.child_name_enc, table=CASE_TABLE, row_id=case.id, field=CHILD_NAME
    )


def _unread() -> Any:
    is_unread = and_(
        col(Message.direction) == Direction.INBOUND.value, col(Message.read_at).is_(None)
    )
    return func.coalesce(func.sum(when((is_unread, 1), else_=0)), 0)


async def queue(
    session: AsyncSession,
    keys: KeyService,
    caseworker_id: str,
    *,
    covering: Mapping[str, str] | None = None,
) -> list[QueueRow]:
    """The caseworker's cases, and those of the away colleagues in ``covering`` (id → name):
    urgent first, then unread, then the most recently active."""
    covering = covering or {}
    query = (
        select(Case, _unread().label("unread"), func.max(Message.created_at).label("last"))
        .outerjoin(Message, col(Message.case_id) == col(Case.id))
        .where(col(Case.caseworker_id).in_([caseworker_id, *covering]))
        .group_by(col(Case.id))
    )
    found = (await session.execute(query)).all()
    states = await _states(session, [case.id for case, _, _ in found])
    now = utcnow()
    rows: list[QueueRow] = []
    for case, unread, last in found:
        urgent = Urgency.of(states.get(case.id), now)
        rows.append(
            QueueRow(
                case_id=case.id,
                case_ref=case.case_ref,
                child_name=await child_name(session, keys, case),
                unread=int(unread),
                last_activity=last,
                closed=case.closed_at is not None,
                urgent=urgent.urgent,
                urgent_reasons=urgent.all_reasons,
                timer_due_at=urgent.timer_due_at,
                covering_for=covering.get(case.caseworker_id),
            )
        )
    rows.sort(
        key=lambda r: (not r.urgent, r.unread == 0, -(r.last_activity or _EPOCH).timestamp())
    )
    return rows


async def _states(session: AsyncSession, case_ids: list[str]) -> dict[str, ConversationState]:
    if not case_ids:
        return {}
    query = select(ConversationState).where(col(ConversationState.case_id).in_(case_ids))
    return {state.case_id: state for state in (await session.exec(query)).all()}


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


async def activity(session: AsyncSession, case_id: str) -> tuple[int, dt.datetime | None]:
    """A case's unread count and time of its last message (for live queue updates)."""
    query = select(_unread(), func.max(Message.created_at)).where(Message.case_id == case_id)
    unread, last = (await session.execute(query)).one()
    return int(unread), last


async def last_seq(session: AsyncSession, case_id: str) -> int:
    query = select(func.max(Message.seq)).where(Message.case_id == case_id)
    return int((await session.execute(query)).scalar_one() or 0)


async def mark_read(session: AsyncSession, case_id: str, *, upto_seq: int | None = None) -> int:
    """Mark the child's messages read (all, or up to ``upto_seq``); returns how many."""
    query = (
        update(Message)
        .where(
            col(Message.case_id) == case_id,
            col(Message.direction) == Direction.INBOUND.value,
            col(Message.read_at).is_(None),
        )
        .values(read_at=utcnow())
    )
    if upto_seq is not None:
        query = query.where(col(Message.seq) <= upto_seq)
    result = await session.execute(query)
    return int(getattr(result, "rowcount", 0) or 0)


async def messages(
    session: AsyncSession,
    keys: KeyService,
    case: Case,
    tr: Translator,
    *,
    after: int = 0,
    message_id: str | None = None,
    newest: int | None = None,
) -> list[MessageView]:
    """The conversation in ``seq`` order (only ``seq > after``, only ``message_id``, or only
    the ``newest`` so many)."""
    query = select(Message).where(Message.case_id == case.id, Message.seq > after)
    if message_id is not None:
        query = query.where(Message.id == message_id)
    if newest is None:
        rows = list((await session.exec(query.order_by(col(Message.seq)))).all())
    else:
        latest = query.order_by(col(Message.seq).desc()).limit(newest)
        rows = list(reversed((await session.exec(latest)).all()))
    if not rows:
        return []
    name = await child_name(session, keys, case)
    workers = await _caseworker_names(session, rows)
    return [
        MessageView(
            message_id=row.id,
            case_id=row.case_id,
            seq=row.seq,
            direction=row.direction,
            author=row.author,
            author_label=_author_label(row, tr, name, workers),
            text=await _text(session, keys, case, row, tr),
            created_at=row.created_at,
            time_label=tr.time(row.created_at),
            delivery_state=row.delivery_state,
            state_label=(
                tr.delivery_state(row.delivery_state, row.delivery_reason)
                if row.direction == Direction.OUTBOUND.value
                else None
            ),
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class Window:
    """The part of a conversation a page shows: from some message to the newest."""

    lines: list[MessageView]
    earlier: int  # how many messages come before the first one shown
    more_from: int  # the ``seq`` to start from to show one page more (when ``earlier``)


def start_of(query: Mapping[str, str]) -> int | None:
    """The ``?from=`` of a conversation's address: a positive message number, else ``None``
    (a malformed value shows the newest messages, as without one)."""
    text = query.get("from", "")
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        return None
    return max(1, int(text))


async def window(
    session: AsyncSession,
    keys: KeyService,
    case: Case,
    tr: Translator,
    *,
    start: int | None = None,
) -> Window:
    """The newest :data:`PAGE` messages, or every message from ``seq`` ``start`` on.

    The window always runs to the newest message, so live updates append where they belong
    and every earlier message stays reachable by widening it.
    """
    if start is None:
        lines = await messages(session, keys, case, tr, newest=PAGE)
    else:
        lines = await messages(session, keys, case, tr, after=start - 1)
    if not lines:
        return Window(lines=lines, earlier=0, more_from=1)
    first = lines[0].seq
    query = select(func.count()).where(Message.case_id == case.id, Message.seq < first)
    earlier = int((await session.execute(query)).scalar_one())
    return Window(lines=lines, earlier=earlier, more_from=max(1, first - PAGE))


async def _text(
    session: AsyncSession, keys: KeyService, case: Case, row: Message, tr: Translator
) -> str:
    if row.body_enc is None:
        # Removed once its entry was filed and the retention period passed (or shredded).
        removed = row.body_removed_at or row.created_at
        return tr.t("message.removed_after_filing", date=tr.date(removed))
    return await keys.decrypt_text(
        session, case.id, row.body_enc, table=MESSAGE_TABLE, row_id=row.id, field=BODY
    )


async def _caseworker_names(session: AsyncSession, rows: Sequence[Message]) -> dict[str, str]:
    ids = {row.caseworker_id for row in rows if row.caseworker_id is not None}
    if not ids:
        return {}
    query = select(Caseworker.id, Caseworker.display_name).where(col(Caseworker.id).in_(ids))
    return {worker_id: name for worker_id, name in (await session.exec(query)).all()}


def _author_label(row: Message, tr: Translator, child: str, workers: dict[str, str]) -> str:
    if row.author == Author.CHILD.value:
        return tr.t("author.child", name=child)
    if row.author == Author.CASEWORKER.value:
        worker = workers.get(row.caseworker_id or "")
        return (
            tr.t("author.caseworker", name=worker) if worker else tr.t("author.caseworker_unknown")
        )
    return tr.t("author.bot")
