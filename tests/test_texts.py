from __future__ import annotations

from pathlib import Path

import pytest

from prompts.texts import Texts, TextsError


def test_shipped_texts_load_in_both_languages() -> None:
    texts = Texts.load()
    for language in ("da", "en"):
        assert "116 111" in texts.get(language, "webchat.emergency")
        assert "112" in texts.get(language, "webchat.emergency")
    assert texts.get("da", "webchat.send") == "Send"
    assert texts.get("xx", "webchat.quick_exit") == "Hurtig exit"  # falls back to Danish


def test_a_missing_translation_names_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "da.yaml").write_text("webchat:\n  send: Send\n  title: Chat\n")
    (tmp_path / "en.yaml").write_text("webchat:\n  send: Send\n")
    with pytest.raises(TextsError, match=r"en\.yaml.*webchat\.title"):
        Texts.load(tmp_path)


def test_non_text_values_are_refused(tmp_path: Path) -> None:
    (tmp_path / "da.yaml").write_text("webchat:\n  send: [1, 2]\n")
    (tmp_path / "en.yaml").write_text("webchat:\n  send: Send\n")
    with pytest.raises(TextsError, match=r"da\.yaml.*webchat\.send"):
        Texts.load(tmp_path)
