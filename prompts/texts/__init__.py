"""Texts a child reads, per language, loaded from YAML and checked at start-up.

Every language must define exactly the same keys as Danish (the reference); a missing or extra
key is an error that names the file and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LANGUAGES = ("da", "en")
REFERENCE = "da"
DIRECTORY = Path(__file__).parent


class TextsError(Exception):
    """A texts file is missing, malformed or out of step with the Danish reference."""


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        elif isinstance(value, str):
            flat[name] = value
        else:
            raise TextsError(f"{name}: expected text, got {type(value).__name__}")
    return flat


def _read(path: Path) -> dict[str, str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TextsError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, Mapping):
        raise TextsError(f"{path}: expected a mapping at the top")
    try:
        return _flatten(data)
    except TextsError as exc:
        raise TextsError(f"{path}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Texts:
    """``texts.get("da", "webchat.send")``; unknown languages fall back to Danish."""

    by_language: Mapping[str, Mapping[str, str]]

    def get(self, language: str, key: str, **values: object) -> str:
        table = self.by_language.get(language) or self.by_language[REFERENCE]
        text = table[key]
        return text.format(**values) if values else text

    def section(self, language: str, prefix: str) -> dict[str, str]:
        """All keys under ``prefix.`` (without the prefix), e.g. for a page's texts."""
        table = self.by_language.get(language) or self.by_language[REFERENCE]
        start = prefix + "."
        return {k[len(start) :]: v for k, v in table.items() if k.startswith(start)}

    @classmethod
    def load(cls, directory: Path = DIRECTORY) -> Texts:
        tables: dict[str, dict[str, str]] = {}
        for language in LANGUAGES:
            # ``da.yaml`` plus one file per area, e.g. ``consent.da.yaml``; keys must not clash.
            paths = [directory / f"{language}.yaml", *sorted(directory.glob(f"*.{language}.yaml"))]
            table: dict[str, str] = {}
            for path in paths:
                flat = _read(path)
                clash = sorted(set(flat) & set(table))
                if clash:
                    raise TextsError(f"{path}: keys already defined in another file: {clash}")
                table.update(flat)
            tables[language] = table
        reference = set(tables[REFERENCE])
        for language, table in tables.items():
            missing = sorted(reference - set(table))
            extra = sorted(set(table) - reference)
            if missing or extra:
                raise TextsError(
                    f"{directory}/*{language}.yaml: missing keys {missing}, unknown keys {extra}"
                )
        return cls(by_language=tables)
