"""The safety check: the example corpus, normalisation, properties and ``check_lines``."""

from __future__ import annotations

import functools
import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.engine.safety import SafetyAssessment, SafetyChecker, check_lines, normalise
from prompts.safety import CATEGORIES, LEGAL_SIGNALS

CASES: dict[str, list[dict[str, Any]]] = yaml.safe_load(
    (Path(__file__).parent / "safety_cases.yaml").read_text(encoding="utf-8")
)
FLAGGED = CASES["flagged"]
CLEAR = CASES["clear"]
NEUTRAL = [
    "Vi havde matematik i dag.",
    "Jeg spiste pizza til aftensmad.",
    "Min kat hedder Mis.",
    "We had maths today.",
    "I had pizza for dinner.",
    "Hvornår ses vi næste gang?",
]


@functools.cache
def checker() -> SafetyChecker:
    """Built once for the module (Hypothesis runs many examples on it)."""
    return SafetyChecker.load()


def verdict(text: str) -> tuple[list[str], list[str]]:
    found = checker().check(text)
    return sorted(found.categories), sorted(found.legal_signals)


# -- the corpus --------------------------------------------------------------------------------


def test_the_corpus_is_large_and_covers_every_category_in_both_languages() -> None:
    assert len(FLAGGED) >= 150
    assert len(CLEAR) >= 150
    for language in ("da", "en"):
        cases = [case for case in FLAGGED if case["lang"] == language]
        found = {c for case in cases for c in case["categories"]}
        assert found == set(CATEGORIES), language
        assert {s for case in cases for s in case["legal"]} == set(LEGAL_SIGNALS), language
        assert [case for case in CLEAR if case["lang"] == language], language
    flagged_tags = {tag for case in FLAGGED for tag in case.get("tags", [])}
    clear_tags = {tag for case in CLEAR for tag in case.get("tags", [])}
    assert {"slang", "misspelling", "emoji", "medication", "negation"} <= flagged_tags
    assert {"idiom", "sports", "game", "school", "stop", "complaint"} <= clear_tags


def test_every_example_in_the_corpus() -> None:
    mismatches = []
    for case in FLAGGED:
        expected = (sorted(case["categories"]), sorted(case["legal"]))
        got = verdict(case["text"])
        if got != expected:
            mismatches.append(f"flagged {case['text']!r}: expected {expected}, got {got}")
    for case in CLEAR:
        got = verdict(case["text"])
        if got != ([], []):
            rules = checker().check(case["text"]).rules
            mismatches.append(f"clear {case['text']!r}: got {got} from {rules}")
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches)


@pytest.mark.parametrize(
    ("text", "categories", "legal"),
    [
        ("stop han slår mig", ["violence"], ["disclosure"]),
        ("jeg dør af grin", [], []),
        ("vi slog dem 3-1", [], []),
        ("kan jeg bo et andet sted", [], ["§48-request"]),
        ("jeg dør af grin, men min far slår mig", ["violence"], ["disclosure"]),
    ],
)
def test_the_cases_the_brief_names(text: str, categories: list[str], legal: list[str]) -> None:
    assert verdict(text) == (categories, legal)


def test_an_assessment_names_rules_and_never_the_text() -> None:
    found = checker().check("Min far slår mig og jeg vil ikke bo hjemme mere")
    assert found == SafetyAssessment(
        risk=True,
        categories=("violence",),
        legal_signals=("§48-request", "disclosure"),
        rules=("da.violence.hits_me", "da.s48.not_live_home"),
    )
    assert "far" not in repr(found)


def test_a_legal_signal_alone_is_not_a_risk() -> None:
    found = checker().check("jeg vil ikke bo hjemme mere")
    assert found.risk is False
    assert found.legal_signals == ("§48-request",)
    assert checker().check("hej med dig") == SafetyAssessment(False, (), (), ())


