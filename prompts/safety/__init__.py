"""The safety lexicon: risk phrases per language, read from YAML and checked at start-up.

Data, not code. Each ``<language>.yaml`` in this directory holds *rules* (phrases that signal a
risk category or a legal signal) and *exclusions* (harmless idioms such as "jeg dør af grin"
that silence a rule match they overlap). ``README.md`` describes the format and the phrase
syntax. This module reads and validates the files and parses phrases into small values;
:mod:`bot.engine.safety` normalises, compiles and matches them.

Every error names the file and the field, e.g.
``prompts/safety/da.yaml: rules[12].patterns[0]: invalid regular expression: …``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

DIRECTORY = Path(__file__).parent

CATEGORIES = (
    "self_harm",
    "suicide",
    "violence",
    "sexual_abuse",
    "neglect",
    "running_away",
    "grooming",
)
"""Risk categories, in the order results list them."""

LEGAL_SIGNALS = ("§48-request", "disclosure")
"""``§48-request``: the child asks to live away from home (Barnets lov § 48).
``disclosure``: the child tells about violence or sexual abuse against them."""

_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_PHRASE_TOKEN = re.compile(r"[()|]|[^\s()|]+")
_GAPS = ("...", "…")
_MIN_PREFIX = 3
_NUMBER = re.compile(r"#(?:([1-9])\+)?")
_SET_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_RULE_KEYS = frozenset({"id", "category", "legal", "phrases", "patterns", "examples", "note"})
_EXCLUSION_KEYS = frozenset({"id", "applies_to", "phrases", "patterns", "examples", "note"})
_TOP_KEYS = frozenset({"language", "version", "sets", "rules", "exclusions"})


class LexiconError(Exception):
    """A lexicon file is missing, malformed or contradicts itself; the message says where."""


# -- phrases -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Word:
    """A whole word (``prefix``: any word that begins with ``text``)."""

    text: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Number:
    """``#``: any number; ``#5+``: a number of at least 5 (the minimum is 1 to 9)."""

    minimum: int = 0


@dataclass(frozen=True, slots=True)
class Gap:
    """``...``: up to three words, never across the end of a sentence."""


@dataclass(frozen=True, slots=True)
class End:
    """``$``: the end of the message or of a sentence (only emoji may come between)."""


@dataclass(frozen=True, slots=True)
class Choice:
    """``(a|b c|)``: one of the options; an empty option makes the group optional."""

    options: tuple[tuple[Item, ...], ...]


Item = Word | Number | Gap | End | Choice


@dataclass(frozen=True, slots=True)
class Phrase:
    """A phrase as written in the file, and parsed."""

    text: str
    items: tuple[Item, ...]


def parse_phrase(text: str, sets: Mapping[str, Choice] | None = None) -> tuple[Item, ...]:
    """Parse the phrase syntax described in ``README.md``; ``{name}`` refers to ``sets``.

    Raises:
        ValueError: with a short description of what is wrong.
    """
    parser = _Parser(_PHRASE_TOKEN.findall(text), sets or {})
    items = parser.sequence()
    if parser.pos < len(parser.tokens):
        raise ValueError(f"unexpected {parser.tokens[parser.pos]!r} outside parentheses")
    if not items:
        raise ValueError("empty phrase")
    if isinstance(items[0], Gap) or isinstance(items[-1], Gap):
        raise ValueError("a phrase cannot begin or end with '...'")
    if any(_ends(item) for item in items[:-1]):
        raise ValueError("'$' can only be the last word")
    return items


def _ends(item: Item) -> bool:
    """Whether ``item`` is or may end with ``$``."""
    if isinstance(item, Choice):
        return any(option and _ends(option[-1]) for option in item.options)
    return isinstance(item, End)


class _Parser:
    def __init__(self, tokens: Sequence[str], sets: Mapping[str, Choice]) -> None:
        self.tokens = tokens
        self.sets = sets
        self.pos = 0

    def sequence(self) -> tuple[Item, ...]:
        items: list[Item] = []
        while self.pos < len(self.tokens) and self.tokens[self.pos] not in (")", "|"):
            part = self.tokens[self.pos]
            self.pos += 1
            items.append(self.choice() if part == "(" else self.word(part))
        return tuple(items)

    def choice(self) -> Choice:
        options: list[tuple[Item, ...]] = []
        while True:
            option = self.sequence()
            if any(_ends(item) for item in option[:-1]):
                raise ValueError("'$' can only be the last word")
            options.append(option)
            if self.pos >= len(self.tokens):
                raise ValueError("missing ')'")
            self.pos += 1
            if self.tokens[self.pos - 1] == ")":
                return Choice(tuple(options))

    def word(self, part: str) -> Item:
        if part in _GAPS:
            return Gap()
        if part == "$":
            return End()
        if number := _NUMBER.fullmatch(part):
            return Number(int(number.group(1) or 0))
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            if name not in self.sets:
                raise ValueError(f"unknown set {part!r}")
            return self.sets[name]
        if any(mark in part for mark in "{}#$"):
            raise ValueError(f"{part!r}: '{{', '}}', '#' and '$' are special")
        prefix = part.endswith("*")
        stem = part[:-1] if prefix else part
        if "*" in stem:
            raise ValueError(f"'*' can only end a word: {part!r}")
        if prefix and len(stem) < _MIN_PREFIX:
            raise ValueError(f"a word with '*' needs at least {_MIN_PREFIX} letters: {part!r}")
        return Word(stem, prefix)


