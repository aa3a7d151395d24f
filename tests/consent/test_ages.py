from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent.ages import (
    BANDS,
    MILESTONES,
    RIGHTS_MILESTONES,
    age_band,
    age_on,
    birthday,
    milestones_at_enrolment,
    milestones_crossed,
)

D = dt.date
LEAP_CHILD = D(2012, 2, 29)


@pytest.mark.parametrize(
    ("birth", "day", "age"),
    [
        (D(2014, 6, 15), D(2014, 6, 15), 0),
        (D(2014, 6, 15), D(2024, 6, 14), 9),
        (D(2014, 6, 15), D(2024, 6, 15), 10),
        (D(2014, 6, 15), D(2024, 12, 31), 10),
        (LEAP_CHILD, D(2022, 2, 28), 9),  # not yet 10 on 28 February …
        (LEAP_CHILD, D(2022, 3, 1), 10),  # … but on 1 March in a common year
        (LEAP_CHILD, D(2024, 2, 28), 11),
        (LEAP_CHILD, D(2024, 2, 29), 12),  # a real birthday in a leap year
    ],
)
def test_age_on(birth: dt.date, day: dt.date, age: int) -> None:
    assert age_on(birth, day) == age


def test_no_age_before_birth() -> None:
    with pytest.raises(ValueError, match="before"):
        age_on(D(2014, 6, 15), D(2014, 6, 14))


@pytest.mark.parametrize(
    ("age", "band"),
    [
        (0, "4_7"),  # clamped: the simplest texts, read with an adult
        (3, "4_7"),
        (4, "4_7"),
        (7, "4_7"),
        (8, "8_12"),
        (12, "8_12"),
        (13, "13_17"),
        (17, "13_17"),
        (18, "18_22"),
        (22, "18_22"),
        (23, "18_22"),  # clamped: aftercare extended or just ended
        (40, "18_22"),
    ],
)
def test_age_band(age: int, band: str) -> None:
    assert age_band(age) == band
    assert band in BANDS


def test_negative_ages_have_no_band() -> None:
    with pytest.raises(ValueError):
        age_band(-1)


def test_every_milestone_is_explained() -> None:
    assert RIGHTS_MILESTONES == (10, 15, 16)
    assert tuple(MILESTONES) == RIGHTS_MILESTONES
    assert all(MILESTONES[m].age == m for m in RIGHTS_MILESTONES)
    assert "Ankestyrelsen" in MILESTONES[10].rights
    assert "§ 108" in MILESTONES[16].law


def test_milestones_crossed_counts_the_end_but_not_the_start() -> None:
    birth = D(2014, 6, 15)
    assert milestones_crossed(birth, D(2024, 6, 14), D(2024, 6, 15)) == [10]
    assert milestones_crossed(birth, D(2024, 6, 15), D(2024, 6, 16)) == []
    assert milestones_crossed(birth, D(2020, 1, 1), D(2031, 1, 1)) == [10, 15, 16]
    assert milestones_crossed(birth, D(2024, 6, 15), D(2024, 6, 15)) == []
    with pytest.raises(ValueError):
        milestones_crossed(birth, D(2024, 6, 15), D(2024, 6, 14))


def test_a_29_february_child_gets_the_note_on_1_march() -> None:
    assert birthday(LEAP_CHILD, 10) == D(2022, 3, 1)
    assert birthday(LEAP_CHILD, 12) == D(2024, 2, 29)
    assert milestones_crossed(LEAP_CHILD, D(2022, 2, 27), D(2022, 2, 28)) == []
    assert milestones_crossed(LEAP_CHILD, D(2022, 2, 28), D(2022, 3, 1)) == [10]


@pytest.mark.parametrize(
    ("age", "notes"),
    [
        (4, []),
        (9, []),
        (10, [10]),
        (14, [10]),
        (15, [10, 15]),
        (16, [10, 15, 16]),
        (21, [10, 15, 16]),
    ],
)
def test_milestones_at_enrolment(age: int, notes: list[int]) -> None:
    assert milestones_at_enrolment(age) == notes


_BIRTHS = st.dates(min_value=D(2000, 1, 1), max_value=D(2024, 12, 31))


@given(birth=_BIRTHS, a=st.integers(0, 9000), b=st.integers(0, 9000))
def test_crossing_splits_and_agrees_with_age_on(birth: dt.date, a: int, b: int) -> None:
    since, until = sorted((birth + dt.timedelta(days=a), birth + dt.timedelta(days=b)))
    middle = since + (until - since) // 2
    crossed = milestones_crossed(birth, since, until)
    assert crossed == milestones_crossed(birth, since, middle) + milestones_crossed(
        birth, middle, until
    )
    assert crossed == [
        m for m in RIGHTS_MILESTONES if age_on(birth, since) < m <= age_on(birth, until)
    ]


@given(birth=_BIRTHS, age=st.integers(1, 22))
def test_the_birthday_is_the_first_day_of_the_new_age(birth: dt.date, age: int) -> None:
    day = birthday(birth, age)
    assert age_on(birth, day) == age
    assert age_on(birth, day - dt.timedelta(days=1)) == age - 1
