from __future__ import annotations

import datetime as dt
import math
import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent.codes import (
    ALPHABET,
    CODE_LENGTH,
    ENTROPY_BITS,
    AttemptDecision,
    CodeAttempts,
    new_code,
    normalise_code,
)

CANONICAL = re.compile(rf"^[{ALPHABET}]{{4}}-[{ALPHABET}]{{4}}$")
T0 = dt.datetime(2024, 5, 6, 12, 0, tzinfo=dt.UTC)


def test_a_new_code_is_canonical_and_fresh() -> None:
    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200  # 40 bits: a repeat among 200 would be a broken generator
    assert all(CANONICAL.match(code) for code in codes)
    assert all(normalise_code(code) == code for code in codes)


def test_the_alphabet_has_no_look_alike_pairs_and_the_entropy_is_as_stated() -> None:
    assert len(set(ALPHABET)) == len(ALPHABET) == 32
    assert not set("OILU") & set(ALPHABET)
    assert math.log2(len(ALPHABET)) * CODE_LENGTH == ENTROPY_BITS


def test_a_seeded_generator_uses_the_whole_alphabet() -> None:
    rng = random.Random(7)
    seen = {c for _ in range(300) for c in new_code(rng) if c != "-"}
    assert seen == set(ALPHABET)
    assert new_code(random.Random(1)) == new_code(random.Random(1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7KQM-2XWD", "7KQM-2XWD"),
        ("7kqm2xwd", "7KQM-2XWD"),
        ("  7kqm 2xwd.  ", "7KQM-2XWD"),
        ("7 k q m - 2 x w d", "7KQM-2XWD"),
        ("7KQM–2XWD", "7KQM-2XWD"),  # en dash from autocorrect
        ("/start 7KQM-2XWD", "7KQM-2XWD"),  # Telegram deep link
        ("/start@stemme_bot 7kqm2xwd", "7KQM-2XWD"),
        ("kode: 7kqm 2xwd", "7KQM-2XWD"),
        ("Koden er 7KQM-2XWD!", "7KQM-2XWD"),
        ("my code is 7kqm-2xwd", "7KQM-2XWD"),
        ("“7KQM-2XWD”", "7KQM-2XWD"),
        ("７ＫＱＭ－２ＸＷＤ", "7KQM-2XWD"),  # full-width keyboard
        ("1ILO-0Øou", "1110-000V"),  # look-alikes: I/L → 1, O/Ø → 0, U → V
        ("", None),
        ("hej", None),
        ("hej med dig", None),
        ("7KQM-2XW", None),  # too short
        ("7KQM-2XWDA", None),  # too long
        ("7KQM-2XW!", None),
        ("kodeabcdefgh", None),  # a label must be followed by a separator
        ("kode 2xwd", "K0DE-2XWD"),  # a code that starts like the label is still a code
        ("ÆØÅÆ-ØÅÆØ", None),
    ],
)
def test_normalise_examples(text: str, expected: str | None) -> None:
    assert normalise_code(text) == expected


_SEPARATORS = st.sampled_from(["", "", " ", "-", "  ", " - ", "–", "\u00a0", "."])
_PREFIXES = st.sampled_from(["", "/start ", "kode: ", "KODE ", "Koden er ", "code: ", "Code "])
_SUFFIXES = st.sampled_from(["", ".", "!", " ", " .", "?"])


@given(
    seed=st.randoms(use_true_random=False),
    separators=st.lists(_SEPARATORS, min_size=CODE_LENGTH - 1, max_size=CODE_LENGTH - 1),
    upper=st.lists(st.booleans(), min_size=CODE_LENGTH, max_size=CODE_LENGTH),
    prefix=_PREFIXES,
    suffix=_SUFFIXES,
    lookalikes=st.booleans(),
)
def test_every_code_survives_how_a_child_types_it(
    seed: random.Random,
    separators: list[str],
    upper: list[bool],
    prefix: str,
    suffix: str,
    lookalikes: bool,
) -> None:
    code = new_code(seed)
    chars = [c if up else c.lower() for c, up in zip(code.replace("-", ""), upper, strict=True)]
    if lookalikes:
        swap = {"0": "O", "1": "l", "V": "u"}
        chars = [swap.get(c.upper(), c) for c in chars]
    typed = chars[0] + "".join(s + c for s, c in zip(separators, chars[1:], strict=True))
    assert normalise_code(prefix + typed + suffix) == code


