"""The safety check: the first thing every inbound message from a child goes through.

:class:`SafetyChecker` is built once from the lexicons in ``prompts/safety`` and runs *every*
language's rules on every message (children mix Danish and English). It answers with rule ids,
categories and legal signals, never with the text. Nothing here logs.

How a message is matched:

1. :func:`normalise` turns it into lower-case words separated by single spaces (see there).
2. Each phrase is compiled once to a regular expression over that form (word lists become
   tries), and indexed by one of its required words (its *anchor*). A message only runs the
   phrases whose anchor — and every other required word — it contains, so a typical message
   runs no regex at all and a check takes tens of microseconds.
3. A rule match that overlaps a match of an applicable exclusion ("dør af grin") is dropped;
   the rule still fires on another, non-overlapping match in the same message.

Building the checker also proves the lexicon: every example must fire its rule, and every
phrase and pattern must be matched by one of its rule's examples.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prompts.safety import (
    CATEGORIES,
    DIRECTORY,
    LEGAL_SIGNALS,
    Choice,
    End,
    Exclusion,
    Gap,
    Item,
    Lexicon,
    LexiconError,
    Number,
    Phrase,
    Rule,
    Word,
    load_lexicons,
)

# -- normalisation -----------------------------------------------------------------------------

_MARK = "\x1e"  # a sentence end while normalising; becomes the word "."
_APOSTROPHES = "'’‘ʼ´`"
_ELLIPSIS = re.compile(r"\.{2,}")
# Each starts with a character class, so the regex engine skips ahead quickly.
_LEET = re.compile(
    r"[013457@$€](?:(?<=[a-z][013457])(?![0-9])|(?<=[a-z][@$€])|(?<=[@$€])(?=[a-z]))"
)
_DIGIT_AFTER_LETTER = re.compile(r"[0-9](?<=[a-z].)")
_DIGIT_BEFORE_LETTER = re.compile(r"[0-9](?=[a-z])")
_LEET_LETTERS = dict(zip("013457@$€", "oieastase", strict=True))
_LEET_OR_DIGIT = "0123456789@$€"
_SYMBOL = re.compile(r"[^\w\s]")
_SPACED_LETTERS = re.compile(r"(?<![^ ])(?:[a-z] ){3,}[a-z](?![^ ])")
_SQUEEZE = re.compile(r"([a-z])(?=\1)")  # drop a letter the same letter follows
# Letters NFD does not take apart: Danish/Norwegian letters fold like accents (see normalise).
_FOLD = {"æ": "a", "ø": "o", "œ": "o", "ð": "d", "đ": "d", "ł": "l", "ı": "i", "þ": "th"}


def _ascii_char(char: str) -> str | None:
    """What an ASCII character becomes (after lower-casing)."""
    if char in _APOSTROPHES:
        return None
    if char in "!?":
        return _MARK
    if char.isalnum() or char in " @$" + _MARK:
        return char
    return " "


# Pure-ASCII messages (most of them) take a bytes.translate fast path.
_ASCII_BYTES = bytes(ord(_ascii_char(chr(c).lower()) or " ") for c in range(128)) + bytes(
    range(128, 256)
)
_ASCII_DELETE = b"'`"
# Common in Danish messages; replacing them keeps most non-ASCII messages on the fast path.
_COMMON_NON_ASCII = (("æ", "a"), ("ø", "o"), ("’", ""), ("‘", ""), ("–", " "), ("”", " "))
_NOT_PLAIN = re.compile(r"[^\x00-\x7f\u0300-\u036f]")


@functools.cache
def _char_table() -> dict[int, str | None]:
    """One ``str.translate`` table for the Basic Multilingual Plane (built once, ~50 ms)."""
    table: dict[int, str | None] = {}
    for code in range(0x80, 0x10000):
        char = chr(code)
        category = unicodedata.category(char)
        if category[0] == "M" or category == "Cf":
            table[code] = None  # combining accents, variation selectors, zero-width joiners
        elif category[0] in "PZ" or category in ("Cc", "Sm", "Sk"):
            table[code] = " "
        elif char in _FOLD:
            table[code] = _FOLD[char]
        elif category[0] == "L":
            base = unicodedata.normalize("NFD", char)[0]
            if base != char and base.isascii():
                table[code] = base
    for code in range(0x80):
        if (mapped := _ascii_char(chr(code))) != chr(code):
            table[code] = mapped
    for char in _APOSTROPHES:
        table[ord(char)] = None
    for code in range(0x1F3FB, 0x1F400):
        table[code] = None  # emoji skin tones
    return table


def normalise(text: str) -> str:
    """The form phrases are matched against: words separated by one space.

    Casefold and NFKD (``𝐬`` → ``s``, ``ﬁ`` → ``fi``); accents stripped (``é`` → ``e``). æ,
    ø and å are not lost but folded together with their spellings on keyboards without them:
    ``æ``/``ae``/``ä`` → ``a``, ``ø``/``oe``/``ö`` → ``o``, ``å``/``aa`` → ``a`` — so "slår",
    "slaar" and "slar" are one word. Latin letters repeated in a row count once ("døøøø" →
    "do", "kiiill" → "kil"). A digit or ``@$€`` after a letter is read as a letter
    ("s3lvm0rd"); other numbers stay numbers and stand apart ("20stk" → "20 stk", "3-1" →
    "3 1"). Apostrophes vanish ("don't" → "dont"), other punctuation is a space. A sentence
    end — "!", "?", or "." before a space or at the end, but not "..." and not a line break
    (children break one sentence over several lines) — becomes the word ``.``, so phrases
    never reach across sentences. Emoji stay, one word each. Spelled-out letters are joined
    ("s e l v m o r d").
    """
    text = " ".join(text.split())
    if ".." in text:
        text = _ELLIPSIS.sub(" ", text)
    text = text.replace(". ", _MARK + " ")
    if text.endswith("."):
        text = text[:-1] + _MARK
    if not text.isascii():
        if "´" in text:
            text = text.replace("´", "")  # NFKD would make it a space and an accent
        # NFKD splits "å" into "a" + ring and "𝐬" into "s"; then the accents can go.
        text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
        for old, new in _COMMON_NON_ASCII:
            if old in text:
                text = text.replace(old, new)
        if _NOT_PLAIN.search(text) is None:
            text = text.encode("ascii", "ignore").decode()  # only combining accents were left
        else:
            text = text.translate(_char_table())  # emoji, other scripts, rarer punctuation
    if text.isascii():
        text = text.encode().translate(_ASCII_BYTES, _ASCII_DELETE).decode()
    if any(char in text for char in _LEET_OR_DIGIT):
        text = _LEET.sub(_leet_letter, text)
        text = _DIGIT_AFTER_LETTER.sub(r" \g<0>", text)
        text = _DIGIT_BEFORE_LETTER.sub(r"\g<0> ", text)
    if not text.isascii() or "$" in text or "@" in text:
        text = _SYMBOL.sub(r" \g<0> ", text)
    text = _squeeze(" ".join(text.replace(_MARK, " . ").split()))
    if _has_spelled_word(text.split(" ")):
        text = _squeeze(_SPACED_LETTERS.sub(_join_letters, text))
    return text


def _squeeze(text: str) -> str:
    """Repeated letters once; then "ae"/"oe" as "a"/"o" (which may repeat a letter again)."""
    text = _SQUEEZE.sub("", text)
    if "ae" in text or "oe" in text:
        text = _SQUEEZE.sub("", text.replace("ae", "a").replace("oe", "o"))
    return text


def _has_spelled_word(words: Sequence[str]) -> bool:
    """Four or more single letters in a row ("s e l v m o r d")."""
    run = 0
    for word in words:
        run = run + 1 if len(word) == 1 and word.isalpha() else 0
        if run == 4:
            return True
    return False


def _leet_letter(match: re.Match[str]) -> str:
    return _LEET_LETTERS[match.group()]


def _join_letters(match: re.Match[str]) -> str:
    return match.group().replace(" ", "")


# -- compiling phrases -------------------------------------------------------------------------

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


# -- the checker -------------------------------------------------------------------------------


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