# -- rules and files ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """Phrases and patterns that signal ``category`` (a risk) and/or ``legal`` signals.

    ``where`` names the file and field (``prompts/safety/da.yaml: rules[3]``) for errors.
    """

    id: str
    category: str | None
    legal: tuple[str, ...]
    phrases: tuple[Phrase, ...]
    patterns: tuple[str, ...]
    examples: tuple[str, ...]
    where: str


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A harmless idiom; a rule match overlapping it does not count.

    ``applies_to`` names categories and legal signals; empty means every rule.
    """

    id: str
    applies_to: frozenset[str]
    phrases: tuple[Phrase, ...]
    patterns: tuple[str, ...]
    examples: tuple[str, ...]
    where: str


@dataclass(frozen=True, slots=True)
class Lexicon:
    """One language's file: its rules and exclusions (sets are already expanded into them)."""

    language: str
    source: str
    rules: tuple[Rule, ...]
    exclusions: tuple[Exclusion, ...]


def load_lexicons(directory: Path = DIRECTORY) -> tuple[Lexicon, ...]:
    """Every ``*.yaml`` file in ``directory``, validated; ids are unique across all of them.

    Raises:
        LexiconError: naming the file and field of the first problem found.
    """
    paths = sorted(directory.glob("*.yaml"))
    if not paths:
        raise LexiconError(f"{_display(directory)}: no lexicon files (*.yaml)")
    lexicons = tuple(load_lexicon(path) for path in paths)
    seen: dict[str, str] = {}
    for lexicon in lexicons:
        entries: list[Rule | Exclusion] = [*lexicon.rules, *lexicon.exclusions]
        for entry in entries:
            if entry.id in seen:
                raise LexiconError(
                    f"{entry.where}.id: {entry.id!r} is also used in {seen[entry.id]}"
                )
            seen[entry.id] = entry.where
    return lexicons


