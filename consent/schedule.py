"""Quiet hours, school time and check-in schedules.

The bot never sends a prompt in the child's quiet hours (by default 21:00-08:00) or, if the
child asks, in school time (e.g. 08:00-14:00 on weekdays). Both are wall-clock times in the
child's time zone, so "08:00" stays 08:00 across daylight-saving changes; a quiet period that
ends inside the spring-forward gap ends at the moment the clocks jump.

Every datetime in and out is aware; results are UTC. Nothing here reads the clock: the caller
passes ``now``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "WEEKDAYS",
    "CheckinSchedule",
    "QuietHours",
    "is_quiet",
    "next_allowed",
    "next_due",
]

WEEKDAYS = frozenset(range(5))
"""Monday to Friday, as :meth:`datetime.date.weekday` numbers them."""

# How far ahead next_allowed looks for a free moment. Quiet hours end every day and school
# time is off at least one day a week, so a week and a day always finds one if there is any.
_HORIZON_DAYS = 9


@dataclass(frozen=True, slots=True)
class QuietHours:
    """When the bot must not send prompts to a child.

    Attributes:
        start: local time quiet hours begin.
        end: local time they end; before ``start`` means they run past midnight. Equal to
            ``start`` means no quiet hours.
        tz: IANA time zone of the child.
        school_hours: local start and end of school time, or None for no school-time pause.
        school_days: the weekdays (0 = Monday) school time applies; holidays are the caller's
            business (switch ``school_hours`` off).
    """

    start: dt.time = dt.time(21, 0)
    end: dt.time = dt.time(8, 0)
    tz: str = "Europe/Copenhagen"
    school_hours: tuple[dt.time, dt.time] | None = None
    school_days: frozenset[int] = WEEKDAYS

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.tz)  # fail here rather than at 21:00
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.tz!r}") from exc
        times = [self.start, self.end, *(self.school_hours or ())]
        if any(t.tzinfo is not None for t in times):
            raise ValueError("quiet and school hours are local wall-clock times without tzinfo")
        if self.school_hours is not None and not self.school_hours[0] < self.school_hours[1]:
            raise ValueError("school hours must start before they end")
        if not self.school_days <= frozenset(range(7)):
            raise ValueError("school days are weekday numbers 0-6")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)  # zoneinfo caches instances per key


@dataclass(frozen=True, slots=True)
class CheckinSchedule:
    """When a child gets check-ins.

    Attributes:
        every_days: a check-in this many days after the last one, or None.
        before_meeting: a check-in the day before each meeting with the caseworker. With
            neither, nothing is ever due (a one-off check-in is the caller's business).
        at: local time of day check-ins go out (then moved out of quiet and school time).
        quiet: the child's quiet hours and school time.
    """

    every_days: int | None = None
    before_meeting: bool = False
    at: dt.time = dt.time(16, 0)
    quiet: QuietHours = field(default_factory=QuietHours)

    def __post_init__(self) -> None:
        if self.every_days is not None and self.every_days < 1:
            raise ValueError("every_days must be at least 1")
        if self.at.tzinfo is not None:
            raise ValueError("at is a local wall-clock time without tzinfo")


def is_quiet(now: dt.datetime, prefs: QuietHours) -> bool:
    """Whether a bot prompt must wait: ``now`` is in quiet hours or school time."""
    local = _utc(now).astimezone(prefs.zone)
    clock = local.time()
    if _within(clock, prefs.start, prefs.end):
        return True
    if prefs.school_hours is None or local.weekday() not in prefs.school_days:
        return False
    return _within(clock, *prefs.school_hours)


def next_allowed(now: dt.datetime, prefs: QuietHours) -> dt.datetime:
    """The first moment at or after ``now`` that is neither quiet hours nor school time (UTC).

    Raises:
        ValueError: quiet hours and school time together leave no free moment in a week.
    """
    now = _utc(now)
    if not is_quiet(now, prefs):
        return now
    # A quiet stretch can only end where one of its intervals ends: at ``end`` or at the end of
    # school time, on some local day. Try those moments in order.
    zone = prefs.zone
    first_day = now.astimezone(zone).date()
    ends = [prefs.end] + ([prefs.school_hours[1]] if prefs.school_hours else [])
    candidates = sorted(
        moment
        for offset in range(_HORIZON_DAYS)
        for clock in ends
        for moment in _instants(first_day + dt.timedelta(days=offset), clock, zone)
        if moment > now
    )
    for moment in candidates:
        if not is_quiet(moment, prefs):
            return moment
    raise ValueError("quiet hours and school time leave no time for messages")


def next_due(
    schedule: CheckinSchedule,
    *,
    last_sent: dt.datetime | None,
    now: dt.datetime,
    meeting_at: dt.datetime | None = None,
) -> dt.datetime | None:
    """When the next check-in should go out (UTC, never before ``now``), or None.

    "Every N days": N local days after the last check-in, at ``schedule.at``; the first one
    at the next ``schedule.at``. "Before a meeting": the local day before ``meeting_at``, at
    ``schedule.at``, unless a check-in already went out on or after that day; a late one is
    sent at once, but only if that is still before the meeting. Either is then moved out of
    quiet and school time, and the earlier of the two wins.

    Args:
        schedule: the child's schedule.
        last_sent: when the last check-in went out, or None if never.
        now: the current time.
        meeting_at: the next meeting with the caseworker, if any.
    """
    now = _utc(now)
    last = _utc(last_sent) if last_sent is not None else None
    zone = schedule.quiet.zone
    due: list[dt.datetime] = []
    if schedule.every_days is not None:
        if last is None:
            # The first check-in: the next time the clock shows ``at``.
            today = now.astimezone(zone).date()
            target = _instants(today, schedule.at, zone)[0]
            if target < now:
                target = _instants(today + dt.timedelta(days=1), schedule.at, zone)[0]
        else:
            # Local days, not 24-hour steps: "every 7 days at 16:00" stays at 16:00 across DST.
            day = last.astimezone(zone).date() + dt.timedelta(days=schedule.every_days)
            target = _instants(day, schedule.at, zone)[0]
        due.append(next_allowed(max(target, now), schedule.quiet))
    if schedule.before_meeting and meeting_at is not None:
        meeting = _utc(meeting_at)
        day_before = meeting.astimezone(zone).date() - dt.timedelta(days=1)
        day_start = _instants(day_before, dt.time(0, 0), zone)[0]
        if meeting > now and (last is None or last < day_start):
            target = _instants(day_before, schedule.at, zone)[0]
            when = next_allowed(max(target, now), schedule.quiet)
            if when < meeting:
                due.append(when)
    return min(due, default=None)


def _within(clock: dt.time, start: dt.time, end: dt.time) -> bool:
    """``clock`` in ``[start, end)``, wrapping past midnight when ``end < start``."""
    if start <= end:
        return start <= clock < end
    return clock >= start or clock < end


def _instants(day: dt.date, clock: dt.time, zone: ZoneInfo) -> list[dt.datetime]:
    """The UTC moments the wall clock in ``zone`` reaches ``clock`` on ``day``, earliest first.

    Usually one. Two on the autumn night when the hour repeats. In the spring-forward gap the
    wall clock never shows ``clock``; then it is the moment the clocks jump past it.
    """
    naive = dt.datetime.combine(day, clock)
    found: set[dt.datetime] = set()
    for fold in (0, 1):
        moment = naive.replace(tzinfo=zone, fold=fold).astimezone(dt.UTC)
        if moment.astimezone(zone).replace(tzinfo=None) == naive:
            found.add(moment)
    if found:
        return sorted(found)
    # In the gap the two folds bracket the jump: before it the wall clock reads less than
    # ``clock``, after it more. Find the jump to the second (offsets change on whole seconds).
    low, high = sorted(int(naive.replace(tzinfo=zone, fold=fold).timestamp()) for fold in (0, 1))
    while high - low > 1:
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= naive:
            high = middle
        else:
            low = middle
    return [dt.datetime.fromtimestamp(high, dt.UTC)]


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("expected an aware datetime")
    return moment.astimezone(dt.UTC)
