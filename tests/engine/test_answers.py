from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.engine.answers import FACE_BUTTONS, RANGES, Answer, AnswerKind, is_skip, parse_answer

V, S, X = AnswerKind.VALUE, AnswerKind.SKIP, AnswerKind.INVALID  # X: invalid

DA_WORDS = ["nul", "en", "to", "tre", "fire", "fem", "seks", "syv", "otte", "ni", "ti"]
EN_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]

TABLE: list[tuple[str, str, str, AnswerKind, int | None]] = [
    # digits, with the frames children use
    ("7", "scale_0_10", "da", V, 7),
    (" 0 ", "scale_0_10", "da", V, 0),
    ("10", "scale_0_10", "da", V, 10),
    ("7/10", "scale_0_10", "da", V, 7),
    ("10/10!!", "scale_0_10", "en", V, 10),
    ("7 af 10", "scale_0_10", "da", V, 7),
    ("7 ud af 10", "scale_0_10", "da", V, 7),
    ("8 out of 10", "scale_0_10", "en", V, 8),
    ("jeg vil sige 7", "scale_0_10", "da", V, 7),
    ("en 7'er", "scale_0_10", "da", V, 7),
    ("I'd say 6", "scale_0_10", "en", V, 6),
    ("syv (7)", "scale_0_10", "da", V, 7),
    ("７", "scale_0_10", "da", V, 7),  # full-width digit from some keyboards
    ("7️⃣", "scale_0_10", "da", V, 7),
    ("🔟", "scale_0_10", "da", V, 10),
    ("3 ud af 5", "faces_5", "da", V, 3),
    # several different numbers, decimals, out of range
    ("7 eller 8", "scale_0_10", "da", X, None),
    ("mellem 5 og 6", "scale_0_10", "da", X, None),
    ("5-6", "scale_0_10", "da", X, None),
    ("7,5", "scale_0_10", "da", X, None),
    ("7.5", "scale_0_10", "en", X, None),
    ("11", "scale_0_10", "da", X, None),
    ("100", "scale_0_10", "da", X, None),
    ("-3", "scale_0_10", "da", X, None),
    ("0", "scale_1_10", "da", X, None),
    ("6", "faces_5", "da", X, None),
    ("4", "faces_3", "da", X, None),
    ("3 ud af 5", "scale_0_10", "da", X, None),
    # number words and misspellings
    ("otte", "scale_0_10", "da", V, 8),
    ("Otte", "scale_0_10", "da", V, 8),
    ("OTTTE", "scale_0_10", "da", V, 8),
    ("ote", "scale_0_10", "da", V, 8),
    ("syw", "scale_0_10", "da", V, 7),
    ("en syver", "scale_0_10", "da", V, 7),
    ("seks", "scale_0_10", "da", V, 6),
    ("sejs", "scale_0_10", "da", V, 6),
    ("fiire", "scale_0_10", "da", V, 4),
    ("tii", "scale_0_10", "da", V, 10),
    ("én", "scale_0_10", "da", V, 1),
    ("jeg giver den én", "scale_0_10", "da", V, 1),
    ("et", "scale_0_10", "da", V, 1),
    ("syv ud af ti", "scale_0_10", "da", V, 7),
    ("eigth", "scale_0_10", "en", V, 8),
    ("sevn", "scale_0_10", "en", V, 7),
    ("Seven!", "scale_0_10", "en", V, 7),
    ("nine", "scale_0_10", "da", V, 9),  # English words are understood in Danish too
    ("seks", "scale_0_10", "en", V, 6),  # and Danish ones in English …
    ("fire", "scale_0_10", "en", X, None),  # … except those that are English words
    ("I want to talk", "scale_0_10", "en", X, None),
    ("to", "scale_1_10", "da", V, 2),
    ("tre", "faces_5", "da", V, 3),
    ("fem", "faces_5", "da", V, 5),
    ("et par stykker", "scale_0_10", "da", X, None),  # "et" in a sentence is not a number
    ("en smule", "scale_0_10", "da", X, None),
    # faces: on faces scales, and as a fallback on 0–10
    ("😀", "faces_5", "da", V, 5),
    ("🙂", "faces_5", "da", V, 4),
    ("😐", "faces_5", "da", V, 3),
    ("🙁", "faces_5", "da", V, 2),
    ("😢", "faces_5", "da", V, 1),
    ("😭😭😭", "faces_5", "da", V, 1),
    ("☹️", "faces_5", "da", V, 1),
    ("😊", "faces_3", "en", V, 3),
    ("😐", "faces_3", "en", V, 2),
    ("😞", "faces_3", "en", V, 1),
    (":)", "faces_5", "da", V, 4),
    (":-(", "faces_5", "da", V, 2),
    (":'(", "faces_5", "da", V, 1),
    (":D", "faces_5", "da", V, 5),
    ("😀", "scale_0_10", "da", V, 10),
    ("🙂", "scale_0_10", "da", V, 7),
    ("😐", "scale_0_10", "da", V, 5),
    ("🙁", "scale_0_10", "da", V, 3),
    ("😢", "scale_0_10", "da", V, 0),
    ("😢", "scale_1_10", "da", V, 1),
    ("7 😊", "scale_0_10", "da", V, 7),  # a number wins over a face
    ("🙂🙁", "faces_5", "da", X, None),
    ("👍🏽", "faces_5", "da", V, 4),  # skin tone ignored
    # yes / a little / no
    ("ja", "yes_little_no", "da", V, 2),
    ("JA!", "yes_little_no", "da", V, 2),
    ("jaaaa", "yes_little_no", "da", V, 2),
    ("jep", "yes_little_no", "da", V, 2),
    ("yes", "yes_little_no", "en", V, 2),
    ("yeah", "yes_little_no", "da", V, 2),
    ("lidt", "yes_little_no", "da", V, 1),
    ("ja, lidt", "yes_little_no", "da", V, 1),
    ("en smule", "yes_little_no", "da", V, 1),
    ("a bit", "yes_little_no", "en", V, 1),
    ("a little", "yes_little_no", "en", V, 1),
    ("kinda", "yes_little_no", "en", V, 1),
    ("nej", "yes_little_no", "da", V, 0),
    ("Nej.", "yes_little_no", "da", V, 0),
    ("no", "yes_little_no", "en", V, 0),
    ("nope", "yes_little_no", "en", V, 0),
    ("ikke rigtig", "yes_little_no", "da", V, 0),
    ("not really", "yes_little_no", "en", V, 0),
    ("👍", "yes_little_no", "da", V, 2),
    ("👎", "yes_little_no", "da", V, 0),
    ("ja og nej", "yes_little_no", "da", X, None),
    ("2", "yes_little_no", "da", X, None),
    ("måske", "yes_little_no", "da", X, None),
    # skip
    ("spring over", "scale_0_10", "da", S, None),
    ("Spring Over", "faces_5", "da", S, None),
    ("skip", "scale_0_10", "en", S, None),
    ("ved ikke", "scale_0_10", "da", S, None),
    ("det ved jeg ikke", "yes_little_no", "da", S, None),
    ("pas", "scale_1_10", "da", S, None),
    ("pass", "scale_0_10", "en", S, None),
    ("næste", "scale_0_10", "da", S, None),
    ("NÆSTE", "scale_0_10", "da", S, None),
    ("naeste", "scale_0_10", "da", S, None),
    ("I don't know", "scale_0_10", "en", S, None),
    ("idk", "faces_3", "en", S, None),
    ("no idea", "yes_little_no", "en", S, None),
    ("🤷‍♀️", "scale_0_10", "da", S, None),
    ("I want to skip", "scale_0_10", "da", S, None),  # "to" next to a skip word is no number
    ("ved ikke, måske 6", "scale_0_10", "da", V, 6),  # a digit still counts
    # not understood
    ("", "scale_0_10", "da", X, None),
    ("   ", "faces_5", "da", X, None),
    ("hej", "scale_0_10", "da", X, None),
    ("hvad mener du?", "scale_0_10", "da", X, None),
    ("ja", "scale_0_10", "da", X, None),
]


