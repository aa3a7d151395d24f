"""A printable journal note (journalnotat) for one or more participation entries, as PDF bytes.

Danish headings, the case reference, each entry's time in Europe/Copenhagen, its kind, the
Danish summary, a table of check-in answers and the legal signals. The child's own words appear
only when ``verbatim`` is set (the municipality's policy). The text uses the PDF core font
Helvetica with the Windows-1252 encoding, which covers Danish (æ ø å) and needs no embedded
font file; a character outside it (an emoji in verbatim text) is printed as ``?``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from fpdf import FPDF

from bot.caselog.labels import ACTOR_DA, DIRECTION_DA, KIND_DA, SIGNAL_DA, STATUS_DA
from prompts.instruments import Instrument

COPENHAGEN = ZoneInfo("Europe/Copenhagen")
ENCODING = "windows-1252"
TITLE = "Journalnotat: barnets deltagelse"
_MONTHS = (
    "januar",
    "februar",
    "marts",
    "april",
    "maj",
    "juni",
    "juli",
    "august",
    "september",
    "oktober",
    "november",
    "december",
)
_PER_GOAL = re.compile(r"^(?P<item>[a-z][a-z0-9_]*)\.(?P<n>[0-9]+)$")
_LABEL_WIDTH = 45.0
_LINE = 6.0


def local_time(entry: Mapping[str, Any]) -> dt.datetime:
    """When the entry happened, in Danish time."""
    return dt.datetime.fromisoformat(str(entry["occurred_at"])).astimezone(COPENHAGEN)


def danish_date(day: dt.date) -> str:
    """``4. marts 2026``."""
    return f"{day.day}. {_MONTHS[day.month - 1]} {day.year}"


def printable(text: str) -> str:
    """``text`` with every character the core font cannot show replaced by ``?``."""
    return "".join(c if _encodable(c) else "?" for c in text)


def _encodable(char: str) -> bool:
    try:
        char.encode(ENCODING)
    except UnicodeEncodeError:
        return False
    return True


def render(
    entries: Sequence[Mapping[str, Any]],
    *,
    instruments: Mapping[str, Instrument],
    verbatim: bool = False,
) -> bytes:
    """A journal note for ``entries`` (one case), in ``seq`` order, as PDF bytes.

    Args:
        entries: The participation entries, all of the same case.
        instruments: Loaded instruments, to print each check-in question's Danish wording.
        verbatim: Whether the child's words may be printed (the municipality's policy).
    """
    ordered = sorted(entries, key=lambda e: int(e["seq"]))
    pdf = FPDF(format="A4")
    pdf.core_fonts_encoding = ENCODING
    pdf.set_title(TITLE)
    pdf.set_creator("Stemme")
    # A fixed date keeps a re-rendered note identical: redelivery changes nothing.
    pdf.set_creation_date(local_time(ordered[0]))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("helvetica", "B", 15)
    _line(pdf, TITLE)
    pdf.set_font("helvetica", "", 11)
    days = sorted({local_time(e).date() for e in ordered})
    _row(pdf, "Sag", str(ordered[0]["case_ref"]))
    _row(pdf, "Dato", ", ".join(danish_date(d) for d in days))
    _row(pdf, "Antal notater", str(len(ordered)))
    for entry in ordered:
        pdf.ln(3)
        _entry(pdf, entry, instruments=instruments, verbatim=verbatim)
    pdf.ln(4)
    pdf.set_font("helvetica", "I", 8)
    _line(
        pdf,
        "Dannet af Stemme ud fra deltagelsesnotater. Tider er dansk tid (Europe/Copenhagen). "
        "Resuméer citerer ikke barnet.",
    )
    return bytes(pdf.output())


def _entry(
    pdf: FPDF, entry: Mapping[str, Any], *, instruments: Mapping[str, Instrument], verbatim: bool
) -> None:
    kind = str(entry["kind"])
    pdf.set_font("helvetica", "B", 12)
    _line(pdf, f"Notat nr. {entry['seq']}: {KIND_DA.get(kind, kind)}")
    pdf.set_font("helvetica", "", 11)
    when = local_time(entry)
    _row(pdf, "Tidspunkt", f"{danish_date(when.date())} kl. {when:%H:%M}")
    _row(pdf, "Type", f"{KIND_DA.get(kind, kind)} ({kind})")
    if entry.get("channel"):
        _row(pdf, "Kanal", str(entry["channel"]))
    if entry.get("direction"):
        direction = str(entry["direction"])
        _row(pdf, "Retning", DIRECTION_DA.get(direction, direction))
    actor = str(entry["actor"])
    _row(pdf, "Aktør", ACTOR_DA.get(actor, actor))
    _row(pdf, "Resumé", str(entry["summary"]))
    signals = [SIGNAL_DA.get(s, s) for s in entry["legal_signals"]]
    _row(pdf, "Juridiske signaler", "; ".join(signals) if signals else "ingen")
    if entry.get("scores"):
        _scores(pdf, entry["scores"], instruments)
    if verbatim and isinstance(entry.get("text"), str):
        _row(pdf, "Ordret tekst", str(entry["text"]))
    pdf.set_font("helvetica", "", 8)
    _row(pdf, "Notat-id", str(entry["id"]))
    pdf.set_font("helvetica", "", 11)


def _scores(pdf: FPDF, scores: Mapping[str, Any], instruments: Mapping[str, Instrument]) -> None:
    instrument = instruments.get(str(scores["instrument"]))
    if instrument is not None and str(instrument.version) != str(scores["version"]):
        instrument = None  # the wording may have changed since; fall back to item ids
    title = instrument.title.get("da", instrument.id) if instrument else scores["instrument"]
    status = STATUS_DA.get(str(scores["status"]), str(scores["status"]))
    _row(pdf, "Instrument", f"{title} (version {scores['version']}), {status}")
    score = scores.get("score")
    _row(
        pdf,
        "Score",
        "kan ikke beregnes" if score is None else f"{round(score, 2):g}".replace(".", ","),
    )
    pdf.set_font("helvetica", "", 10)
    with pdf.table(col_widths=(3, 1), text_align="LEFT", first_row_as_headings=True) as table:
        table.row(["Spørgsmål", "Svar"])
        for item_id, value in dict(scores["items"]).items():
            answer = "sprunget over / ikke nået" if value is None else str(value)
            table.row([printable(_question(item_id, instrument)), answer])
    falls = list(scores.get("flagged_falls") or [])
    if falls:
        _row(pdf, "Fald siden sidst", ", ".join(falls))
    pdf.set_font("helvetica", "", 11)


def _question(item_id: str, instrument: Instrument | None) -> str:
    if instrument is None:
        return item_id
    goal = _PER_GOAL.match(item_id)
    key = goal["item"] if goal else item_id
    item = next((i for i in instrument.items if i.id == key), None)
    if item is None:
        return item_id
    band = "13_17" if "13_17" in instrument.age_bands else instrument.age_bands[0]
    text = item.text.get("da", band).replace("{goal}", "…")
    return f"{text} (mål {goal['n']})" if goal else text


def _row(pdf: FPDF, label: str, value: str) -> None:
    pdf.set_font(style="B")
    pdf.cell(_LABEL_WIDTH, _LINE, printable(label))
    pdf.set_font(style="")
    pdf.multi_cell(0, _LINE, printable(value), new_x="LMARGIN", new_y="NEXT")


def _line(pdf: FPDF, text: str) -> None:
    pdf.multi_cell(0, _LINE + 1, printable(text), new_x="LMARGIN", new_y="NEXT")
