"""The check-in state machine: one item at a time, pure (no I/O, no clock, no database).

::

    start ─► asking ──(after the last item)──► closing_question ──► completed
               │ ▲                                    (or straight to completed without one)
               └─┘ an answer not understood is asked again, gently and differently,
                   at most twice; the third time the item is skipped
    asking / closing_question ──(a message after expires_at)──► expired
    asking / closing_question ──(abandon)─────────────────────► abandoned

The state the caller keeps between messages, and what a check-in produces, are in
:mod:`bot.engine.checkin_state`; the questions and buttons the child sees are built in
:mod:`bot.engine.checkin_prompts`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from bot.engine.answers import RANGES, AnswerKind, is_skip, parse_answer
from bot.engine.checkin_prompts import (
    CLOSING,
    MAX_PAYLOAD_BYTES,
    PAYLOAD_PREFIX,
    TextSource,
    _closing_prompt,
    _current_prompt,
    _item_prompt,
    _outro,
    _Say,
    _split_payload,
)
from bot.engine.checkin_state import (
    STATE_FORMAT,
    CheckinError,
    CheckinResult,
    Prompt,
    Status,
    Step,
    _result,
    _Slot,
    _State,
    _utc,
)
from prompts.instruments import LANGUAGES, REFERENCE_LANGUAGE, Instrument

__all__ = [
    "CLOSING",
    "MAX_PAYLOAD_BYTES",
    "MAX_REASKS",
    "PAYLOAD_PREFIX",
    "STATE_FORMAT",
    "TEN_POINT",
    "CheckinError",
    "CheckinResult",
    "Prompt",
    "Status",
    "Step",
    "TextSource",
    "abandon",
    "answer",
    "expire",
    "falls",
    "rating_result",
    "start",
]

MAX_REASKS = 2
TEN_POINT = ("scale_0_10", "scale_1_10")
_OPEN = (Status.ASKING, Status.CLOSING_QUESTION)
_NO_TIME = dt.datetime.min.replace(tzinfo=dt.UTC)


def start(
    instrument: Instrument,
    *,
    texts: TextSource,
    language: str,
    age_band: str,
    now: dt.datetime,
    goals: Sequence[str] = (),
    expires_after: dt.timedelta = dt.timedelta(hours=24),
    buttons: bool,
) -> Step:
    """Begin a check-in: the intro and the first item.

    Args:
        goals: the child's own goals, for instruments with per-goal items (ignored otherwise).
        buttons: whether the channel shows buttons; without, the text says how to answer.

    Raises:
        CheckinError: the age band is not one the instrument is for, or goals are missing.
    """
    now = _utc(now)
    language = language if language in LANGUAGES else REFERENCE_LANGUAGE
    if age_band not in instrument.age_bands:
        raise CheckinError(f"{instrument.id} is not for age band {age_band!r}")
    if expires_after <= dt.timedelta(0):
        raise CheckinError("expires_after must be positive")
    state = _State(
        instrument=instrument.id,
        version=instrument.version,
        language=language,
        age_band=age_band,
        scoring=instrument.scoring.method,
        slots=_slots(instrument, age_band, goals),
        started_at=now,
        expires_at=now + expires_after,
    )
    intro = Prompt(instrument.intro.get(language, age_band))
    first = _item_prompt(instrument, state, texts, buttons=buttons, prefix=None, hints=True)
    return Step(state.to_json(), (intro, first))


def answer(
    instrument: Instrument,
    state: Mapping[str, Any],
    *,
    texts: TextSource,
    text: str,
    button_payload: str | None = None,
    now: dt.datetime,
    buttons: bool,
) -> Step:
    """Take the child's message as the answer to the open item (or the closing question).

    Raises:
        CheckinError: the state is malformed, belongs to another instrument or version, or
            the check-in is already over.
    """
    s = _State.from_json(state)
    if (s.instrument, s.version) != (instrument.id, instrument.version):
        raise CheckinError(f"state is for {s.instrument} v{s.version}, not v{instrument.version}")
    if s.status not in _OPEN:
        raise CheckinError(f"the check-in is {s.status}")
    now = _utc(now)
    say = _Say(texts, s.language)
    if now >= s.expires_at:
        done = replace(s, status=Status.EXPIRED, ended_at=now)
        return Step(done.to_json(), (Prompt(say("expired")),), _result(done), consumed=False)
    target, value = _split_payload(button_payload)
    current = CLOSING if s.status is Status.CLOSING_QUESTION else s.slots[s.index].id
    if target is not None and target != current:
        # A button from an earlier question: show where we are instead of guessing.
        again = _current_prompt(instrument, s, texts, buttons=buttons, prefix=say("stale_button"))
        return Step(s.to_json(), (again,))
    if s.status is Status.CLOSING_QUESTION:
        words = None if target is not None or is_skip(text) else text.strip()
        done = replace(s, closing_text=words, status=Status.COMPLETED, ended_at=now)
        return Step(done.to_json(), (_outro(instrument, s),), _result(done))
    slot = s.slots[s.index]
    parsed = parse_answer(text, response=slot.response, language=s.language, button_payload=value)
    if parsed.kind is AnswerKind.INVALID and s.reasks < MAX_REASKS:
        s = replace(s, reasks=s.reasks + 1)
        prefix = say(f"reask_{s.reasks}")
        return Step(
            s.to_json(), (_item_prompt(instrument, s, texts, buttons, prefix=prefix, hints=True),)
        )
    prefix = say(
        {AnswerKind.VALUE: "thanks", AnswerKind.SKIP: "skipped"}.get(parsed.kind, "moving_on")
    )
    s = replace(s, answers={**s.answers, slot.id: parsed.value}, index=s.index + 1, reasks=0)
    if s.index < len(s.slots):
        return Step(
            s.to_json(), (_item_prompt(instrument, s, texts, buttons, prefix=prefix, hints=False),)
        )
    if instrument.closing_question is not None:
        s = replace(s, status=Status.CLOSING_QUESTION)
        return Step(s.to_json(), (_closing_prompt(instrument, s, texts, buttons, prefix=prefix),))
    done = replace(s, status=Status.COMPLETED, ended_at=now)
    return Step(done.to_json(), (_outro(instrument, s),), _result(done))


def abandon(state: Mapping[str, Any], now: dt.datetime) -> CheckinResult:
    """End an open check-in early (a caseworker or the engine cancels it); answers are kept.

    Raises:
        CheckinError: the state is malformed or the check-in is already over.
    """
    s = _State.from_json(state)
    if s.status not in _OPEN:
        raise CheckinError(f"the check-in is {s.status}")
    return _result(replace(s, status=Status.ABANDONED, ended_at=_utc(now)))


def expire(state: Mapping[str, Any], now: dt.datetime) -> CheckinResult | None:
    """The expired result if an open check-in is past its time, else None. Silent on purpose:
    a scheduler should not wake a child at night to say the questions closed."""
    s = _State.from_json(state)
    now = _utc(now)
    if s.status not in _OPEN or now < s.expires_at:
        return None
    return _result(replace(s, status=Status.EXPIRED, ended_at=now))


def rating_result(
    instrument: Instrument,
    answers: Mapping[str, int | None],
    *,
    age_band: str | None = None,
    goals: Sequence[str] = (),
) -> CheckinResult:
    """A completed result from answers given all at once, e.g. the caseworker's parallel
    rating of the same items. ``age_band`` picks the scales (default: the oldest band).

    Raises:
        CheckinError: an unknown item id or a value outside the item's scale.
    """
    band = age_band or instrument.age_bands[-1]
    slots = _slots(instrument, band, goals)
    unknown = sorted(set(answers) - {slot.id for slot in slots})
    if unknown:
        raise CheckinError(f"{instrument.id} has no items {unknown}")
    for slot in slots:
        value = answers.get(slot.id)
        low, high = RANGES[slot.response]
        if value is not None and not low <= value <= high:
            raise CheckinError(f"{slot.id}: {value} is outside {low}–{high}")
    state = _State(
        instrument=instrument.id,
        version=instrument.version,
        language=REFERENCE_LANGUAGE,
        age_band=band,
        scoring=instrument.scoring.method,
        slots=slots,
        started_at=_NO_TIME,  # a rating has no run of its own; the caller stores its times
        expires_at=_NO_TIME,
        status=Status.COMPLETED,
        answers=dict(answers),
    )
    return replace(_result(state), started_at=None, ended_at=None)


def falls(previous: CheckinResult, current: CheckinResult, *, threshold: int) -> list[str]:
    """Item ids whose 10-point answer fell by ``threshold`` or more since ``previous``.

    Descriptive only: not a clinical cut-off. Items are compared only when both check-ins used
    the same instrument, the same scale and (for goals) the same goal text.
    """
    if previous.instrument_id != current.instrument_id:
        return []
    fallen = []
    for item, value in current.answers.items():
        before = previous.answers.get(item)
        kind = current.responses.get(item)
        if (
            kind in TEN_POINT
            and previous.responses.get(item) == kind
            and previous.goals.get(item) == current.goals.get(item)
            and before is not None
            and value is not None
            and before - value >= threshold
        ):
            fallen.append(item)
    return fallen


def _slots(instrument: Instrument, age_band: str, goals: Sequence[str]) -> tuple[_Slot, ...]:
    clean_goals = [goal.strip() for goal in goals]
    slots: list[_Slot] = []
    for item in instrument.items:
        response = item.response[age_band]
        if not item.per_goal:
            slots.append(_Slot(item.id, item.id, response))
            continue
        if not clean_goals or not all(clean_goals):
            raise CheckinError(f"{instrument.id} needs the child's goals, none of them empty")
        slots.extend(
            _Slot(f"{item.id}.{n}", item.id, response, goal)
            for n, goal in enumerate(clean_goals, 1)
        )
    return tuple(slots)
