"""Translation files agree with each other (the login throttle's tests: test_auth_throttle.py)."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import pytest

from bot.inbox.i18n import TRANSLATIONS, TranslationError, Translations, load_translations


def _table(language: str) -> dict[str, str]:
    data = json.loads((TRANSLATIONS / f"{language}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_danish_and_english_have_the_same_keys() -> None:
    assert set(_table("da")) == set(_table("en"))


def test_translations_use_the_same_placeholders() -> None:
    da, en = _table("da"), _table("en")
    for key in da:
        assert _placeholders(da[key]) == _placeholders(en[key]), key


def test_every_key_used_in_templates_and_code_exists() -> None:
    root = TRANSLATIONS.parent
    sources = [*root.glob("templates/*.html"), *root.glob("*.py")]
    used = set()
    for path in sources:
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_.]+)["']""", path.read_text("utf-8")))
    assert used, "found no t(...) calls"
    keys = set(_table("da"))
    # "error." ~ kind and the like are built at run time; their prefix must at least exist.
    prefixes = {key for key in used if key.endswith(".")}
    assert used - prefixes <= keys
    assert all(any(key.startswith(prefix) for key in keys) for prefix in prefixes)


def test_a_missing_key_is_a_start_up_error(tmp_path: Path) -> None:
    (tmp_path / "da.json").write_text('{"a": "A", "b": "B"}', encoding="utf-8")
    (tmp_path / "en.json").write_text('{"a": "A"}', encoding="utf-8")

    with pytest.raises(TranslationError, match="b"):
        load_translations(tmp_path)


def test_unknown_language_falls_back_to_the_default() -> None:
    translations = Translations.load(default="da")

    assert translations.for_language("fr").language == "da"
    assert translations.for_language("en").t("queue.title") == "My cases"
    assert [translations.for_language("da").unread(n) for n in (0, 1, 3)] == [
        "Ingen ulæste",
        "1 ulæst",
        "3 ulæste",
    ]
