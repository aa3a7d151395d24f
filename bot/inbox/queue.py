"""The caseworker's queue: what needs them first, with the badges that say why.

Order: urgent (an unacknowledged safety flag or a running 24-hour timer), then unanswered —
the child wrote after the caseworker's last reply and nobody marked it handled — oldest wait
first, then the rest by latest activity. Badges: unread count, the child's channels, "stille tid
nu" (the child's quiet hours), the next scheduled check-in and, for Messenger, when the 24-hour
reply window closes.

It stays cheap with many cases: four queries however many cases there are (cases with their
message aggregates, conversation states, channels, schedules), no message is decrypted, and the
child's name is decrypted with the case key from the in-memory key cache.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import and_, func, or_
from sqlalchemy import case as when
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.crypto import DataErased, KeyDestroyed
from bot.inbox.i18n import LOCAL_ZONE, Translator
from bot.inbox.transcript import CASE_TABLE, CHILD_NAME, Urgency
from bot.keys import KeyService
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
# Meta's standard messaging window; channels/messenger.py declares the same capability.
MESSENGER_WINDOW = dt.timedelta(hours=24)
CHANNEL_ORDER = ("webchat", "sms", "telegram", "messenger")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One case in the queue, with everything its badges need (no message text)."""

    case_id: str
    case_ref: str
    child_name: str | None  # None: erased with the case's data
    unread: int
    last_activity: dt.datetime | None
    closed: bool
    urgent: bool
    urgent_reasons: str | None
    timer_due_at: dt.datetime | None
    waiting_since: dt.datetime | None  # the child's first unanswered message, if any
    channels: tuple[str, ...]  # the child's active channels, in a fixed order
    paused: tuple[str, ...]  # channels the caseworker paused
    quiet_now: bool
    next_checkin_at: dt.datetime | None
    window_closes_at: dt.datetime | None  # Messenger: replies are refused after this

    @property
    def unanswered(self) -> bool:
        return self.waiting_since is not None


def quiet_now(start: str, end: str, now: dt.datetime) -> bool:
    """Whether ``now`` falls in quiet hours ``start``–``end`` (local wall-clock "HH:MM").

    An end before the start runs past midnight; equal times mean no quiet hours. A malformed
    value counts as "not quiet" here: the badge is a hint, the scheduler enforces the rule.
    """
    try:
        begin, finish = dt.time.fromisoformat(start), dt.time.fromisoformat(end)
    except ValueError:
        return False
    local = now.astimezone(LOCAL_ZONE).time()
    if begin == finish:
        return False
    if begin < finish:
        return begin <= local < finish
    return local >= begin or local < finish


def _aggregates(last_reply: Any) -> list[Any]:
    """Per case: unread count, last activity, first unanswered message, last Messenger one."""
    inbound = col(Message.direction) == Direction.INBOUND.value
    unread = and_(inbound, col(Message.read_at).is_(None))
    after_reply = or_(last_reply.is_(None), col(Message.created_at) > last_reply)
    return [
        func.coalesce(func.sum(when((unread, 1), else_=0)), 0).label("unread"),
        func.max(col(Message.created_at)).label("last"),
        func.min(when((and_(inbound, after_reply), col(Message.created_at)))).label("waiting"),
        func.max(
            when((and_(inbound, col(Message.channel) == MESSENGER), col(Message.created_at)))
        ).label("messenger_in"),
    ]


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


async def load(
    session: AsyncSession,
    keys: KeyService,
    caseworker_ids: Sequence[str],
    *,
    now: dt.datetime,
    names: NameCache | None = None,
) -> list[QueueItem]:
    """The cases assigned to ``caseworker_ids`` (the caller's own and those they cover)."""
    # The caseworkers' last reply per case, once per case (a correlated subquery would be
    # evaluated per message: quadratic in a long conversation).
    replies = (
        select(
            col(Message.case_id).label("case_id"),
            func.max(col(Message.created_at)).label("at"),
        )
        .where(col(Message.author) == Author.CASEWORKER.value)
        .group_by(col(Message.case_id))
        .subquery()
    )
    query = (
        sa_select(*_CASE, *_STATE, *_aggregates(replies.c.at))
        .select_from(Case)
        .outerjoin(ConversationState, col(ConversationState.case_id) == col(Case.id))
        .outerjoin(replies, replies.c.case_id == col(Case.id))
        .outerjoin(Message, col(Message.case_id) == col(Case.id))
        .where(col(Case.caseworker_id).in_(list(caseworker_ids)))
        # Grouping by both primary keys lets PostgreSQL select their other columns too.
        .group_by(col(Case.id), col(ConversationState.case_id), replies.c.at)
    )
    found = (await session.execute(query)).all()
    ids = [row[0] for row in found]
    if names is None or any(row[2] is None or names.get(row[2]) is None for row in found):
        await keys.preload(session, ids)  # one query for every case key, not one per name
    channels = await _channels(session, ids)
    checkins = await _next_checkins(session, ids)
    items = []
    for row in found:
        case_id, case_ref, name_enc, closed, quiet_start, quiet_end = row[:6]
        flagged, reasons, due, reason, handled = row[6:11]
        unread, last, waiting, messenger_in = row[11:]
        # The same rule as transcript.Urgency.of, on columns instead of a loaded row.
        flagged = bool(flagged)
        running = due is not None and due > now
        urgent = Urgency(
            flagged=flagged,
            reasons=reasons if flagged else None,
            timer_due_at=due if running else None,
            timer_reason=reason if running else None,
        )
        active, paused = channels.get(case_id, ((), ()))
        closes = _window(messenger_in, now) if MESSENGER in active else None
        items.append(
            QueueItem(
                case_id=case_id,
                case_ref=case_ref,
                child_name=await _name(session, keys, case_id, name_enc, names),
                unread=int(unread),
                last_activity=last,
                closed=bool(closed),
                urgent=urgent.urgent,
                urgent_reasons=urgent.all_reasons,
                timer_due_at=urgent.timer_due_at,
                waiting_since=None if handled else waiting,
                channels=active,
                paused=paused,
                quiet_now=quiet_now(quiet_start, quiet_end, now),
                next_checkin_at=checkins.get(case_id),
                window_closes_at=closes,
            )
        )
    items.sort(key=_order)
    return items


