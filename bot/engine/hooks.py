"""The conversation engine's hooks on the inbound path.

The safety check runs on every inbound message before anything else; the engine then decides
whether the message answers an open check-in or is for the caseworker. This foundation ships the
hooks with their contracts; the lexicon-driven safety check and the check-in engine fill them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SafetyResult:
    """``urgent`` flags the conversation; ``reasons`` name lexicon categories, never the text."""

    urgent: bool = False
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EngineResult:
    """Bot replies to send (already in the child's language) and engine state to keep."""

    replies: tuple[str, ...] = ()
    state: dict[str, object] = field(default_factory=dict)


class SafetyCheck(Protocol):
    def __call__(self, text: str, *, language: str) -> SafetyResult: ...


class Engine(Protocol):
    def __call__(self, text: str, *, language: str, state: dict[str, object]) -> EngineResult: ...


def no_safety_flags(text: str, *, language: str) -> SafetyResult:
    """Placeholder safety check: flags nothing. Replaced by the lexicon check (issue 4)."""
    return SafetyResult()


def pass_to_caseworker(text: str, *, language: str, state: dict[str, object]) -> EngineResult:
    """Placeholder engine: every message is for the caseworker; the bot says nothing."""
    return EngineResult(state=state)