def load_lexicon(path: Path) -> Lexicon:
    """One lexicon file, validated (see :func:`load_lexicons`)."""
    source = _display(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LexiconError(f"{source}: cannot read: {exc}") from None
    top = _mapping(data, source)
    _known_keys(top, _TOP_KEYS, source)
    language = _text(top, "language", source)
    if language != path.stem:
        _fail(
            _field(source, "language"), f"{language!r} does not match the file name {path.name!r}"
        )
    if "version" in top and not isinstance(top["version"], int):
        _fail(_field(source, "version"), "expected a whole number")
    sets = _sets(top.get("sets"), _field(source, "sets"))
    rules = _list(top, "rules", source, required=True)
    exclusions = _list(top, "exclusions", source, required=False)
    return Lexicon(
        language=language,
        source=source,
        rules=tuple(_rule(entry, f"{source}: rules[{i}]", sets) for i, entry in enumerate(rules)),
        exclusions=tuple(
            _exclusion(entry, f"{source}: exclusions[{i}]", sets)
            for i, entry in enumerate(exclusions)
        ),
    )


def _sets(value: object, where: str) -> dict[str, Choice]:
    """Named word lists (``{who}`` in a phrase); a set may use the sets above it."""
    if value is None:
        return {}
    sets: dict[str, Choice] = {}
    for name, texts in _mapping(value, where).items():
        field = f"{where}.{name}"
        if not isinstance(name, str) or not _SET_NAME.match(name):
            _fail(field, "a set name is lower-case letters, digits and '_'")
        if not isinstance(texts, list) or not texts:
            _fail(field, "expected a non-empty list of phrases")
        options: list[tuple[Item, ...]] = []
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                _fail(f"{field}[{i}]", "expected non-empty text")
            try:
                items = parse_phrase(text, sets)
            except ValueError as exc:
                _fail(f"{field}[{i}]", f"{exc} in {text!r}")
            if any(_ends(item) for item in items):
                _fail(f"{field}[{i}]", "'$' cannot stand in a set")
            options.append(items)
        sets[name] = Choice(tuple(options))
    return sets


def _rule(entry: object, where: str, sets: Mapping[str, Choice]) -> Rule:
    data = _mapping(entry, where)
    _known_keys(data, _RULE_KEYS, where)
    category = data.get("category")
    if category is not None and category not in CATEGORIES:
        _fail(f"{where}.category", f"unknown category {category!r}; use one of {CATEGORIES}")
    legal = tuple(_strings(data, "legal", where, required=False))
    for i, signal in enumerate(legal):
        if signal not in LEGAL_SIGNALS:
            _fail(f"{where}.legal[{i}]", f"unknown legal signal {signal!r}; use {LEGAL_SIGNALS}")
    if category is None and not legal:
        _fail(f"{where}.category", "missing (a rule needs a category, a legal signal or both)")
    phrases, patterns = _matchers(data, where, sets)
    return Rule(
        id=_id(data, where),
        category=category,
        legal=legal,
        phrases=phrases,
        patterns=patterns,
        examples=tuple(_strings(data, "examples", where, required=True)),
        where=where,
    )


def _exclusion(entry: object, where: str, sets: Mapping[str, Choice]) -> Exclusion:
    data = _mapping(entry, where)
    _known_keys(data, _EXCLUSION_KEYS, where)
    applies_to = _strings(data, "applies_to", where, required=False)
    for i, name in enumerate(applies_to):
        if name not in CATEGORIES and name not in LEGAL_SIGNALS:
            _fail(f"{where}.applies_to[{i}]", f"unknown category or legal signal {name!r}")
    phrases, patterns = _matchers(data, where, sets)
    return Exclusion(
        id=_id(data, where),
        applies_to=frozenset(applies_to),
        phrases=phrases,
        patterns=patterns,
        examples=tuple(_strings(data, "examples", where, required=True)),
        where=where,
    )


def _matchers(
    data: Mapping[str, Any], where: str, sets: Mapping[str, Choice]
) -> tuple[tuple[Phrase, ...], tuple[str, ...]]:
    phrases: list[Phrase] = []
    for i, text in enumerate(_strings(data, "phrases", where, required=False)):
        try:
            phrases.append(Phrase(text, parse_phrase(text, sets)))
        except ValueError as exc:
            _fail(f"{where}.phrases[{i}]", f"{exc} in {text!r}")
    patterns = _strings(data, "patterns", where, required=False)
    for i, pattern in enumerate(patterns):
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            _fail(f"{where}.patterns[{i}]", f"invalid regular expression: {exc}")
        if compiled.match("") is not None:
            _fail(f"{where}.patterns[{i}]", "matches the empty text, so it would match anything")
    if not phrases and not patterns:
        _fail(f"{where}.phrases", "missing (give at least one phrase or pattern)")
    return tuple(phrases), tuple(patterns)


# -- small readers -----------------------------------------------------------------------------


def _display(path: Path) -> str:
    """``prompts/safety/da.yaml`` when the file is under the working directory."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _field(where: str, key: str) -> str:
    """``da.yaml: rules[3]`` + ``id`` → ``da.yaml: rules[3].id``; ``da.yaml`` → ``da.yaml: id``."""
    return f"{where}.{key}" if where.endswith("]") else f"{where}: {key}"


def _fail(where: str, message: str) -> NoReturn:
    raise LexiconError(f"{where}: {message}")


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        _fail(where, f"expected a mapping, got {type(value).__name__}")
    return value


def _known_keys(data: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        _fail(_field(where, unknown[0]), f"unknown field; allowed: {sorted(allowed)}")


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if value is None:
        _fail(_field(where, key), "missing")
    if not isinstance(value, str) or not value.strip():
        _fail(_field(where, key), "expected non-empty text")
    return value


def _id(data: Mapping[str, Any], where: str) -> str:
    value = _text(data, "id", where)
    if not _ID.match(value):
        _fail(f"{where}.id", f"{value!r}: use lower-case letters, digits, '.', '_' and '-'")
    return value


def _list(data: Mapping[str, Any], key: str, where: str, *, required: bool) -> list[Any]:
    value = data.get(key)
    if value is None:
        if required:
            _fail(_field(where, key), "missing")
        return []
    if not isinstance(value, list) or (required and not value):
        _fail(_field(where, key), "expected a non-empty list")
    return value


def _strings(data: Mapping[str, Any], key: str, where: str, *, required: bool) -> list[str]:
    value = data.get(key)
    if value is None:
        if required:
            _fail(_field(where, key), "missing")
        return []
    if not isinstance(value, list) or (required and not value):
        _fail(_field(where, key), "expected a non-empty list of texts")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            _fail(f"{_field(where, key)}[{i}]", "expected non-empty text")
    return value