@given(st.text())
def test_any_text_gives_none_or_a_canonical_code(text: str) -> None:
    result = normalise_code(text)
    assert result is None or CANONICAL.match(result)
    assert normalise_code(result or "") == result


def test_five_wrong_codes_then_a_quarter_of_an_hour() -> None:
    policy = CodeAttempts()
    failures = [T0 + dt.timedelta(minutes=i) for i in range(4)]
    assert policy.decide(failures, T0 + dt.timedelta(minutes=4)) == AttemptDecision(
        allowed=True, next_attempt_at=T0 + dt.timedelta(minutes=4)
    )
    failures.append(T0 + dt.timedelta(minutes=4))
    locked = policy.decide(failures, T0 + dt.timedelta(minutes=5))
    assert locked == AttemptDecision(allowed=False, next_attempt_at=T0 + dt.timedelta(minutes=19))
    assert policy.decide(failures, T0 + dt.timedelta(minutes=19)).allowed


def test_each_further_failure_doubles_the_wait_up_to_the_cap() -> None:
    # A week's memory, so the first failures are still remembered when the cap is reached.
    policy = CodeAttempts(memory=dt.timedelta(days=7))
    failures = [T0] * 5
    waits = []
    for _ in range(9):
        now = policy.decide(failures, failures[-1]).next_attempt_at
        waits.append(now - failures[-1])
        failures.append(now)
    minutes = [int(w.total_seconds() // 60) for w in waits]
    assert minutes == [15, 30, 60, 120, 240, 480, 960, 1440, 1440]


def test_old_failures_are_forgotten_and_order_does_not_matter() -> None:
    policy = CodeAttempts()
    old = [T0 - dt.timedelta(hours=25 + i) for i in range(20)]
    assert policy.decide(old, T0).allowed
    assert policy.keep_since(T0) == T0 - dt.timedelta(hours=24)
    recent = [T0 - dt.timedelta(minutes=m) for m in (1, 9, 3, 7, 5)]
    assert policy.decide(recent, T0) == policy.decide(sorted(recent), T0)
    assert policy.decide(recent, T0).next_attempt_at == T0 + dt.timedelta(minutes=14)


def test_times_in_other_zones_count_and_naive_times_are_refused() -> None:
    policy = CodeAttempts()
    copenhagen = dt.timezone(dt.timedelta(hours=2))
    failures = [T0.astimezone(copenhagen)] * 5
    decision = policy.decide(failures, T0 + dt.timedelta(minutes=1))
    assert decision.next_attempt_at == T0 + dt.timedelta(minutes=15)
    assert decision.next_attempt_at.tzinfo == dt.UTC
    with pytest.raises(ValueError, match="aware"):
        policy.decide([], T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="aware"):
        policy.decide([T0.replace(tzinfo=None)], T0)


def test_a_greedy_guesser_gets_at_most_eleven_tries_a_day() -> None:
    policy = CodeAttempts()
    now, tries = T0, list[dt.datetime]()
    while now < T0 + dt.timedelta(days=30):
        decision = policy.decide([t for t in tries if t >= policy.keep_since(now)], now)
        if decision.allowed:
            tries.append(now)
            now += dt.timedelta(seconds=1)
        else:
            assert decision.next_attempt_at > now
            now = decision.next_attempt_at
    per_window = max(
        sum(1 for t in tries[i:] if t < start + dt.timedelta(hours=24))
        for i, start in enumerate(tries)
    )
    assert per_window == 11
    assert 150 <= len(tries) <= 250  # about 2,400 a year, as the module docstring says


@pytest.mark.parametrize(
    "kwargs",
    [
        {"free": 0},
        {"lockout": dt.timedelta(0)},
        {"lockout": dt.timedelta(hours=2), "max_lockout": dt.timedelta(hours=1)},
        {"memory": dt.timedelta(0)},
    ],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CodeAttempts(**kwargs)  # type: ignore[arg-type]
