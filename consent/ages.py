"""Ages, age bands and the birthdays on which a child gains rights under Barnets lov.

Birthdays on 29 February: in a common year the child has the birthday on **1 March**. On
28 February they have not yet lived the full number of years, so a right is never announced
a day before the child has it. :func:`age_on` and :func:`milestones_crossed` use the same rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "BANDS",
    "MILESTONES",
    "RIGHTS_MILESTONES",
    "Milestone",
    "age_band",
    "age_on",
    "birthday",
    "milestones_at_enrolment",
    "milestones_crossed",
]

BANDS = ("4_7", "8_12", "13_17", "18_22")
"""Age bands for texts and check-ins: 4-7 (read aloud, usually with an adult), 8-12, 13-17,
18-22 (aftercare, efterværn)."""

RIGHTS_MILESTONES = (10, 15, 16)
"""Ages at which Barnets lov gives the child new rights; see :data:`MILESTONES`."""


@dataclass(frozen=True, slots=True)
class Milestone:
    """A birthday that brings rights, described for the caseworker (Danish)."""

    age: int
    law: str
    rights: str


MILESTONES: Mapping[int, Milestone] = MappingProxyType(
    {
        10: Milestone(
            age=10,
            law="Barnets lov § 3 og § 6",
            rights=(
                "Partsrettigheder: barnet kan se sin egen sag (aktindsigt) og klage til "
                "Ankestyrelsen over afgørelser. Barnet kan altid have en bisidder med."
            ),
        ),
        15: Milestone(
            age=15,
            law="Barnets lov §§ 46 og 47",
            rights="Den unge skal selv give samtykke til en anbringelse uden for hjemmet.",
        ),
        16: Milestone(
            age=16,
            law="Barnets lov § 108",
            rights=(
                "Den unge får en ungeplan om overgangen til voksenlivet, herunder om efterværn."
            ),
        ),
    }
)
"""What each of :data:`RIGHTS_MILESTONES` means. The child's own wording is in the texts
(``consent.rights.<n>.<band>``)."""


def birthday(birth_date: dt.date, age: int) -> dt.date:
    """The day the child turns ``age`` (1 March in a common year for a 29 February birthday)."""
    year = birth_date.year + age
    try:
        return birth_date.replace(year=year)
    except ValueError:  # 29 February in a common year
        return dt.date(year, 3, 1)


def age_on(birth_date: dt.date, day: dt.date) -> int:
    """The child's age in whole years on ``day``.

    Raises:
        ValueError: ``day`` is before ``birth_date``.
    """
    if day < birth_date:
        raise ValueError("day is before the birth date")
    age = day.year - birth_date.year
    return age if day >= birthday(birth_date, age) else age - 1


def age_band(age: int) -> str:
    """The band for texts and check-ins: ``"4_7"``, ``"8_12"``, ``"13_17"`` or ``"18_22"``.

    Ages below 4 get ``"4_7"`` (the simplest texts, read with an adult); ages above 22 get
    ``"18_22"`` (adult texts for someone whose aftercare has ended or been extended).

    Raises:
        ValueError: a negative age.
    """
    if age < 0:
        raise ValueError("age must not be negative")
    if age <= 7:
        return "4_7"
    if age <= 12:
        return "8_12"
    if age <= 17:
        return "13_17"
    return "18_22"


def milestones_crossed(birth_date: dt.date, since: dt.date, until: dt.date) -> list[int]:
    """The milestone ages whose birthday falls in ``(since, until]``, youngest first.

    Call it with the day of the last check and today; a birthday on ``since`` was announced
    then, one on ``until`` is announced now.

    Raises:
        ValueError: ``until`` is before ``since``.
    """
    if until < since:
        raise ValueError("until is before since")
    return [m for m in RIGHTS_MILESTONES if since < birthday(birth_date, m) <= until]


def milestones_at_enrolment(age: int) -> list[int]:
    """The milestones whose rights a child of ``age`` already has, youngest first.

    A new child hears about all of them when they start, not only about the latest.
    """
    return [m for m in RIGHTS_MILESTONES if m <= age]
