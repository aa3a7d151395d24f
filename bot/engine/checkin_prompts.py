"""What the child is shown in a check-in: each question with its hints and answer buttons.

Texts between the questions come from ``prompts/texts/checkin.*.yaml`` through a
:class:`TextSource` (``prompts.texts.Texts``); the questions come from the instrument.
"""

from __future__ import annotations

from typing import Protocol

from bot.engine.answers import FACE_BUTTONS, LITTLE, NO, RANGES, SKIP_PAYLOAD, YES
from bot.engine.checkin_state import CheckinError, Prompt, Status, _Slot, _State
from prompts.instruments import Instrument, Item

CLOSING = "closing"  # the closing question's name in button payloads (no item may use it)
PAYLOAD_PREFIX = "ci"
MAX_PAYLOAD_BYTES = 64  # Telegram's limit for callback data, the tightest of the channels


class TextSource(Protocol):
    def get(self, language: str, key: str, **values: object) -> str: ...


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
