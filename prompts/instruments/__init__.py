"""Check-in instruments (short scales a child answers), loaded from YAML and checked at start-up.

One file per instrument, ``<id>.yaml``; the format is described field by field in ``README.md``
next to this module. Every problem is reported with the file and the field path, e.g.
``prompts/instruments/wellbeing.yaml: items[2].text.en.8_12: missing``, and all problems of a
run are reported together so a municipality fixes them in one go.

An instrument whose licence is ``restricted`` (for example a commercially licensed scale a
municipality has bought) loads only when the configuration names its licence holder; otherwise
it is skipped and the skip is logged and returned, never silently dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml

log = logging.getLogger(__name__)

DIRECTORY = Path(__file__).parent
LANGUAGES = ("da", "en")
REFERENCE_LANGUAGE = "da"
AGE_BANDS = ("4_7", "8_12", "13_17", "18_22")
RESPONSES = ("scale_0_10", "scale_1_10", "faces_3", "faces_5", "yes_little_no")
SCORING_METHODS = ("sum", "mean")
GOAL_PLACEHOLDER = "{goal}"
RESERVED_ITEM_IDS = frozenset({"closing"})  # used in button payloads for the closing question

_ID = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_TOP_FIELDS = frozenset(
    {"id", "version", "title", "licence", "age_bands", "intro", "outro", "items"}
    | {"closing_question", "scoring"}
)
_LICENCE_FIELDS = frozenset({"name", "holder", "url", "restricted", "note"})
_ITEM_FIELDS = frozenset({"id", "text", "response", "per_goal"})
_SCORING_FIELDS = frozenset({"method", "change_threshold"})
_ROOT = DIRECTORY.parent.parent
_INT = "tag:yaml.org,2002:int"


class _Loader(yaml.SafeLoader):
    """Safe YAML, except that ``4_7`` stays text: YAML 1.1 would read the band as 47."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _INT]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))


