"""Lexicon phrases compiled to regular expressions, and indexed by anchor word.

This is step 2 of the safety check described in :mod:`bot.engine.safety`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from bot.engine.safety_text import normalise
from prompts.safety import (
    Choice,
    End,
    Exclusion,
    Gap,
    Item,
    LexiconError,
    Number,
    Phrase,
    Rule,
    Word,
)

# Phrases run on " " + the normalised text, and every word a phrase matches is *preceded* by
# one space. Patterns then start with a literal space, which the regex engine searches for
# quickly, and two phrases that merely touch do not overlap.
_GAP = r"(?: [^ .][^ ]*){0,3}"  # up to three words, but not the sentence end "."
_END = r"(?: [^\w ]+)*?(?: \.(?![^ ])|\Z)"  # then only emoji up to a sentence end or the end


def _padded(normal: str) -> str:
    return " " + normal


# Words too common to index a phrase by (normalised like messages).
_COMMON_WORDS = (
    "jeg mig min mit mine du dig han hun de den det er var at og i på til af med ikke vil har "
    "kan så en et for om skal som the a an im me my you he she it is was to and of in on not "
    "dont will want can have be"
)
_STOPWORDS = frozenset(normalise(word) for word in _COMMON_WORDS.split())

Anchor = tuple[str, bool]  # (word, is a prefix)


@dataclass(frozen=True, slots=True, eq=False)
class _Compiled:
    """A phrase or pattern of rule or exclusion number ``owner``, ready to run.

    ``anchors``: the words that index it (None: a raw pattern, run on every message).
    ``required``: every other word slot a match needs, as (words, prefixes) — a cheap set test
    that spares most regex runs.
    """

    owner: int
    regex: re.Pattern[str]
    anchors: frozenset[Anchor] | None
    required: tuple[tuple[frozenset[str], tuple[str, ...]], ...] = ()

    def possible(self, words: set[str]) -> bool:
        for exact, stems in self.required:
            if not words.isdisjoint(exact):
                continue
            if stems and any(word.startswith(stems) for word in words):
                continue
            return False
        return True


def _tokens(word: str, where: str) -> list[str]:
    tokens = _word_tokens(word)
    if not tokens:
        raise LexiconError(f"{where}: the word {word!r} is empty after normalisation")
    return list(tokens)


@functools.lru_cache(maxsize=4096)
def _word_tokens(word: str) -> tuple[str, ...]:
    return tuple(normalise(word).split())


def _regex(items: Sequence[Item], where: str, cache: dict[Choice, str]) -> str:
    parts: list[str] = []
    for item in items:
        if isinstance(item, Word):
            tokens = _tokens(item.text, where)
            words = [" " + re.escape(token) for token in tokens]
            if item.prefix:
                words[-1] += "[^ ]*"
            parts.append("".join(words))
        elif isinstance(item, Number):
            low = item.minimum
            number = rf"(?:[{low}-9]|[1-9]\d+)" if low else r"\d+"
            parts.append(" " + number)
        elif isinstance(item, Gap):
            parts.append(_GAP)
        elif isinstance(item, End):
            parts.append(_END)
        else:
            parts.append(_choice_regex(item, where, cache))
    return "".join(parts)


def _choice_regex(choice: Choice, where: str, cache: dict[Choice, str]) -> str:
    # Sets ({who}) are the same Choice in many phrases: build each once per checker.
    if choice not in cache:
        cache[choice] = _build_choice_regex(choice, where, cache)
    return cache[choice]


def _build_choice_regex(choice: Choice, where: str, cache: dict[Choice, str]) -> str:
    """Options that are only words (also via small nested choices) become one trie
    (" (?:f(?:ar|ater)|mor)"): the regex engine then rejects a word by its first letters
    instead of trying every option in turn."""
    literal: list[str] = []
    other: list[str] = []
    for option in choice.options:
        expanded = _expand(option, where)
        if expanded is None:
            other.append(_regex(option, where, cache))
        else:
            literal += expanded
    nonempty = sorted({word for word in literal if word})
    alternatives = [" " + _trie(nonempty)] if nonempty else []
    alternatives += other
    body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
    return f"(?:{body})?" if "" in literal else body


def _expand(items: Sequence[Item], where: str, limit: int = 512) -> list[str] | None:
    """Every text a sequence of words and choices can match, or None (gaps, numbers …)."""
    texts = [""]
    for item in items:
        if isinstance(item, Word) and not item.prefix:
            options = [" ".join(_tokens(item.text, where))]
        elif isinstance(item, Choice):
            options = []
            for option in item.options:
                inner = _expand(option, where, limit)
                if inner is None:
                    return None
                options += inner
        else:
            return None
        texts = [
            " ".join(part for part in (text, more) if part) for text in texts for more in options
        ]
        if len(texts) > limit:
            return None
    return texts


def _trie(words: Sequence[str]) -> str:
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}
    return _trie_node(root)


def _trie_node(node: dict[str, Any]) -> str:
    branches = [
        re.escape(char) + _trie_node(child) for char, child in sorted(node.items()) if char
    ]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if "" in node else body


def _slots(items: Sequence[Item], where: str) -> list[frozenset[Anchor]]:
    """Sets of words of which every match contains at least one, one set per required slot."""
    slots: list[frozenset[Anchor]] = []
    for item in items:
        if isinstance(item, Word):
            tokens = _tokens(item.text, where)
            slots += [frozenset({(t, False)}) for t in tokens[:-1]]
            slots.append(frozenset({(tokens[-1], item.prefix)}))
        elif isinstance(item, Choice):
            union: set[Anchor] = set()
            for option in item.options:
                inner = _slots(option, where)
                if not inner:
                    break  # an empty or word-less option: this slot may match without a word
                union |= max(inner, key=_anchor_score)
            else:
                slots.append(frozenset(union))
    return slots


def _anchor_score(anchors: AbstractSet[Anchor]) -> tuple[bool, int, int]:
    # Emoji are one character but rare in messages: as good as a longer word.
    return (
        not any(word in _STOPWORDS for word, _ in anchors),
        min(len(word) if word.isascii() else 4 for word, _ in anchors),
        -len(anchors),
    )


def _compile_phrase(owner: int, phrase: Phrase, where: str, cache: dict[Choice, str]) -> _Compiled:
    slots = _slots(phrase.items, where)
    if not slots:
        raise LexiconError(f"{where}: {phrase.text!r} has no word that every match must contain")
    # The index uses the rarest-looking slot; the others become the cheap "required" test.
    anchors = max(slots, key=_anchor_score)
    required = tuple(
        (
            frozenset(word for word, prefix in slot if not prefix),
            tuple(word for word, prefix in slot if prefix),
        )
        for slot in slots
        if slot is not anchors
    )
    regex = re.compile(_regex(phrase.items, where, cache) + "(?![^ ])")
    return _Compiled(owner, regex, anchors, required)


def _compile(
    owner: int, entry: Rule | Exclusion, cache: dict[Choice, str]
) -> tuple[_Compiled, ...]:
    phrases = (
        _compile_phrase(owner, phrase, f"{entry.where}.phrases[{i}]", cache)
        for i, phrase in enumerate(entry.phrases)
    )
    patterns = (_Compiled(owner, re.compile(pattern), None) for pattern in entry.patterns)
    return (*phrases, *patterns)


class _Index:
    """Finds the phrases whose anchor words a message contains."""

    def __init__(self, matchers: Sequence[_Compiled]) -> None:
        self.words: dict[str, list[_Compiled]] = {}
        self.always = [m for m in matchers if m.anchors is None]
        stems = [(w, m) for m in matchers for w, prefix in m.anchors or () if prefix]
        # Prefix anchors ("selvmor*") are bucketed by their first letters: one lookup a word.
        self.head = min((len(stem) for stem, _ in stems), default=1)
        self.heads: dict[str, list[tuple[str, _Compiled]]] = {}
        for stem, matcher in stems:
            self.heads.setdefault(stem[: self.head], []).append((stem, matcher))
        for matcher in matchers:
            for word, prefix in matcher.anchors or ():
                if not prefix:
                    self.words.setdefault(word, []).append(matcher)

    def candidates(self, words: set[str]) -> dict[int, list[_Compiled]]:
        """The phrases worth running, by owner (rule or exclusion number)."""
        hits: list[_Compiled] = list(self.always)
        exact, heads, head = self.words, self.heads, self.head
        for word in words:
            found = exact.get(word)
            if found:
                hits += found
            bucket = heads.get(word[:head])
            if bucket:
                hits += [matcher for stem, matcher in bucket if word.startswith(stem)]
        by_owner: dict[int, list[_Compiled]] = {}
        for matcher in hits:
            group = by_owner.setdefault(matcher.owner, [])
            if matcher not in group and matcher.possible(words):
                group.append(matcher)
        return {owner: group for owner, group in by_owner.items() if group}