@pytest.mark.parametrize(("text", "response", "language", "kind", "value"), TABLE)
def test_answer_table(
    text: str, response: str, language: str, kind: AnswerKind, value: int | None
) -> None:
    answer = parse_answer(text, response=response, language=language)
    assert (answer.kind, answer.value) == (kind, value)


def test_invalid_answers_say_why() -> None:
    def reason(text: str) -> str | None:
        return parse_answer(text, response="scale_0_10", language="da").reason

    assert reason("11") == "out_of_range"
    assert reason("7 eller 8") == "ambiguous"
    assert reason("7,5") == "not_whole"
    assert reason("") == "empty"
    assert reason("hej") == "not_understood"


@pytest.mark.parametrize(
    ("payload", "response", "expected"),
    [
        ("ci:me:7", "scale_0_10", Answer(V, 7)),
        ("7", "scale_0_10", Answer(V, 7)),
        ("ci:me:skip", "faces_5", Answer(S)),
        ("ci:me:0", "scale_1_10", Answer(X, reason="bad_button")),
        ("ci:me:11", "scale_0_10", Answer(X, reason="bad_button")),
        ("ci:me:x", "scale_0_10", Answer(X, reason="bad_button")),
        ("ci:me:2", "yes_little_no", Answer(V, 2)),
    ],
)
def test_button_payload_wins_over_text(payload: str, response: str, expected: Answer) -> None:
    answer = parse_answer("spring over", response=response, language="da", button_payload=payload)
    assert answer == expected