class InstrumentError(Exception):
    """One or more instrument files are malformed; ``errors`` holds one line per problem."""

    def __init__(self, errors: Collection[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = tuple(errors)


@dataclass(frozen=True, slots=True)
class BandedText:
    """A text per language and age band, with the ``default`` already filled in."""

    by_language: Mapping[str, Mapping[str, str]]

    def get(self, language: str, age_band: str) -> str:
        """The text for ``language`` (unknown languages fall back to Danish) and ``age_band``."""
        table = self.by_language.get(language) or self.by_language[REFERENCE_LANGUAGE]
        return table[age_band]


@dataclass(frozen=True, slots=True)
class Licence:
    """Who holds the rights to an instrument's wording and whether it may be used freely."""

    name: str
    holder: str
    restricted: bool
    url: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Item:
    """One question. ``per_goal`` items are asked once per goal, ``{goal}`` filled in."""

    id: str
    text: BandedText
    response: Mapping[str, str]  # age band → response type
    per_goal: bool = False


@dataclass(frozen=True, slots=True)
class Scoring:
    method: Literal["sum", "mean"]
    change_threshold: int = 2


@dataclass(frozen=True, slots=True)
class Instrument:
    """A validated instrument. ``path`` is the file it came from, for messages."""

    id: str
    version: int
    title: Mapping[str, str]
    licence: Licence
    age_bands: tuple[str, ...]
    intro: BandedText
    outro: BandedText
    items: tuple[Item, ...]
    scoring: Scoring
    closing_question: BandedText | None = None
    path: str = ""


@dataclass(frozen=True, slots=True)
class SkippedInstrument:
    """An instrument left out because its licence holder is not configured."""

    path: str
    id: str
    licence: str
    holder: str


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The result of reading a directory: usable instruments and the ones skipped."""

    instruments: Mapping[str, Instrument]
    skipped: tuple[SkippedInstrument, ...] = ()


def load_instruments(
    directory: Path = DIRECTORY, licence_holders: Collection[str] = ()
) -> dict[str, Instrument]:
    """Load and validate every ``*.yaml`` instrument in ``directory``; log the skipped ones.

    Args:
        directory: where the instrument files are.
        licence_holders: holders of restricted licences this municipality has a licence from.

    Raises:
        InstrumentError: naming each file and field that is wrong.
    """
    catalogue = read_instruments(directory, licence_holders=licence_holders)
    for skipped in catalogue.skipped:
        log.warning(
            "instrument %s skipped: its licence (%s) is held by %s, who is not configured",
            skipped.path,
            skipped.licence,
            skipped.holder,
        )
    return dict(catalogue.instruments)


def read_instruments(directory: Path, *, licence_holders: Collection[str] = ()) -> Catalogue:
    """Like :func:`load_instruments`, but returns the skipped instruments instead of logging."""
    allowed = {_casefold(holder) for holder in licence_holders}
    errors: list[str] = []
    instruments: dict[str, Instrument] = {}
    skipped: list[SkippedInstrument] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            instrument = read_instrument(path)
        except InstrumentError as exc:
            errors.extend(exc.errors)
            continue
        licence = instrument.licence
        if licence.restricted and _casefold(licence.holder) not in allowed:
            skipped.append(
                SkippedInstrument(instrument.path, instrument.id, licence.name, licence.holder)
            )
            continue
        instruments[instrument.id] = instrument
    if errors:
        raise InstrumentError(errors)
    return Catalogue(MappingProxyType(instruments), tuple(skipped))


def read_instrument(path: Path) -> Instrument:
    """Read and validate one instrument file."""
    name = _display(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    except (OSError, yaml.YAMLError) as exc:
        raise InstrumentError([f"{name}: cannot read: {exc}"]) from exc
    checker = _Checker(name)
    instrument = checker.instrument(data, stem=path.stem)
    if checker.errors or instrument is None:
        raise InstrumentError(checker.errors or [f"{name}: invalid"])
    return instrument


def _display(path: Path) -> str:
    # Relative to the project when possible: shorter, and the same on every machine.
    try:
        return str(path.resolve().relative_to(_ROOT))
    except ValueError:
        return str(path)


def _casefold(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass
class _Checker:
    """Collects every problem in one file; each check returns a usable value or ``None``."""

    name: str
    errors: list[str] = field(default_factory=list)

    def fail(self, where: str, problem: str) -> None:
        message = f"{self.name}: {where}: {problem}"
        if message not in self.errors:  # a bad default would otherwise be reported per band
            self.errors.append(message)

    def instrument(self, data: Any, *, stem: str) -> Instrument | None:
        if not isinstance(data, Mapping):
            self.errors.append(f"{self.name}: expected a mapping at the top")
            return None
        for key in sorted(set(data) - _TOP_FIELDS, key=str):
            self.fail(str(key), "unknown field")
        ident = self.identifier(data.get("id"), "id")
        if ident is not None and ident != stem:
            self.fail("id", f"must match the file name ({stem})")
        version = data.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            self.fail("version", "must be a whole number from 1")
        bands = self.age_bands(data.get("age_bands", list(AGE_BANDS)))
        title = self.per_language(data.get("title"), "title")
        licence = self.licence(data.get("licence"))
        intro = self.banded(data.get("intro"), "intro", bands)
        outro = self.banded(data.get("outro"), "outro", bands)
        closing = None
        if data.get("closing_question") is not None:
            closing = self.banded(data["closing_question"], "closing_question", bands)
        items = self.items(data.get("items"), bands)
        scoring = self.scoring(data.get("scoring"))
        if self.errors:
            return None
        assert ident and title and licence and intro and outro and items and scoring
        assert isinstance(version, int)
        return Instrument(
            id=ident,
            version=version,
            title=title,
            licence=licence,
            age_bands=bands,
            intro=intro,
            outro=outro,
            items=items,
            scoring=scoring,
            closing_question=closing,
            path=self.name,
        )

    def identifier(self, value: Any, where: str) -> str | None:
        if value is None:
            self.fail(where, "missing")
        elif not isinstance(value, str) or not _ID.match(value):
            self.fail(where, "must be lower-case letters, digits and _ (at most 32)")
        else:
            return value
        return None

    def text(self, value: Any, where: str) -> str | None:
        if value is None:
            self.fail(where, "missing")
        elif not isinstance(value, str) or not value.strip():
            self.fail(where, "must be a non-empty text")
        else:
            return value.strip()
        return None

    def mapping(self, value: Any, where: str) -> Mapping[Any, Any] | None:
        if value is None:
            self.fail(where, "missing")
        elif not isinstance(value, Mapping):
            self.fail(where, "must be a mapping")
        else:
            return value
        return None

    def languages(self, value: Mapping[Any, Any], where: str) -> None:
        for key in value:
            if key not in LANGUAGES:
                self.fail(f"{where}.{key}", f"unknown language (use {', '.join(LANGUAGES)})")

    def age_bands(self, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            self.fail("age_bands", f"must be a list of age bands ({', '.join(AGE_BANDS)})")
            return AGE_BANDS
        for index, band in enumerate(value):
            if band not in AGE_BANDS:
                self.fail(f"age_bands[{index}]", f"unknown age band (use {', '.join(AGE_BANDS)})")
        if len(set(map(str, value))) != len(value):
            self.fail("age_bands", "lists an age band twice")
        return tuple(band for band in AGE_BANDS if band in value)

    def per_language(self, value: Any, where: str) -> Mapping[str, str] | None:
        table = self.mapping(value, where)
        if table is None:
            return None
        self.languages(table, where)
        texts = {lang: self.text(table.get(lang), f"{where}.{lang}") for lang in LANGUAGES}
        return MappingProxyType({k: v for k, v in texts.items() if v is not None})

    def per_band(
        self, value: Any, where: str, bands: tuple[str, ...], *, choices: tuple[str, ...] = ()
    ) -> dict[str, str]:
        """A value for every band: a plain value, or ``default`` plus per-band overrides."""
        plain = not isinstance(value, Mapping)
        table = {"default": value} if plain else value
        for key in table:
            if key != "default" and key not in AGE_BANDS:
                self.fail(f"{where}.{key}", f"unknown age band (use default, {', '.join(bands)})")
        resolved: dict[str, str] = {}
        for band in bands:
            if band in table or "default" not in table:
                path = f"{where}.{band}"
            else:
                path = where if plain else f"{where}.default"
            raw = table.get(band, table.get("default"))
            if choices:
                if raw is None:
                    self.fail(path, "missing")
                elif raw not in choices:
                    self.fail(path, f"unknown response type {raw!r} (use {', '.join(choices)})")
                else:
                    resolved[band] = str(raw)
            elif (text := self.text(raw, path)) is not None:
                resolved[band] = text
        return resolved

    def banded(self, value: Any, where: str, bands: tuple[str, ...]) -> BandedText | None:
        table = self.mapping(value, where)
        if table is None:
            return None
        self.languages(table, where)
        by_language: dict[str, Mapping[str, str]] = {}
        for lang in LANGUAGES:
            if table.get(lang) is None:
                self.fail(f"{where}.{lang}", "missing")
                continue
            by_language[lang] = MappingProxyType(
                self.per_band(table[lang], f"{where}.{lang}", bands)
            )
        return BandedText(MappingProxyType(by_language))

    def licence(self, value: Any) -> Licence | None:
        table = self.mapping(value, "licence")
        if table is None:
            return None
        for key in sorted(set(table) - _LICENCE_FIELDS, key=str):
            self.fail(f"licence.{key}", "unknown field")
        name = self.text(table.get("name"), "licence.name")
        holder = self.text(table.get("holder"), "licence.holder")
        restricted = table.get("restricted")
        if not isinstance(restricted, bool):
            self.fail("licence.restricted", "must be true or false")
        optional = {}
        for key in ("url", "note"):
            if table.get(key) is not None:
                optional[key] = self.text(table[key], f"licence.{key}")
        if name is None or holder is None or not isinstance(restricted, bool):
            return None
        return Licence(name, holder, restricted, optional.get("url"), optional.get("note"))

    def items(self, value: Any, bands: tuple[str, ...]) -> tuple[Item, ...] | None:
        if not isinstance(value, list) or not value:
            self.fail("items", "must be a non-empty list")
            return None
        items: list[Item] = []
        seen: set[str] = set()
        for index, raw in enumerate(value):
            where = f"items[{index}]"
            if not isinstance(raw, Mapping):
                self.fail(where, "must be a mapping")
                continue
            for key in sorted(set(raw) - _ITEM_FIELDS, key=str):
                self.fail(f"{where}.{key}", "unknown field")
            ident = self.identifier(raw.get("id"), f"{where}.id")
            if ident in seen:
                self.fail(f"{where}.id", f"duplicate item id {ident!r}")
            elif ident in RESERVED_ITEM_IDS:
                self.fail(f"{where}.id", f"{ident!r} is reserved")
            per_goal = raw.get("per_goal", False)
            if not isinstance(per_goal, bool):
                self.fail(f"{where}.per_goal", "must be true or false")
            text = self.banded(raw.get("text"), f"{where}.text", bands)
            response = self.per_band(
                raw.get("response"), f"{where}.response", bands, choices=RESPONSES
            )
            if text is not None:
                self.goal_placeholders(text, f"{where}.text", per_goal=per_goal is True)
            if ident is not None and text is not None:
                seen.add(ident)
                items.append(Item(ident, text, MappingProxyType(response), per_goal is True))
        self.one_scale_per_band(items, bands)
        return tuple(items)

    def goal_placeholders(self, text: BandedText, where: str, *, per_goal: bool) -> None:
        for lang, table in text.by_language.items():
            for band, wording in table.items():
                if per_goal and GOAL_PLACEHOLDER not in wording:
                    self.fail(
                        f"{where}.{lang}.{band}", f"a per_goal item needs {GOAL_PLACEHOLDER}"
                    )
                elif not per_goal and GOAL_PLACEHOLDER in wording:
                    self.fail(f"{where}.{lang}.{band}", "only per_goal items may use {goal}")

    def one_scale_per_band(self, items: list[Item], bands: tuple[str, ...]) -> None:
        # A sum or mean over different scales means nothing, so one band uses one scale.
        for band in bands:
            kinds = {item.response[band] for item in items if band in item.response}
            if len(kinds) > 1:
                self.fail(f"items.response.{band}", f"mixes scales {sorted(kinds)}; use one")

    def scoring(self, value: Any) -> Scoring | None:
        table = self.mapping(value, "scoring")
        if table is None:
            return None
        for key in sorted(set(table) - _SCORING_FIELDS, key=str):
            self.fail(f"scoring.{key}", "unknown field")
        method = table.get("method")
        threshold = table.get("change_threshold", 2)
        if method not in SCORING_METHODS:
            self.fail("scoring.method", f"must be one of {', '.join(SCORING_METHODS)}")
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            self.fail("scoring.change_threshold", "must be a whole number from 1")
        if self.errors:
            return None
        return Scoring("sum" if method == "sum" else "mean", threshold)
