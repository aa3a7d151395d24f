from __future__ import annotations

import unicodedata

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from consent.keywords import PHRASES, Keyword, classify, fold

# How the keywords are written in the texts and how children write them.
SPELLINGS = {
    "STOP": Keyword.STOP,
    "STOPP": Keyword.STOP,
    "START": Keyword.START,
    "HJÆLP": Keyword.HELP,
    "HJAELP": Keyword.HELP,
    "HJÄLP": Keyword.HELP,
    "HELP": Keyword.HELP,
    "MINE DATA": Keyword.MY_DATA,
    "MY DATA": Keyword.MY_DATA,
    "JA": Keyword.YES,
    "JEP": Keyword.YES,
    "YES": Keyword.YES,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Stop!", Keyword.STOP),
        (" stopp 🙏", Keyword.STOP),
        ("STOOOP", Keyword.STOP),
        ("/stop", Keyword.STOP),
        ("/help@stemme_bot", Keyword.HELP),
        ("hjælp?", Keyword.HELP),
        ("Hjälp!!", Keyword.HELP),
        ("mine\tdata", Keyword.MY_DATA),
        ("minedata", Keyword.MY_DATA),
        ("Ja 👍🏽", Keyword.YES),
        ("jaaaa", Keyword.YES),
        ("❤️ ja ❤️", Keyword.YES),
        ("Yes.", Keyword.YES),
        ("start", Keyword.START),
        ("stop han slår mig", None),
        ("ja tak", None),
        ("jeg vil have hjælp", None),
        ("mine", None),
        ("data", None),
        ("s top", None),
        ("stop 2", None),
        ("/start ABCD-EFGH", None),
        ("", None),
        ("🙏", None),
    ],
)
def test_examples(text: str, expected: Keyword | None) -> None:
    assert classify(text) == expected


def test_every_phrase_is_folded_and_belongs_to_one_keyword() -> None:
    seen: set[str] = set()
    for phrases in PHRASES.values():
        assert all(fold(p) == p for p in phrases)
        assert not phrases & seen
        seen |= phrases
    assert {classify(text) for text in SPELLINGS} == set(Keyword)


_MARKS = st.sampled_from(["\u0301", "\u0300", "\u0308", "\u0302", "\u030a", "\u0327"])
_SPACE = st.sampled_from([" ", "  ", "\t", "\n", "\u00a0", "\u3000"])
_EDGE = st.text(alphabet=" .,!?…:-)(\"'🙂👍🏽❤️🙏‍", max_size=4)


@st.composite
def variants(draw: st.DrawFn, text: str) -> str:
    """``text`` as a child might type it: any case, accents, spacing, punctuation or emoji."""
    out = []
    for char in text:
        if char == " ":
            out.append(draw(_SPACE))
            continue
        out.append(char.upper() if draw(st.booleans()) else char.lower())
        if draw(st.integers(0, 3)) == 0:
            out.append(draw(_MARKS))
    typed = "".join(out)
    if draw(st.booleans()):
        typed = unicodedata.normalize("NFC", typed)  # as a phone keyboard would send it
    return draw(_SPACE) * draw(st.integers(0, 1)) + typed + draw(_EDGE)


@given(data=st.data(), spelling=st.sampled_from(sorted(SPELLINGS)))
def test_case_accent_and_spacing_variants_classify_the_same(
    data: st.DataObject, spelling: str
) -> None:
    assert classify(data.draw(variants(spelling))) == SPELLINGS[spelling]


@given(
    spelling=st.sampled_from(sorted(SPELLINGS)),
    word=st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=8),
    before=st.booleans(),
)
def test_a_keyword_with_another_word_is_not_a_keyword(
    spelling: str, word: str, before: bool
) -> None:
    assume(fold(word))  # a word that folds to nothing is no word
    text = f"{word} {spelling}" if before else f"{spelling} {word}"
    assert classify(text) is None


@given(st.text())
def test_any_text_classifies_without_error_regardless_of_padding(text: str) -> None:
    result = classify(text)
    assert result is None or isinstance(result, Keyword)
    assert classify(f"  {text}\n") == result