# -- normalisation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("Stop, han SLÅR mig!!!", "stop han slar mig . . ."),
        ("han slaar mig", "han slar mig"),
        ("JEG VIL DØØØØ", "jeg vil do"),
        ("jeg vil doe", "jeg vil do"),
        ("hjälp", "hjalp"),
        ("S3LVM0RD", "selvmord"),
        ("$elvmord", "selvmord"),
        ("s e l v m o r d", "selvmord"),
        ("𝐬𝐞𝐥𝐯𝐦𝐨𝐫𝐝", "selvmord"),
        ("jeg har taget 20stk panodil", "jeg har taget 20 stk panodil"),
        ("vi slog dem 3-1.", "vi slog dem 3 1 ."),
        ("I’m dying 😂😂", "im dying 😂 😂"),
        ("I´m fine", "im fine"),
        ("he'll kill me", "hel kil me"),
        ("jeg vil… dø", "jeg vil do"),
        ("min far\nslår mig", "min far slar mig"),
        ("👍🏽 🔪\ufe0f", "👍 🔪"),
        ("e\u0301 ﬁne", "e fine"),
        ("", ""),
    ],
)
def test_normalise(text: str, normal: str) -> None:
    assert normalise(text) == normal


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec=None, exclude_categories=[]), max_size=200))
def test_arbitrary_unicode_never_raises(text: str) -> None:
    found = checker().check(text)
    assert found.risk == bool(found.categories)
    assert set(found.categories) <= set(CATEGORIES)
    assert set(found.legal_signals) <= set(LEGAL_SIGNALS)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_normalising_twice_changes_nothing(text: str) -> None:
    once = normalise(text)
    assert normalise(once) == once
    assert "  " not in once
    assert once == once.strip()


# -- properties of positives -------------------------------------------------------------------

POSITIVES = [case["text"] for case in FLAGGED]
_ACCENTED = {"a": "áàâ", "e": "éèê", "i": "íìî", "o": "óòô", "u": "úùû"}
_DANISH = {"æ": ["ae", "Æ"], "ø": ["oe", "ö", "Ø"], "å": ["aa", "Å"]}


@st.composite
def case_and_accent_variant(draw: st.DrawFn) -> tuple[str, str]:
    text = draw(st.sampled_from(POSITIVES))
    out = []
    for char in text:
        options = [char, char.upper()]
        options += list(_ACCENTED.get(char, "")) + [char + "\u0301"] * (char in _ACCENTED)
        options += _DANISH.get(char, [])
        out.append(draw(st.sampled_from(options)))
    return text, unicodedata.normalize(draw(st.sampled_from(["NFC", "NFD"])), "".join(out))


@settings(max_examples=300, deadline=None)
@given(case_and_accent_variant())
def test_case_and_accent_variants_of_a_positive_stay_positive(pair: tuple[str, str]) -> None:
    original, variant = pair
    assert verdict(variant) == verdict(original)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(POSITIVES), st.sampled_from(NEUTRAL), st.booleans())
def test_an_unrelated_sentence_keeps_a_positive_positive(
    text: str, neutral: str, before: bool
) -> None:
    end = "" if text.endswith((".", "!", "?")) else "."
    combined = f"{neutral} {text}" if before else f"{text}{end} {neutral}"
    original, found = checker().check(text), checker().check(combined)
    assert found.risk == original.risk
    assert set(original.categories) <= set(found.categories)
    assert set(original.legal_signals) <= set(found.legal_signals)


def test_the_neutral_sentences_are_neutral() -> None:
    assert [verdict(neutral) for neutral in NEUTRAL] == [([], [])] * len(NEUTRAL)


# -- check_lines -------------------------------------------------------------------------------


def test_check_lines_gives_one_json_object_per_line_without_the_text() -> None:
    lines = ["stop han slår mig\n", "jeg dør af grin\n", "\n", "kan jeg bo et andet sted"]
    out = list(check_lines(lines, checker()))
    assert len(out) == 4
    objects = [json.loads(line) for line in out]
    assert objects[0] == {
        "line": 1,
        "risk": True,
        "categories": ["violence"],
        "legal_signals": ["disclosure"],
        "rules": ["da.violence.hits_me"],
    }
    assert objects[1] == {
        "line": 2,
        "risk": False,
        "categories": [],
        "legal_signals": [],
        "rules": [],
    }
    assert objects[2]["risk"] is False
    assert objects[3]["legal_signals"] == ["§48-request"]
    assert not any("slår" in line or "grin" in line for line in out)


# -- pathological input ---------------------------------------------------------------------
# Speed is measured in bench/safety.py (ratios, never timed assertions); here only that a long,
# repetitive message is answered at all, and correctly.


def test_a_long_repetitive_message_is_checked_correctly() -> None:
    adversarial = "min far min mor han hun de " * 300 + "slår slog slået " * 300
    found = checker().check(adversarial)
    assert isinstance(found.risk, bool)
    assert checker().check("min far " * 500 + "jeg dør af grin").risk is False
