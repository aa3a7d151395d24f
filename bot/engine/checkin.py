"""The check-in state machine: one item at a time, pure (no I/O, no clock, no database).

::

    start ─► asking ──(after the last item)──► closing_question ──► completed
               │ ▲                                    (or straight to completed without one)
               └─┘ an answer not understood is asked again, gently and differently,
                   at most twice; the third time the item is skipped
    asking / closing_question ──(a message after expires_at)──► expired
    asking / closing_question ──(abandon)─────────────────────► abandoned

The state is a plain JSON-serialisable dict that the caller keeps in the database between
messages, so a check-in survives restarts; partial answers are kept when it expires or is
abandoned. It holds the goal texts of a goals check-in, which are case data: store it like the
rest of the case (encrypted). Answers are only ever numbers, the closing text is the child's
own words.

Texts between the questions come from ``prompts/texts/checkin.*.yaml`` through a
:class:`TextSource` (``prompts.texts.Texts``); the questions come from the instrument.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from bot.engine.answers import (
    FACE_BUTTONS,
    LITTLE,
    NO,
    RANGES,
    SKIP_PAYLOAD,
    YES,
    AnswerKind,
    is_skip,
    parse_answer,
)
from prompts.instruments import LANGUAGES, REFERENCE_LANGUAGE, Instrument, Item

MAX_REASKS = 2
STATE_FORMAT = 1
CLOSING = "closing"  # the closing question's name in button payloads (no item may use it)
PAYLOAD_PREFIX = "ci"
MAX_PAYLOAD_BYTES = 64  # Telegram's limit for callback data, the tightest of the channels
TEN_POINT = ("scale_0_10", "scale_1_10")

T = TypeVar("T")


class TextSource(Protocol):
    def get(self, language: str, key: str, **values: object) -> str: ...


class CheckinError(ValueError):
    """The state does not fit the instrument, is malformed, or the check-in is over."""


class Status(enum.StrEnum):
    ASKING = "asking"
    CLOSING_QUESTION = "closing_question"
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    EXPIRED = "expired"


_OPEN = (Status.ASKING, Status.CLOSING_QUESTION)
_NO_TIME = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Prompt:
    """One message to the child; ``buttons`` are ``(title, payload)`` pairs."""

    text: str
    buttons: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CheckinResult:
    """A finished check-in. ``answers`` has every item (None: skipped or not reached)."""

    instrument_id: str
    instrument_version: int
    status: Status
    answers: Mapping[str, int | None]
    responses: Mapping[str, str]  # item id → response type, so trends compare like with like
    score: float | None
    closing_text: str | None = None
    goals: Mapping[str, str] = field(default_factory=dict)  # item id → goal text
    language: str = REFERENCE_LANGUAGE
    age_band: str = ""
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable, for storing; :meth:`from_dict` reads it back."""
        return {
            "instrument_id": self.instrument_id,
            "instrument_version": self.instrument_version,
            "status": str(self.status),
            "answers": dict(self.answers),
            "responses": dict(self.responses),
            "score": self.score,
            "closing_text": self.closing_text,
            "goals": dict(self.goals),
            "language": self.language,
            "age_band": self.age_band,
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckinResult:
        try:
            return cls(
                instrument_id=str(data["instrument_id"]),
                instrument_version=int(data["instrument_version"]),
                status=Status(data["status"]),
                answers={
                    str(k): None if v is None else int(v) for k, v in data["answers"].items()
                },
                responses={str(k): str(v) for k, v in data["responses"].items()},
                score=None if data["score"] is None else float(data["score"]),
                closing_text=data.get("closing_text"),
                goals={str(k): str(v) for k, v in (data.get("goals") or {}).items()},
                language=str(data.get("language", REFERENCE_LANGUAGE)),
                age_band=str(data.get("age_band", "")),
                started_at=_parse_time(data.get("started_at")),
                ended_at=_parse_time(data.get("ended_at")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckinError(f"not a check-in result: {exc}") from None


@dataclass(frozen=True, slots=True)
class Step:
    """What one call produced: the state to keep, the replies to send, and the result once
    finished. ``consumed`` is False when the message was not taken as an answer (it arrived
    after the check-in expired), so the caller treats it as a message for the caseworker."""

    state: dict[str, Any]
    replies: tuple[Prompt, ...]
    finished: CheckinResult | None = None
    consumed: bool = True


@dataclass(frozen=True, slots=True)
class _Slot:
    """One question as asked: an instrument item, or a per-goal item for one goal."""

    id: str
    item: str
    response: str
    goal: str | None = None


@dataclass(frozen=True, slots=True)
class _State:
    instrument: str
    version: int
    language: str
    age_band: str
    scoring: str
    slots: tuple[_Slot, ...]
    started_at: dt.datetime
    expires_at: dt.datetime
    status: Status = Status.ASKING
    index: int = 0
    reasks: int = 0
    answers: Mapping[str, int | None] = field(default_factory=dict)
    closing_text: str | None = None
    ended_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "instrument": self.instrument,
            "version": self.version,
            "language": self.language,
            "age_band": self.age_band,
            "scoring": self.scoring,
            "items": [
                {"id": s.id, "item": s.item, "response": s.response, "goal": s.goal}
                for s in self.slots
            ],
            "status": str(self.status),
            "index": self.index,
            "reasks": self.reasks,
            "answers": dict(self.answers),
            "closing_text": self.closing_text,
            "started_at": _iso(self.started_at),
            "expires_at": _iso(self.expires_at),
            "ended_at": _iso(self.ended_at),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _State:
        if not isinstance(data, Mapping) or data.get("format") != STATE_FORMAT:
            raise CheckinError("not a check-in state (or an unknown format)")
        slots = []
        for raw in _get(data, "items", list):
            if not isinstance(raw, Mapping):
                raise CheckinError("state.items: expected objects")
            goal = _get(raw, "goal", str) if raw.get("goal") is not None else None
            ident, item = _get(raw, "id", str), _get(raw, "item", str)
            slots.append(_Slot(ident, item, _get(raw, "response", str), goal))
        answers = _get(data, "answers", dict)
        if not all(v is None or type(v) is int for v in answers.values()):
            raise CheckinError("state.answers: expected whole numbers or null")
        index = _get(data, "index", int)
        try:
            status = Status(_get(data, "status", str))
        except ValueError:
            raise CheckinError("state.status: unknown") from None
        last = len(slots) - 1 if status is Status.ASKING else len(slots)
        if not slots or not 0 <= index <= last:
            raise CheckinError("state.index: out of range")
        closing = data.get("closing_text")
        return cls(
            instrument=_get(data, "instrument", str),
            version=_get(data, "version", int),
            language=_get(data, "language", str),
            age_band=_get(data, "age_band", str),
            scoring=_get(data, "scoring", str),
            slots=tuple(slots),
            started_at=_required_time(data, "started_at"),
            expires_at=_required_time(data, "expires_at"),
            status=status,
            index=index,
            reasks=_get(data, "reasks", int),
            answers={str(k): v for k, v in answers.items()},
            closing_text=closing if isinstance(closing, str) else None,
            ended_at=_parse_time(data.get("ended_at")),
        )


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


class _Say:
    def __init__(self, texts: TextSource, language: str) -> None:
        self.texts, self.language = texts, language

    def __call__(self, key: str, **values: object) -> str:
        return self.texts.get(self.language, f"checkin.{key}", **values)


def _item(instrument: Instrument, slot: _Slot) -> Item:
    for item in instrument.items:
        if item.id == slot.item:
            return item
    raise CheckinError(f"{instrument.id} has no item {slot.item!r}")


def _item_prompt(
    instrument: Instrument,
    s: _State,
    texts: TextSource,
    buttons: bool,
    *,
    prefix: str | None,
    hints: bool,
) -> Prompt:
    say = _Say(texts, s.language)
    slot = s.slots[s.index]
    question = _item(instrument, slot).text.get(s.language, s.age_band)
    if slot.goal is not None:
        question = question.replace("{goal}", slot.goal)  # not str.format: goals are free text
    if len(s.slots) > 1:
        question = f"{say('progress', number=s.index + 1, total=len(s.slots))} {question}"
    lines = [prefix, question]
    if hints or not buttons:
        lines.append(say(f"hint.{slot.response}"))
    if hints and not buttons:
        lines.append(say("skip_hint"))
    text = "\n".join(line for line in lines if line)
    return Prompt(text, _scale_buttons(slot, say) if buttons else ())


def _closing_prompt(
    instrument: Instrument, s: _State, texts: TextSource, buttons: bool, *, prefix: str | None
) -> Prompt:
    say = _Say(texts, s.language)
    assert instrument.closing_question is not None
    lines = [prefix, instrument.closing_question.get(s.language, s.age_band)]
    if not buttons:
        lines.append(say("closing_hint"))
    skip = ((say("button.skip"), _payload(CLOSING, SKIP_PAYLOAD)),)
    return Prompt("\n".join(line for line in lines if line), skip if buttons else ())


def _current_prompt(
    instrument: Instrument, s: _State, texts: TextSource, *, buttons: bool, prefix: str
) -> Prompt:
    if s.status is Status.CLOSING_QUESTION:
        return _closing_prompt(instrument, s, texts, buttons, prefix=prefix)
    return _item_prompt(instrument, s, texts, buttons, prefix=prefix, hints=False)


def _outro(instrument: Instrument, s: _State) -> Prompt:
    return Prompt(instrument.outro.get(s.language, s.age_band))


def _scale_buttons(slot: _Slot, say: _Say) -> tuple[tuple[str, str], ...]:
    low, high = RANGES[slot.response]
    if slot.response in FACE_BUTTONS:
        choices = list(zip(FACE_BUTTONS[slot.response], range(low, high + 1), strict=True))
    elif slot.response == "yes_little_no":
        choices = [
            (say("button.yes"), YES),
            (say("button.little"), LITTLE),
            (say("button.no"), NO),
        ]
    else:
        choices = [(str(value), value) for value in range(low, high + 1)]
    found = [(title, _payload(slot.id, str(value))) for title, value in choices]
    return (*found, (say("button.skip"), _payload(slot.id, SKIP_PAYLOAD)))


def _payload(target: str, value: str) -> str:
    payload = f"{PAYLOAD_PREFIX}:{target}:{value}"
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:  # item ids are ≤ 32 characters, so never
        raise CheckinError(f"button payload longer than {MAX_PAYLOAD_BYTES} bytes")
    return payload


def _split_payload(payload: str | None) -> tuple[str | None, str | None]:
    """``ci:<item>:<value>`` → (item, value); other buttons are not check-in answers."""
    if payload is None:
        return None, None
    parts = payload.split(":")
    if len(parts) != 3 or parts[0] != PAYLOAD_PREFIX or not parts[1]:
        return None, None
    return parts[1], parts[2]


def _result(s: _State) -> CheckinResult:
    answers = {slot.id: s.answers.get(slot.id) for slot in s.slots}
    values = [value for value in answers.values() if value is not None]
    score: float | None = None
    if values:
        score = sum(values) if s.scoring == "sum" else round(sum(values) / len(values), 2)
    return CheckinResult(
        instrument_id=s.instrument,
        instrument_version=s.version,
        status=s.status,
        answers=answers,
        responses={slot.id: slot.response for slot in s.slots},
        score=score,
        closing_text=s.closing_text,
        goals={slot.id: slot.goal for slot in s.slots if slot.goal is not None},
        language=s.language,
        age_band=s.age_band,
        started_at=s.started_at,
        ended_at=s.ended_at,
    )


def _utc(now: dt.datetime) -> dt.datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(dt.UTC)


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _parse_time(value: object) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise CheckinError("expected an ISO time")
    try:
        return _utc(dt.datetime.fromisoformat(value))
    except ValueError as exc:
        raise CheckinError(f"bad time {value!r}") from exc


def _required_time(data: Mapping[str, Any], key: str) -> dt.datetime:
    moment = _parse_time(data.get(key))
    if moment is None:
        raise CheckinError(f"state.{key}: missing")
    return moment


def _get(data: Mapping[str, Any], key: str, kind: type[T]) -> T:
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CheckinError(f"state.{key}: expected {kind.__name__}")
    return value
