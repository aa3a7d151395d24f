"""What a check-in produces, and the state it keeps between messages.

The state is a plain JSON-serialisable dict that the caller keeps in the database between
messages, so a check-in survives restarts; partial answers are kept when it expires or is
abandoned. It holds the goal texts of a goals check-in, which are case data: store it like the
rest of the case (encrypted). Answers are only ever numbers, the closing text is the child's
own words.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prompts.instruments import REFERENCE_LANGUAGE

STATE_FORMAT = 1

T = TypeVar("T")


class CheckinError(ValueError):
    """The state does not fit the instrument, is malformed, or the check-in is over."""


class Status(enum.StrEnum):
    ASKING = "asking"
    CLOSING_QUESTION = "closing_question"
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    EXPIRED = "expired"


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