class NameCache:
    """Decrypted child names by ciphertext, so a queue of 1,000 decrypts only what changed.

    Keyed by the ciphertext itself: a renamed child has a new one, and an erased or shredded
    case has none (its column is NULLed), so nothing stale can be shown. Memory only, bounded.
    """

    def __init__(self, size: int = 8192) -> None:
        self._names: OrderedDict[bytes, str] = OrderedDict()
        self._size = size

    def get(self, blob: bytes) -> str | None:
        name = self._names.get(blob)
        if name is not None:
            self._names.move_to_end(blob)
        return name

    def put(self, blob: bytes, name: str) -> None:
        self._names[blob] = name
        self._names.move_to_end(blob)
        while len(self._names) > self._size:
            self._names.popitem(last=False)


NAMES: web.AppKey[NameCache] = web.AppKey("queue_names", NameCache)


async def _name(
    session: AsyncSession,
    keys: KeyService,
    case_id: str,
    blob: bytes | None,
    names: NameCache | None,
) -> str | None:
    if blob is not None and names is not None:
        cached = names.get(blob)
        if cached is not None:
            return cached
    try:
        name = await keys.decrypt_text(
            session, case_id, blob, table=CASE_TABLE, row_id=case_id, field=CHILD_NAME
        )
    except (KeyDestroyed, DataErased):  # erased after its retention period: no name to show
        return None
    if blob is not None and names is not None:
        names.put(blob, name)
    return name


def _order(item: QueueItem) -> tuple[int, float]:
    if item.urgent:
        # The timer that runs out first, then the flag raised first (by waiting time).
        due = item.timer_due_at or item.waiting_since or item.last_activity or _EPOCH
        return 0, due.timestamp()
    if item.waiting_since is not None:
        return 1, item.waiting_since.timestamp()  # the longest wait first
    return 2, -(item.last_activity or _EPOCH).timestamp()


def _window(last_in: dt.datetime | None, now: dt.datetime) -> dt.datetime | None:
    if last_in is None:
        return None
    closes = last_in.replace(tzinfo=last_in.tzinfo or dt.UTC) + MESSENGER_WINDOW
    return closes if closes > now else None


async def _channels(
    session: AsyncSession, ids: list[str]
) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """Per case: the active channels and the paused ones, each once, in a fixed order."""
    if not ids:
        return {}
    query = select(ChannelIdentity.case_id, ChannelIdentity.channel, ChannelIdentity.status).where(
        col(ChannelIdentity.case_id).in_(ids),
        col(ChannelIdentity.status).in_(("active", "paused")),
    )
    found: dict[str, tuple[set[str], set[str]]] = {}
    for case_id, channel, status in (await session.exec(query)).all():
        active, paused = found.setdefault(case_id, (set(), set()))
        (active if status == "active" else paused).add(channel)
    return {case_id: (_ordered(a), _ordered(p - a)) for case_id, (a, p) in found.items()}


def _ordered(names: set[str]) -> tuple[str, ...]:
    known = [n for n in CHANNEL_ORDER if n in names]
    return (*known, *sorted(names - set(known)))


async def _next_checkins(session: AsyncSession, ids: list[str]) -> dict[str, dt.datetime]:
    if not ids:
        return {}
    query = (
        select(Schedule.case_id, func.min(col(Schedule.next_due_at)))
        .where(
            col(Schedule.case_id).in_(ids),
            col(Schedule.active).is_(True),
            col(Schedule.next_due_at).is_not(None),
        )
        .group_by(col(Schedule.case_id))
    )
    return {case_id: due for case_id, due in (await session.execute(query)).all() if due}


def until_label(tr: Translator, moment: dt.datetime, now: dt.datetime) -> str:
    """Time left until ``moment`` in words: "3 t 20 min", "45 min"."""
    minutes = max(0, int((moment - now).total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    if hours:
        return tr.t("duration.hours_minutes", h=hours, m=minutes)
    return tr.t("duration.minutes", m=minutes)
