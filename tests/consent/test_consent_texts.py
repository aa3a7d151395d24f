"""The consent texts: they load, Danish and English match, and they say what they must."""

from __future__ import annotations

import re
import string

import pytest

from consent.ages import BANDS, age_band, milestones_at_enrolment
from consent.keywords import Keyword, classify
from prompts.texts import Texts

TEXTS = Texts.load()
LANGUAGES = ("da", "en")
# What the engine fills in (bot/engine/conversation.py, bot/engine/enrolment.py).
SAMPLE: dict[str, object] = {
    "caseworker": "Mette",
    "reply_hours": "08:00-15:00",
    "retention": 30,
    "municipality": "Eksempel Kommune",
    "oncall": "114",
    "time": "14:30",
    "summary": "Jeg har talt med din skole om det, du fortalte.",
}
# GSM 03.38 basic character set: an SMS in these characters fits 160 to a segment, not 70.
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


def consent_keys() -> list[str]:
    return sorted(TEXTS.section("da", "consent"))


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def text(language: str, key: str) -> str:
    return TEXTS.get(language, f"consent.{key}")


def test_both_languages_load_with_the_same_keys() -> None:
    keys = consent_keys()
    assert len(keys) >= 20
    assert sorted(TEXTS.section("en", "consent")) == keys


@pytest.mark.parametrize("key", consent_keys())
def test_danish_and_english_use_the_same_placeholders(key: str) -> None:
    assert placeholders(text("da", key)) == placeholders(text("en", key))
    assert placeholders(text("da", key)) <= set(SAMPLE)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("key", consent_keys())
def test_every_text_fills_in_and_fits_the_sms_alphabet(language: str, key: str) -> None:
    filled = TEXTS.get(language, f"consent.{key}", **SAMPLE)
    assert "{" not in filled and "}" not in filled
    assert set(filled) <= GSM7, sorted(set(filled) - GSM7)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("band", BANDS)
def test_notice_says_who_reads_journal_emergency_retention_and_asks_for_yes(
    language: str, band: str
) -> None:
    first = text(language, f"notice.{band}")
    assert {"caseworker", "reply_hours", "retention"} <= placeholders(first)
    assert "112" in first
    if band != "18_22":  # BørneTelefonen is for children and young people
        assert "116 111" in first
    assert re.search(r"sag|journal" if language == "da" else r"case", first)
    ending = "Svar JA for at starte." if language == "da" else "Reply YES to start."
    assert first.endswith(ending)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_word_in_capitals_is_a_keyword_the_bot_understands(language: str) -> None:
    found = set()
    for key in consent_keys():
        found |= set(re.findall(r"\b(?:MINE DATA|MY DATA|[A-ZÆØÅ]{2,})\b", text(language, key)))
    assert all(classify(word) is not None for word in found), found
    assert {classify(word) for word in found} == set(Keyword)


def test_the_unknown_sender_texts_reveal_no_case() -> None:
    assert text("da", "unknown_sender") == (
        "Hej! Har du fået en kode af din rådgiver? Skriv koden her."
    )
    for language in LANGUAGES:
        for key in ("unknown_sender", "wrong_code"):
            assert placeholders(text(language, key)) == set()
        assert placeholders(text(language, "too_many_tries")) == {"time"}


@pytest.mark.parametrize(("language", "still"), [("da", "stadig læse"), ("en", "still read")])
def test_stop_says_plainly_that_the_caseworker_still_reads(language: str, still: str) -> None:
    assert still in text(language, "stop")
    assert "112" in text(language, "stop")


@pytest.mark.parametrize("language", LANGUAGES)
def test_help_and_my_data_name_who_runs_it_and_how_to_get_a_copy(language: str) -> None:
    assert {"municipality", "reply_hours", "caseworker", "oncall"} <= placeholders(
        text(language, "help")
    )
    assert "116 111" in text(language, "help")
    assert {"municipality", "retention"} <= placeholders(text(language, "my_data"))


@pytest.mark.parametrize("age", range(0, 26))
def test_every_rights_note_a_child_can_get_exists(age: int) -> None:
    band = age_band(age)
    for milestone in milestones_at_enrolment(age):
        for language in LANGUAGES:
            note = text(language, f"rights.{milestone}.{band}")
            # The scheduler sends rights notes without filling in anything.
            assert placeholders(note) == set()
            assert "{" not in note


def test_the_loop_back_handover_and_out_of_hours_texts() -> None:
    for language in LANGUAGES:
        assert placeholders(text(language, "feedback")) == {"caseworker", "summary"}
        assert placeholders(text(language, "handover")) == {"caseworker"}
        assert placeholders(text(language, "out_of_hours")) == {"reply_hours"}
        assert "112" in text(language, "out_of_hours")
