"""The safety check: the first thing every inbound message from a child goes through.

:class:`SafetyChecker` is built once from the lexicons in ``prompts/safety`` and runs *every*
language's rules on every message (children mix Danish and English). It answers with rule ids,
categories and legal signals, never with the text. Nothing here logs.

How a message is matched:

1. :func:`normalise` (:mod:`bot.engine.safety_text`) turns it into lower-case words separated
   by single spaces (see there).
2. Each phrase is compiled once to a regular expression over that form (word lists become
   tries), and indexed by one of its required words (its *anchor*; see
   :mod:`bot.engine.safety_phrases`). A message only runs the phrases whose anchor — and every
   other required word — it contains, so a typical message runs no regex at all and a check
   takes tens of microseconds.
3. A rule match that overlaps a match of an applicable exclusion ("dør af grin") is dropped;
   the rule still fires on another, non-overlapping match in the same message.

Building the checker also proves the lexicon: every example must fire its rule, and every
phrase and pattern must be matched by one of its rule's examples.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.engine.safety_phrases import Anchor, _compile, _Compiled, _Index, _padded
from bot.engine.safety_text import normalise
from prompts.safety import (
    CATEGORIES,
    DIRECTORY,
    LEGAL_SIGNALS,
    Choice,
    Exclusion,
    Lexicon,
    LexiconError,
    Rule,
    load_lexicons,
)

__all__ = [
    "Anchor",
    "SafetyAssessment",
    "SafetyChecker",
    "Span",
    "check_lines",
    "normalise",
]


@dataclass(frozen=True, slots=True)
class SafetyAssessment:
    """What the check found: rule ids, categories and legal signals — never the text.

    ``risk`` is true when any risk category fired; a legal signal alone (a § 48 request) is
    not a risk but still needs the caseworker within 24 hours.
    """

    risk: bool
    categories: tuple[str, ...]
    legal_signals: tuple[str, ...]
    rules: tuple[str, ...]


_CLEAR = SafetyAssessment(risk=False, categories=(), legal_signals=(), rules=())

Span = tuple[int, int, frozenset[str]]


class SafetyChecker:
    """Runs every lexicon on a message. Build once (:meth:`load`); :meth:`check` is cheap.

    Raises:
        LexiconError: when a phrase cannot be compiled or the lexicon's own examples fail.
    """

    def __init__(self, lexicons: Sequence[Lexicon]) -> None:
        self._rules = [rule for lexicon in lexicons for rule in lexicon.rules]
        self._exclusions = [entry for lexicon in lexicons for entry in lexicon.exclusions]
        cache: dict[Choice, str] = {}
        rule_matchers = [_compile(i, rule, cache) for i, rule in enumerate(self._rules)]
        exclusion_matchers = [_compile(i, e, cache) for i, e in enumerate(self._exclusions)]
        self._rule_index = _Index([m for group in rule_matchers for m in group])
        self._exclusion_index = _Index([m for group in exclusion_matchers for m in group])
        self._selftest(rule_matchers, exclusion_matchers)

    @classmethod
    def load(cls, directory: Path = DIRECTORY) -> SafetyChecker:
        """The checker for every lexicon file in ``directory`` (``prompts/safety`` by default)."""
        return cls(load_lexicons(directory))

    def check(self, text: str) -> SafetyAssessment:
        """Assess one message. Never raises on any text."""
        normal = normalise(text)
        words = set(normal.split(" "))
        found = self._rule_index.candidates(words)
        if not found:
            return _CLEAR
        padded = _padded(normal)
        spans: list[Span] | None = None  # exclusions are only looked for once a rule matches
        fired: list[Rule] = []
        for owner in sorted(found):
            matchers = found[owner]
            if not any(matcher.regex.search(padded) for matcher in matchers):
                continue
            if spans is None:
                spans = self._exclusion_spans(words, padded)
            rule = self._rules[owner]
            if not spans or _survives(rule, matchers, padded, spans):
                fired.append(rule)
        if not fired:
            return _CLEAR
        categories = {rule.category for rule in fired}
        legal = {signal for rule in fired for signal in rule.legal}
        return SafetyAssessment(
            risk=bool(categories - {None}),
            categories=tuple(c for c in CATEGORIES if c in categories),
            legal_signals=tuple(s for s in LEGAL_SIGNALS if s in legal),
            rules=tuple(rule.id for rule in fired),
        )

    def _exclusion_spans(self, words: set[str], padded: str) -> list[Span]:
        spans: list[Span] = []
        for owner, matchers in self._exclusion_index.candidates(words).items():
            applies_to = self._exclusions[owner].applies_to
            for matcher in matchers:
                spans.extend((*m.span(), applies_to) for m in matcher.regex.finditer(padded))
        return spans

    def _selftest(
        self,
        rule_matchers: Sequence[tuple[_Compiled, ...]],
        exclusion_matchers: Sequence[tuple[_Compiled, ...]],
    ) -> None:
        for rule, matchers in zip(self._rules, rule_matchers, strict=True):
            for i, example in enumerate(rule.examples):
                if rule.id not in self.check(example).rules:
                    raise LexiconError(
                        f"{rule.where}.examples[{i}]: {example!r} does not fire rule {rule.id!r}"
                        f" (it reads as {normalise(example)!r})"
                    )
            _every_matcher_used(rule, matchers)
        for entry, matchers in zip(self._exclusions, exclusion_matchers, strict=True):
            for i, example in enumerate(entry.examples):
                padded = _padded(normalise(example))
                if not any(m.regex.search(padded) for m in matchers):
                    raise LexiconError(
                        f"{entry.where}.examples[{i}]: {example!r} does not match the exclusion"
                    )
            _every_matcher_used(entry, matchers)


def _survives(
    rule: Rule, matchers: Sequence[_Compiled], padded: str, spans: Sequence[Span]
) -> bool:
    """Whether some match of ``matchers`` overlaps no exclusion that applies to ``rule``."""
    blocking = [
        (start, end)
        for start, end, applies_to in spans
        if not applies_to
        or rule.category in applies_to
        or any(signal in applies_to for signal in rule.legal)
    ]
    for matcher in matchers:
        pos = 0
        while (match := matcher.regex.search(padded, pos)) is not None:
            start, end = match.span()
            if not any(start < b_end and b_start < end for b_start, b_end in blocking):
                return True
            pos = start + 1
    return False


def _every_matcher_used(entry: Rule | Exclusion, matchers: Sequence[_Compiled]) -> None:
    examples = [_padded(normalise(example)) for example in entry.examples]
    fields = [f"phrases[{i}]" for i in range(len(entry.phrases))]
    fields += [f"patterns[{i}]" for i in range(len(entry.patterns))]
    for field, matcher in zip(fields, matchers, strict=True):
        if not any(matcher.regex.search(example) for example in examples):
            raise LexiconError(
                f"{entry.where}.{field}: no example matches it (add one to examples; patterns "
                "see normalised text: lower case, æ/ø/å as a/o/a, doubled letters single)"
            )


def check_lines(lines: Iterable[str], checker: SafetyChecker) -> Iterator[str]:
    """One JSON object per input line — the engine of ``stemme safety check``.

    Each object has ``line`` (1-based), ``risk``, ``categories``, ``legal_signals`` and
    ``rules``; never the text itself.
    """
    for number, line in enumerate(lines, start=1):
        found = checker.check(line.rstrip("\r\n"))
        yield json.dumps(
            {
                "line": number,
                "risk": found.risk,
                "categories": list(found.categories),
                "legal_signals": list(found.legal_signals),
                "rules": list(found.rules),
            },
            ensure_ascii=False,
        )
