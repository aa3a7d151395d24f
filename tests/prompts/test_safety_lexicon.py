"""The safety lexicon files: they load, and every broken variant names its file and field."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.engine.safety import SafetyChecker, normalise
from prompts.safety import (
    CATEGORIES,
    DIRECTORY,
    LEGAL_SIGNALS,
    Choice,
    End,
    Gap,
    LexiconError,
    Number,
    Word,
    load_lexicons,
    parse_phrase,
)
from prompts.texts import Texts

GOOD = """\
language: da
sets:
  who: ["(han|hun)"]
rules:
  - id: da.test.hits
    category: violence
    legal: [disclosure]
    phrases: ["{who} slår mig"]
    examples: ["han slår mig"]
exclusions:
  - id: da.test.games
    phrases: ["slår mig i skak"]
    examples: ["hun slår mig i skak"]
"""


def write(directory: Path, text: str, name: str = "da.yaml") -> Path:
    (directory / name).write_text(text, encoding="utf-8")
    return directory


def test_the_shipped_lexicons_load_and_cover_everything() -> None:
    lexicons = load_lexicons()
    assert [lexicon.language for lexicon in lexicons] == ["da", "en"]
    for lexicon in lexicons:
        rules = lexicon.rules
        assert {rule.category for rule in rules} - {None} == set(CATEGORIES), lexicon.language
        assert {s for rule in rules for s in rule.legal} == set(LEGAL_SIGNALS), lexicon.language
        assert all(rule.id.startswith(lexicon.language + ".") for rule in rules)
        assert lexicon.exclusions, lexicon.language
    assert SafetyChecker(lexicons).check("stop han slår mig").risk


def test_a_good_minimal_file_loads_and_its_exclusion_works(tmp_path: Path) -> None:
    checker = SafetyChecker.load(write(tmp_path, GOOD))
    assert checker.check("HAN SLÅR MIG").rules == ("da.test.hits",)
    assert checker.check("han slår mig i skak").rules == ()


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (
            'phrases: ["{who} slår mig"]',
            'phrases: ["{who} slår mig"]\n    patterns: ["(unclosed"]',
            r"rules\[0\]\.patterns\[0\]: invalid regular expression",
        ),
        (
            'phrases: ["{who} slår mig"]',
            'phrases: ["{who} slår mig"]\n    patterns: ["x*"]',
            r"rules\[0\]\.patterns\[0\]: matches the empty text",
        ),
        ("category: violence", "category: bullying", r"rules\[0\]\.category: unknown category"),
        ("legal: [disclosure]", "legal: [report]", r"rules\[0\]\.legal\[0\]: unknown legal"),
        ('    examples: ["han slår mig"]\n', "", r"rules\[0\]\.examples: missing"),
        ("  - id: da.test.hits\n", "  - \n", r"rules\[0\]\.id: missing"),
        ("id: da.test.hits", "id: Da Test", r"rules\[0\]\.id: 'Da Test'"),
        ("phrases:", "phrase:", r"rules\[0\]\.phrase: unknown field"),
        ('["{who} slår mig"]', '["({who} slår mig"]', r"rules\[0\]\.phrases\[0\]: missing '\)'"),
        ('["{who} slår mig"]', '["{whom} slår mig"]', r"rules\[0\]\.phrases\[0\]: unknown set"),
        ('["{who} slår mig"]', '["... slår mig"]', r"rules\[0\]\.phrases\[0\]: .*begin or end"),
        ('["{who} slår mig"]', '["mig $ nu"]', r"rules\[0\]\.phrases\[0\]: '\$' can only"),
        ('["{who} slår mig"]', '["sl*"]', r"rules\[0\]\.phrases\[0\]: .*at least 3"),
        (
            "  - id: da.test.games\n",
            "  - id: da.test.games\n    applies_to: [teasing]\n",
            r"exclusions\[0\]\.applies_to\[0\]: unknown category",
        ),
        ("language: da", "language: en", r"language: 'en' does not match"),
        ("who: [", "Who: [", r"sets\.Who: a set name"),
        ("rules:\n", "rulez:\n", r"rulez: unknown field"),
    ],
)
def test_a_broken_file_names_file_and_field(
    tmp_path: Path, old: str, new: str, field: str
) -> None:
    assert old in GOOD
    write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(LexiconError, match=r"da\.yaml: " + field):
        SafetyChecker.load(tmp_path)


def test_the_loaded_lexicon_must_prove_itself(tmp_path: Path) -> None:
    write(tmp_path, GOOD.replace('examples: ["han slår mig"]', 'examples: ["han sparker mig"]'))
    with pytest.raises(LexiconError, match=r"rules\[0\]\.examples\[0\]: .* does not fire"):
        SafetyChecker.load(tmp_path)
    write(
        tmp_path, GOOD.replace('phrases: ["{who} slår mig"]', 'phrases: ["{who} slår mig", "x y"]')
    )
    with pytest.raises(LexiconError, match=r"rules\[0\]\.phrases\[1\]: no example matches it"):
        SafetyChecker.load(tmp_path)
    write(tmp_path, GOOD.replace('examples: ["hun slår mig i skak"]', 'examples: ["skak"]'))
    with pytest.raises(LexiconError, match=r"exclusions\[0\]\.examples\[0\]: .* does not match"):
        SafetyChecker.load(tmp_path)


def test_ids_are_unique_across_files(tmp_path: Path) -> None:
    write(tmp_path, GOOD)
    write(tmp_path, GOOD.replace("language: da", "language: en"), name="en.yaml")
    with pytest.raises(LexiconError, match=r"en\.yaml: rules\[0\]\.id: 'da\.test\.hits' is also"):
        load_lexicons(tmp_path)


def test_an_empty_or_unreadable_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LexiconError, match="no lexicon files"):
        load_lexicons(tmp_path)
    write(tmp_path, "rules: [\n")
    with pytest.raises(LexiconError, match=r"da\.yaml: cannot read"):
        load_lexicons(tmp_path)


# -- the phrase syntax -------------------------------------------------------------------------


def test_parse_phrase() -> None:
    assert parse_phrase("selvmor*") == (Word("selvmor", prefix=True),)
    assert parse_phrase("tog #5+ ... piller $") == (
        Word("tog"),
        Number(5),
        Gap(),
        Word("piller"),
        End(),
    )
    assert parse_phrase("(min far|han|) slår") == (
        Choice(((Word("min"), Word("far")), (Word("han"),), ())),
        Word("slår"),
    )
    assert parse_phrase("mig (selv|$)")[-1] == Choice(((Word("selv"),), (End(),)))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab (|)*#$.…{}+5 ", max_size=30))
def test_parse_phrase_accepts_or_explains_anything(text: str) -> None:
    try:
        items = parse_phrase(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert items


# A word that stays a word: "aa" normalises to "a", and the normaliser joins runs of single
# letters ("a a a a" -> "a", so spelled-out words match), which a phrase of them cannot survive.
WORD = st.text(alphabet="abdeghijklmnorstuvyæøåé", min_size=2, max_size=8).filter(
    lambda word: len(normalise(word)) >= 2
)


@settings(max_examples=60, deadline=None)
@given(st.lists(WORD, min_size=1, max_size=4), st.sampled_from([str.upper, str.title, str]))
def test_a_phrase_matches_its_own_words_in_any_case(
    words: list[str], case: Callable[[str], str]
) -> None:
    """Phrases and messages go through the same normalisation, so they always agree."""
    phrase = " ".join(words)
    lexicon = GOOD.replace('["{who} slår mig"]', f'["{phrase}"]').replace(
        'examples: ["han slår mig"]', f'examples: ["{phrase}"]'
    )
    with tempfile.TemporaryDirectory() as tmp:
        checker = SafetyChecker.load(write(Path(tmp), lexicon))
    assert "da.test.hits" in checker.check(f"hej. {case(phrase)}!! 😀").rules


# -- the reply texts ---------------------------------------------------------------------------

GSM_03_38 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)
BANDS = ("4_7", "8_12", "13_17", "18_22")


def safety_texts(tmp_path: Path) -> Texts:
    """Only the base files and ours, so other areas' texts in progress do not matter here."""
    source = DIRECTORY.parent / "texts"
    for name in ("da.yaml", "en.yaml", "safety.da.yaml", "safety.en.yaml"):
        shutil.copy(source / name, tmp_path / name)
    return Texts.load(tmp_path)


def test_the_safety_replies_exist_per_band_and_carry_the_numbers(tmp_path: Path) -> None:
    texts = safety_texts(tmp_path)
    values = {"oncall": "70 12 34 56", "reply_hours": "08:00-15:00"}
    for language in ("da", "en"):
        keys = [
            f"safety.{kind}.{band}" for kind in ("reply", "reply_out_of_hours") for band in BANDS
        ]
        for key in [*keys, "safety.section48"]:
            text = texts.get(language, key, **values)
            assert "112" in text and "116 111" in text and "70 12 34 56" in text, (language, key)
            assert "{" not in text and set(text) <= GSM_03_38, (language, key)
            if "out_of_hours" in key:
                assert "08:00-15:00" in text, (language, key)
        assert "24" in texts.get(language, "safety.section48", **values)


def test_the_replies_never_claim_someone_is_reading_now(tmp_path: Path) -> None:
    texts = safety_texts(tmp_path)
    claims = re.compile(r"læser (det |med |)nu|is reading|reads (it |)now|er her nu", re.I)
    for language in ("da", "en"):
        for key, text in texts.section(language, "safety").items():
            assert not claims.search(text), (language, key)