def test_face_button_titles_parse_back_to_their_value() -> None:
    for response, titles in FACE_BUTTONS.items():
        low, high = RANGES[response]
        assert len(titles) == high - low + 1
        for value, title in enumerate(titles, start=low):
            assert parse_answer(title, response=response, language="da") == Answer(V, value)


def test_unknown_response_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="stars"):
        parse_answer("7", response="stars", language="da")


def test_is_skip_needs_the_whole_text() -> None:
    assert is_skip("spring over")
    assert is_skip("  Ved ikke ")
    assert is_skip("")
    assert is_skip("🤷")
    assert not is_skip("pas på dig selv, og spring over det svære")
    assert not is_skip("mere tid sammen")


@given(st.integers(min_value=0, max_value=10), st.sampled_from(["da", "en"]))
def test_any_digit_parses_to_itself(value: int, language: str) -> None:
    for text in (str(value), f" {value}! ", f"{value}/10"):
        answer = parse_answer(text, response="scale_0_10", language=language)
        assert answer == Answer(V, value)


@given(
    st.integers(min_value=0, max_value=10),
    st.sampled_from(["da", "en"]),
    st.sampled_from([str.lower, str.upper, str.capitalize]),
)
def test_any_number_word_parses_to_itself(value: int, language: str, case: object) -> None:
    word = (DA_WORDS if language == "da" else EN_WORDS)[value]
    assert callable(case)
    for text in (case(word), f"{case(word)}.", f" {case(word)} "):
        answer = parse_answer(text, response="scale_0_10", language=language)
        assert answer == Answer(V, value), text
    if value > 1:  # "en"/"one" alone only, as they are ordinary words too
        answer = parse_answer(f"jeg siger {word}", response="scale_0_10", language=language)
        assert answer == Answer(V, value)


@given(
    st.text(),
    st.sampled_from(sorted(RANGES)),
    st.sampled_from(["da", "en", "xx"]),
    st.one_of(st.none(), st.text()),
)
def test_arbitrary_text_never_raises(
    text: str, response: str, language: str, payload: str | None
) -> None:
    answer = parse_answer(text, response=response, language=language, button_payload=payload)
    low, high = RANGES[response]
    if answer.kind is AnswerKind.VALUE:
        assert answer.value is not None and low <= answer.value <= high
    else:
        assert answer.value is None
    assert isinstance(is_skip(text), bool)
