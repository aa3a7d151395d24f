"""The inbox's UI text in Danish and English, and the few formats that depend on language.

Texts live in ``translations/<lang>.json`` with identical keys; a missing key in one language is
a start-up error rather than a blank button in front of a caseworker.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from channels.base import DeliveryState

TRANSLATIONS = Path(__file__).parent / "translations"
LANGUAGES = ("da", "en")

try:
    # Caseworkers read times in Danish local time, whatever the server's clock zone is.
    LOCAL_ZONE: dt.tzinfo = ZoneInfo("Europe/Copenhagen")
except ZoneInfoNotFoundError:  # pragma: no cover - minimal containers without tzdata
    LOCAL_ZONE = dt.UTC


class TranslationError(Exception):
    """The translation files disagree (a key exists in one language only) or are malformed."""


def load_translations(directory: Path = TRANSLATIONS) -> dict[str, dict[str, str]]:
    """Every language's texts, checked for identical key sets."""
    tables: dict[str, dict[str, str]] = {}
    for language in LANGUAGES:
        data = json.loads((directory / f"{language}.json").read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise TranslationError(f"{language}.json must map text keys to strings")
        tables[language] = data
    reference = set(tables[LANGUAGES[0]])
    for language, table in tables.items():
        if set(table) != reference:
            missing = sorted(reference ^ set(table))
            raise TranslationError(f"{language}.json differs in keys: {', '.join(missing)}")
    return tables


@dataclass(frozen=True, slots=True)
class Translator:
    """The texts of one language; ``t`` is what templates call."""

    language: str
    table: Mapping[str, str]

    def t(self, key: str, **params: object) -> str:
        text = self.table[key]
        return text.format(**params) if params else text

    def time(self, moment: dt.datetime) -> str:
        """A short local date and time, e.g. ``03.02.2025 14:05``."""
        return moment.astimezone(LOCAL_ZONE).strftime("%d.%m.%Y %H:%M")

    def date(self, moment: dt.datetime) -> str:
        """A local date, e.g. ``03.02.2025``."""
        return moment.astimezone(LOCAL_ZONE).strftime("%d.%m.%Y")

    def known(self, key: str) -> bool:
        return key in self.table

    def channel(self, name: str) -> str:
        """A channel's name in plain words ("SMS", "Webchat"); unknown names as they are."""
        key = f"channel.{name}"
        return self.t(key) if key in self.table else name

    def reasons(self, names: str | None) -> list[str]:
        """Safety categories and legal signals ("self_harm,§48-request") in plain words.

        The names come from the safety lexicon, never from a child's message, so an unknown
        one is shown as it is rather than hidden.
        """
        labels = []
        for name in (names or "").split(","):
            name = name.strip()
            if name:
                key = f"reason.{name}"
                labels.append(self.t(key) if key in self.table else name)
        return labels

    def unread(self, count: int) -> str:
        """The unread badge: "Ingen ulæste", "1 ulæst", "3 ulæste"."""
        if count <= 0:
            return self.t("queue.none_unread")
        return self.t("queue.unread_one") if count == 1 else self.t("queue.unread_count", n=count)

    def delivery_state(self, state: str, reason: str | None) -> str:
        """The delivery state of an outbound message in words a caseworker uses."""
        known = DeliveryState(state)
        if known in (DeliveryState.FAILED, DeliveryState.UNDELIVERED):
            return (
                self.t("state.failed", reason=reason) if reason else self.t("state.failed_unknown")
            )
        return self.t(f"state.{known.value}")


class Translations:
    """All languages, loaded once at start-up."""

    def __init__(self, tables: Mapping[str, Mapping[str, str]], *, default: str) -> None:
        self._tables = tables
        self.default = default if default in tables else LANGUAGES[0]

    @classmethod
    def load(cls, *, default: str) -> Translations:
        return cls(load_translations(), default=default)

    def for_language(self, language: str | None) -> Translator:
        chosen = language if language in self._tables else self.default
        assert chosen is not None
        return Translator(chosen, self._tables[chosen])
