"""The caseworker's queue: what needs them first, with the badges that say why.

Order: urgent (an unacknowledged safety flag or a running 24-hour timer), then unanswered —
the child wrote after the caseworker's last reply and nobody marked it handled — oldest wait
first, then the rest by latest activity. Badges: unread count, the child's channels, "stille tid
nu" (the child's quiet hours), the next scheduled check-in and, for Messenger, when the 24-hour
reply window closes.

It stays cheap with many cases: one statement however many cases there are (cases, their
states, one pass over their messages, channels and the next check-in as sub-selects), plus one
for the case keys when a child's name is not in the name cache yet. No message is decrypted;
the names are decrypted with the case keys from the in-memory key cache. The page's rows are
drawn by :mod:`bot.inbox.queue_rows`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.crypto import DataErased, KeyDestroyed
from bot.inbox.i18n import LOCAL_ZONE, Translator
from bot.inbox.queue_query import MESSENGER as MESSENGER  # where the rest of the inbox looks
from bot.inbox.queue_query import QUERY
from bot.inbox.recent import RecentCache
from bot.inbox.transcript import CASE_TABLE, CHILD_NAME, Urgency
from bot.keys import KeyService

# Meta's standard messaging window; channels/messenger.py declares the same capability.
MESSENGER_WINDOW = dt.timedelta(hours=24)
CHANNEL_ORDER = ("webchat", "sms", "telegram", "messenger")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_CALM = Urgency(flagged=False, reasons=None, timer_due_at=None, timer_reason=None)


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
    return _quiet_at(start, end, now.astimezone(LOCAL_ZONE).time())


def _quiet_at(start: str, end: str, local: dt.time) -> bool:
    try:
        begin, finish = dt.time.fromisoformat(start), dt.time.fromisoformat(end)
    except ValueError:
        return False
    if begin == finish:
        return False
    if begin < finish:
        return begin <= local < finish
    return local >= begin or local < finish


async def load(
    session: AsyncSession,
    keys: KeyService,
    caseworker_ids: Sequence[str],
    *,
    now: dt.datetime,
    names: NameCache | None = None,
) -> list[QueueItem]:
    """The cases assigned to ``caseworker_ids`` (the caller's own and those they cover)."""
    found = (await session.execute(QUERY, {"caseworkers": list(caseworker_ids)})).all()
    ids = [row[0] for row in found]
    if names is None or any(row[2] is None or names.get(row[2]) is None for row in found):
        await keys.preload(session, ids)  # one query for every case key, not one per name
    channels = _Channels()
    local = now.astimezone(LOCAL_ZONE).time()
    quiet: dict[tuple[str, str], bool] = {}  # most cases share the default quiet hours
    items = []
    for row in found:
        case_id, case_ref, name_enc, closed, quiet_start, quiet_end = row[:6]
        flagged, reasons, due, reason, handled = row[6:11]
        unread, last, waiting, messenger_in, channel_list, next_checkin = row[11:]
        # The same rule as transcript.Urgency.of, on columns instead of a loaded row.
        flagged = bool(flagged)
        running = due is not None and due > now
        urgent = _CALM
        if flagged or running:
            urgent = Urgency(
                flagged=flagged,
                reasons=reasons if flagged else None,
                timer_due_at=due if running else None,
                timer_reason=reason if running else None,
            )
        active, paused = channels.of(channel_list)
        closes = _window(messenger_in, now) if MESSENGER in active else None
        hours = (quiet_start, quiet_end)
        if hours not in quiet:
            quiet[hours] = _quiet_at(quiet_start, quiet_end, local)
        name = names.get(name_enc) if names is not None and name_enc is not None else None
        if name is None:
            name = await _name(session, keys, case_id, name_enc, names)
        items.append(
            QueueItem(
                case_id=case_id,
                case_ref=case_ref,
                child_name=name,
                unread=int(unread),
                last_activity=last,
                closed=bool(closed),
                urgent=urgent.urgent,
                urgent_reasons=urgent.all_reasons if urgent is not _CALM else None,
                timer_due_at=urgent.timer_due_at,
                waiting_since=None if handled else waiting,
                channels=active,
                paused=paused,
                quiet_now=quiet[hours],
                next_checkin_at=next_checkin,
                window_closes_at=closes,
            )
        )
    items.sort(key=_order)
    return items


class NameCache(RecentCache[bytes, str]):
    """Decrypted child names by ciphertext, so a queue of 1,000 decrypts only what changed.

    Keyed by the ciphertext itself: a renamed child has a new one, and an erased or shredded
    case has none (its column is NULLed), so nothing stale can be shown. Memory only, bounded
    in number and in idle time (``bot/inbox/recent.py``).
    """


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


class _Channels:
    """Parses the channel lists of one queue; most cases share a few, so each is parsed once."""

    def __init__(self) -> None:
        self._seen: dict[str | None, tuple[tuple[str, ...], tuple[str, ...]]] = {None: ((), ())}

    def of(self, listed: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The active channels and the paused ones (not also active), each in a fixed order."""
        found = self._seen.get(listed)
        if found is None:
            active: set[str] = set()
            paused: set[str] = set()
            for pair in (listed or "").split(","):
                channel, _, status = pair.rpartition(":")
                (active if status == "active" else paused).add(channel)
            found = self._seen[listed] = (_ordered(active), _ordered(paused - active))
        return found


def _ordered(names: set[str]) -> tuple[str, ...]:
    known = [n for n in CHANNEL_ORDER if n in names]
    return (*known, *sorted(names - set(known)))


def until_label(tr: Translator, moment: dt.datetime, now: dt.datetime) -> str:
    """Time left until ``moment`` in words: "3 t 20 min", "45 min"."""
    minutes = max(0, int((moment - now).total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    if hours:
        return tr.t("duration.hours_minutes", h=hours, m=minutes)
    return tr.t("duration.minutes", m=minutes)
