"""Quiet hours and schedules. Every test sets the clock explicitly; times in comments are local
(Europe/Copenhagen: CET = UTC+1 in winter, CEST = UTC+2 in summer)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent.schedule import CheckinSchedule, QuietHours, is_quiet, next_allowed, next_due

T = dt.time


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


DEFAULT = QuietHours()
SCHOOL = QuietHours(school_hours=(T(8), T(14)))


@pytest.mark.parametrize(
    ("now", "quiet"),
    [
        (utc(2024, 1, 10, 19, 59), False),  # 20:59 CET
        (utc(2024, 1, 10, 20, 0), True),  # 21:00 CET
        (utc(2024, 1, 10, 23, 0), True),  # 00:00 CET: across midnight
        (utc(2024, 1, 11, 6, 59), True),  # 07:59 CET
        (utc(2024, 1, 11, 7, 0), False),  # 08:00 CET
        (utc(2024, 7, 10, 18, 59), False),  # 20:59 CEST
        (utc(2024, 7, 10, 19, 0), True),  # 21:00 CEST
        (utc(2024, 7, 11, 6, 0), False),  # 08:00 CEST
    ],
)
def test_is_quiet_uses_local_wall_clock_time(now: dt.datetime, quiet: bool) -> None:
    assert is_quiet(now, DEFAULT) is quiet


def test_equal_start_and_end_mean_no_quiet_hours() -> None:
    never = QuietHours(start=T(21), end=T(21))
    assert not any(is_quiet(utc(2024, 1, 10, h), never) for h in range(24))


def test_quiet_hours_inside_one_day() -> None:
    afternoon = QuietHours(start=T(13), end=T(15))
    assert is_quiet(utc(2024, 1, 10, 12, 30), afternoon)  # 13:30 CET
    assert not is_quiet(utc(2024, 1, 10, 22), afternoon)
    assert next_allowed(utc(2024, 1, 10, 12, 30), afternoon) == utc(2024, 1, 10, 14)


def test_the_march_switch_night() -> None:
    # 31 March 2024: clocks jump from 02:00 CET to 03:00 CEST (01:00 UTC). 08:00 is now 06:00 UTC.
    assert next_allowed(utc(2024, 3, 30, 22), DEFAULT) == utc(2024, 3, 31, 6)
    assert next_allowed(utc(2024, 3, 31, 5, 59), DEFAULT) == utc(2024, 3, 31, 6)
    assert next_allowed(utc(2024, 3, 31, 6), DEFAULT) == utc(2024, 3, 31, 6)


def test_the_october_switch_night() -> None:
    # 27 October 2024: clocks go back from 03:00 CEST to 02:00 CET (01:00 UTC). 08:00 is 07:00 UTC.
    assert next_allowed(utc(2024, 10, 26, 22), DEFAULT) == utc(2024, 10, 27, 7)
    assert is_quiet(utc(2024, 10, 27, 6, 30), DEFAULT)  # 07:30 CET, not 08:30
    assert not is_quiet(utc(2024, 10, 26, 18, 59), DEFAULT)  # 20:59 CEST


def test_quiet_hours_ending_in_the_spring_gap_end_when_the_clocks_jump() -> None:
    odd = QuietHours(start=T(21), end=T(2, 30))  # 02:30 does not exist on 31 March 2024
    assert next_allowed(utc(2024, 3, 30, 23), odd) == utc(2024, 3, 31, 1)  # 03:00 CEST


def test_quiet_hours_ending_in_the_repeated_autumn_hour() -> None:
    odd = QuietHours(start=T(21), end=T(2, 30))
    # 02:30 happens twice on 27 October 2024; quiet ends at the first, and the repeated
    # 02:00-02:30 is quiet again by the wall clock.
    assert next_allowed(utc(2024, 10, 26, 23), odd) == utc(2024, 10, 27, 0, 30)
    assert not is_quiet(utc(2024, 10, 27, 0, 45), odd)  # 02:45 CEST
    assert next_allowed(utc(2024, 10, 27, 1, 10), odd) == utc(2024, 10, 27, 1, 30)  # 02:10 CET


def test_school_time_on_weekdays_only() -> None:
    assert is_quiet(utc(2024, 3, 4, 9), SCHOOL)  # Monday 10:00
    assert not is_quiet(utc(2024, 3, 2, 9), SCHOOL)  # Saturday 10:00
    assert not is_quiet(utc(2024, 3, 4, 13), SCHOOL)  # Monday 14:00
    # Friday 23:00 → Saturday 08:00: no school on Saturday.
    assert next_allowed(utc(2024, 3, 29, 22), SCHOOL) == utc(2024, 3, 30, 7)
    # Sunday 24:00 (the first Monday in summer time) → through the night and school → 14:00.
    assert next_allowed(utc(2024, 3, 31, 22), SCHOOL) == utc(2024, 4, 1, 12)


def test_times_in_other_zones_are_accepted_and_results_are_utc() -> None:
    copenhagen = dt.timezone(dt.timedelta(hours=1))
    result = next_allowed(dt.datetime(2024, 1, 10, 23, 0, tzinfo=copenhagen), DEFAULT)
    assert result == utc(2024, 1, 11, 7)
    assert result.tzinfo == dt.UTC
    with pytest.raises(ValueError, match="aware"):
        is_quiet(dt.datetime(2024, 1, 10, 12), DEFAULT)


def test_settings_that_leave_no_time_are_refused() -> None:
    always = QuietHours(
        start=T(14), end=T(8), school_hours=(T(8), T(14)), school_days=frozenset(range(7))
    )
    with pytest.raises(ValueError, match="no time"):
        next_allowed(utc(2024, 1, 10, 12), always)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tz": "Europe/Nowhere"},
        {"school_hours": (T(14), T(8))},
        {"school_days": frozenset({7})},
        {"start": T(21, tzinfo=dt.UTC)},
    ],
)
def test_bad_quiet_hours_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        QuietHours(**kwargs)  # type: ignore[arg-type]


# Clock times, often between 02:00 and 03:00 where the switch nights play tricks.
_MINUTES = st.one_of(st.integers(0, 24 * 60 - 1), st.integers(2 * 60, 3 * 60)).map(
    lambda m: T(m // 60, m % 60)
)
# Minutes since 2024-01-01 00:00 UTC: any time in two years, or a day and a half either side
# of one of the four switches (01:00 UTC on 31/3/2024, 27/10/2024, 30/3/2025, 26/10/2025).
_SWITCHES = [
    int((utc(*day, 1) - utc(2024, 1, 1)).total_seconds() // 60)
    for day in ((2024, 3, 31), (2024, 10, 27), (2025, 3, 30), (2025, 10, 26))
]
_NOW = st.one_of(
    st.integers(0, 2 * 365 * 24 * 60),
    st.sampled_from(_SWITCHES).flatmap(lambda m: st.integers(m - 36 * 60, m + 36 * 60)),
).map(lambda m: utc(2024, 1, 1) + dt.timedelta(minutes=m))


@st.composite
def prefs(draw: st.DrawFn) -> QuietHours:
    school = None
    if draw(st.booleans()):
        start = draw(st.integers(6 * 60, 12 * 60))
        school = (T(start // 60, start % 60), T(14, draw(st.integers(0, 59))))
    return QuietHours(start=draw(_MINUTES), end=draw(_MINUTES), school_hours=school)


def assert_first_free_minute(now: dt.datetime, prefs: QuietHours) -> None:
    result = next_allowed(now, prefs)
    assert result >= now
    assert not is_quiet(result, prefs)
    step = now
    while step < result:
        assert is_quiet(step, prefs), step
        step += dt.timedelta(minutes=1)


@settings(max_examples=60, deadline=None)
@given(prefs=prefs(), now=_NOW)
def test_next_allowed_is_the_first_free_minute(prefs: QuietHours, now: dt.datetime) -> None:
    assert_first_free_minute(now, prefs)


@settings(max_examples=150, deadline=None)
@given(
    start=st.integers(18 * 60, 23 * 60 + 59),
    end=st.integers(90, 210),  # 01:30-03:30, around the missing and the repeated hour
    switch=st.sampled_from(_SWITCHES),
    offset=st.integers(-3 * 60, 90),  # minutes from the switch (01:00 UTC)
)
def test_next_allowed_on_switch_nights_with_quiet_hours_ending_near_the_switch(
    start: int, end: int, switch: int, offset: int
) -> None:
    prefs = QuietHours(start=T(start // 60, start % 60), end=T(end // 60, end % 60))
    assert_first_free_minute(utc(2024, 1, 1) + dt.timedelta(minutes=switch + offset), prefs)


@settings(max_examples=60, deadline=None)
@given(
    prefs=prefs(),
    now=_NOW,
    every=st.integers(1, 30),
    since=st.integers(0, 40 * 24 * 60),
    meeting_in=st.none() | st.integers(-60, 10 * 24 * 60),
    at=_MINUTES,
)
def test_next_due_is_never_early_nor_quiet(
    prefs: QuietHours,
    now: dt.datetime,
    every: int,
    since: int,
    meeting_in: int | None,
    at: dt.time,
) -> None:
    schedule = CheckinSchedule(every_days=every, before_meeting=True, at=at, quiet=prefs)
    meeting = None if meeting_in is None else now + dt.timedelta(minutes=meeting_in)
    last = now - dt.timedelta(minutes=since)
    due = next_due(schedule, last_sent=last, now=now, meeting_at=meeting)
    assert due is not None  # every N days always gives a time
    assert due >= now
    assert not is_quiet(due, prefs)
    assert due.tzinfo == dt.UTC


FORTNIGHTLY = CheckinSchedule(every_days=14, at=T(16), quiet=SCHOOL)


def test_every_n_days_keeps_the_local_time_across_dst() -> None:
    # Sent Monday 25 March 16:00 CET; 14 local days later is Monday 8 April 16:00 CEST.
    due = next_due(FORTNIGHTLY, last_sent=utc(2024, 3, 25, 15), now=utc(2024, 3, 26, 9))
    assert due == utc(2024, 4, 8, 14)


def test_the_first_check_in_goes_out_at_the_next_chosen_time() -> None:
    morning = utc(2024, 3, 5, 9)  # Tuesday 10:00
    assert next_due(FORTNIGHTLY, last_sent=None, now=morning) == utc(2024, 3, 5, 15)
    evening = utc(2024, 3, 5, 17)  # Tuesday 18:00
    assert next_due(FORTNIGHTLY, last_sent=None, now=evening) == utc(2024, 3, 6, 15)


def test_an_overdue_check_in_waits_for_the_morning_or_after_school() -> None:
    late = utc(2024, 3, 5, 22)  # Tuesday 23:00, a month after the last one
    month_ago = utc(2024, 2, 1, 15)
    no_school = CheckinSchedule(every_days=14, at=T(16), quiet=DEFAULT)
    assert next_due(no_school, last_sent=month_ago, now=late) == utc(2024, 3, 6, 7)  # 08:00
    assert next_due(FORTNIGHTLY, last_sent=month_ago, now=late) == utc(2024, 3, 6, 13)  # 14:00


def test_a_check_in_time_in_school_hours_moves_to_after_school() -> None:
    at_ten = CheckinSchedule(every_days=7, at=T(10), quiet=SCHOOL)
    # Last sent Saturday 10:00 → due Saturday a week later (no school) or, from a Monday, 14:00.
    assert next_due(at_ten, last_sent=utc(2024, 3, 2, 9), now=utc(2024, 3, 3, 9)) == utc(
        2024, 3, 9, 9
    )
    assert next_due(at_ten, last_sent=utc(2024, 3, 4, 13), now=utc(2024, 3, 5, 9)) == utc(
        2024, 3, 11, 13
    )


BEFORE_MEETING = CheckinSchedule(before_meeting=True, at=T(16), quiet=SCHOOL)
MEETING = utc(2024, 3, 6, 9)  # Wednesday 10:00


def test_the_day_before_a_meeting() -> None:
    monday = utc(2024, 3, 4, 12)
    assert next_due(BEFORE_MEETING, last_sent=None, now=monday, meeting_at=MEETING) == utc(
        2024, 3, 5, 15
    )
    sent_tuesday = utc(2024, 3, 5, 6)  # Tuesday 07:00: already had one that day
    assert next_due(BEFORE_MEETING, last_sent=sent_tuesday, now=monday, meeting_at=MEETING) is None
    assert next_due(BEFORE_MEETING, last_sent=None, now=monday) is None


def test_a_meeting_booked_late_gets_a_check_in_only_if_there_is_time() -> None:
    no_school = CheckinSchedule(before_meeting=True, at=T(16), quiet=DEFAULT)
    tuesday_night = utc(2024, 3, 5, 21)  # 22:00: quiet until 08:00
    at_nine = utc(2024, 3, 6, 8)
    assert next_due(no_school, last_sent=None, now=tuesday_night, meeting_at=at_nine) == utc(
        2024, 3, 6, 7
    )
    at_half_past_seven = utc(2024, 3, 6, 6, 30)
    assert (
        next_due(no_school, last_sent=None, now=tuesday_night, meeting_at=at_half_past_seven)
        is None
    )
    # With school time the first free moment, 14:00, is after the 09:00 meeting.
    assert next_due(BEFORE_MEETING, last_sent=None, now=tuesday_night, meeting_at=at_nine) is None
    assert next_due(BEFORE_MEETING, last_sent=None, now=MEETING, meeting_at=MEETING) is None


def test_with_both_rules_the_earlier_wins() -> None:
    both = CheckinSchedule(every_days=14, before_meeting=True, at=T(16), quiet=SCHOOL)
    last = utc(2024, 3, 1, 15)  # Friday 1 March → every-14-days due Friday 15 March
    monday = utc(2024, 3, 4, 12)
    assert next_due(both, last_sent=last, now=monday) == utc(2024, 3, 15, 15)
    assert next_due(both, last_sent=last, now=monday, meeting_at=MEETING) == utc(2024, 3, 5, 15)


def test_a_schedule_without_rules_is_never_due() -> None:
    nothing = CheckinSchedule()
    assert (
        next_due(nothing, last_sent=None, now=MEETING, meeting_at=MEETING + dt.timedelta(days=3))
        is None
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"every_days": 0}, {"every_days": 7, "at": T(16, tzinfo=dt.UTC)}],
)
def test_bad_schedules_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CheckinSchedule(**kwargs)  # type: ignore[arg-type]
