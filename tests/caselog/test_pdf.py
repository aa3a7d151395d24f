"""PDF journal notes: read back with pypdf, per entry and per case and day."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from bot.caselog.entries import EntryDraft, payload
from bot.caselog.pdf import PdfSink, case_slug
from bot.caselog.sinks import SinkError
from bot.ids import uuid7
from prompts.instruments import load_instruments

INSTRUMENTS = load_instruments()
WORDS = "min stedfar slår mig"  # the child's words in a test
AT = dt.datetime(2026, 3, 4, 11, 5, tzinfo=dt.UTC)  # 12:05 in Copenhagen


def message(seq: int, *, at: dt.datetime = AT, ref: str = "SAG-7") -> dict[str, Any]:
    draft = EntryDraft(
        "message",
        at,
        ref,
        "sms",
        "in",
        "child",
        "Barnet skrev via SMS (4 ord).",
        text=WORDS,
        legal_signals=("risk", "disclosure"),
    )
    return payload(uuid7(), draft, seq=seq, verbatim=True)  # the entry carries the words


def checkin(seq: int) -> dict[str, Any]:
    draft = EntryDraft(
        "checkin",
        AT,
        "SAG-7",
        None,
        "in",
        "child",
        "Barnet besvarede tjek-in 'wellbeing' (3 af 4 spørgsmål, score 6,3).",
        scores={
            "instrument": "wellbeing",
            "version": "1",
            "rater": "child",
            "status": "completed",
            "items": {"me": 7, "home": None, "school_friends": 3, "overall": 9},
            "score": 6.333,
            "flagged_falls": ["school_friends"],
        },
    )
    return payload(uuid7(), draft, seq=seq, verbatim=False)


def text_of(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


async def deliver(sink: PdfSink, *entries: dict[str, Any]) -> None:
    for entry in entries:
        await sink.deliver(entry)


async def test_a_note_per_entry_with_danish_headings_and_scores(tmp_path: Path) -> None:
    sink = PdfSink(tmp_path / "journal", instruments=INSTRUMENTS)
    entry = checkin(3)
    await deliver(sink, entry)
    [note] = (tmp_path / "journal").iterdir()
    assert note.name == "notat-SAG-7-2026-03-04-nr00003.pdf"
    assert stat.S_IMODE(note.stat().st_mode) == 0o600
    text = text_of(note)
    for expected in (
        "Journalnotat: barnets deltagelse",
        "SAG-7",
        "4. marts 2026 kl. 12:05",  # Europe/Copenhagen, not UTC
        "Tjek-in",
        "Barnet besvarede tjek-in 'wellbeing' (3 af 4 spørgsmål, score 6,3).",
        "Sådan har jeg det (version 1), besvaret",
        "Hvordan har du det med dig selv for tiden?",
        "sprunget over / ikke nået",
        "Spørgsmål",  # æ ø å survive the round trip
        "Fald siden sidst",
        entry["id"],
    ):
        assert expected in text, expected
    answers = [line for line in text.splitlines() if "Alt i alt" in line]
    assert answers and answers[0].rstrip().endswith("9")


async def test_words_only_when_the_policy_says_so(tmp_path: Path) -> None:
    quiet = PdfSink(tmp_path / "quiet", instruments=INSTRUMENTS)
    await deliver(quiet, message(1))
    [note] = (tmp_path / "quiet").iterdir()
    text = text_of(note)
    assert "Barnet skrev via SMS (4 ord)." in text and WORDS not in text
    assert "Risiko for barnets sikkerhed" in text and "vold eller overgreb" in text

    verbatim = PdfSink(tmp_path / "verbatim", instruments=INSTRUMENTS, verbatim=True)
    await deliver(verbatim, message(1))
    [note] = (tmp_path / "verbatim").iterdir()
    assert WORDS in text_of(note)


async def test_per_day_notes_are_rewritten_and_idempotent(tmp_path: Path) -> None:
    sink = PdfSink(tmp_path, per_day=True, instruments=INSTRUMENTS)
    first, second = message(1), checkin(2)
    late = message(3, at=dt.datetime(2026, 3, 4, 23, 30, tzinfo=dt.UTC))  # 5 March in Denmark
    await deliver(sink, first, second, first, late)  # the first one is delivered twice
    notes = sorted(tmp_path.glob("*.pdf"))
    assert [n.name for n in notes] == ["notat-SAG-7-2026-03-04.pdf", "notat-SAG-7-2026-03-05.pdf"]
    text = text_of(notes[0])
    assert text.count("Notat nr. 1: Besked") == 1 and "Notat nr. 2: Tjek-in" in text
    assert "Notat nr. 3" not in text and "Notat nr. 3: Besked" in text_of(notes[1])
    # The side file that rebuilds the day holds no words either, and nothing is left half-done.
    side = tmp_path / ".notat-SAG-7-2026-03-04.json"
    assert WORDS not in side.read_text(encoding="utf-8")
    assert stat.S_IMODE(side.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.tmp"))


async def test_case_references_become_safe_file_names(tmp_path: Path) -> None:
    assert case_slug("SAG-7") == "SAG-7"
    odd = case_slug("../../etc/passwd")
    assert "/" not in odd and not odd.startswith(".") and odd != case_slug("..-..-etc-passwd")
    sink = PdfSink(tmp_path / "journal")
    await deliver(sink, message(1, ref="../../etc/x"))
    [note] = (tmp_path / "journal").iterdir()
    assert note.parent == tmp_path / "journal"


async def test_an_unwritable_directory_is_a_retry(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(SinkError) as failed:
        await PdfSink(blocked).deliver(message(1))
    assert failed.value.reason == "pdf: FileExistsError" and WORDS not in str(failed.value)
