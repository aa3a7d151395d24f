"""Trends on the case page: per instrument, the child's scores over time beside the
caseworker's parallel ratings, with flagged falls marked.

Drawn on the server (:mod:`bot.inbox.svg`) with a table of the same numbers below each chart.
Falls are descriptive (a fall of the instrument's threshold or more on an item since the
child's previous check-in), never a clinical cut-off. A check-in where every item was skipped
has no score: the line breaks there and the table says so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from bot.engine import checkin as machine
from bot.engine.answers import RANGES
from bot.engine.checkins import Checkins
from bot.inbox import svg
from bot.inbox.checkin_panel import title
from bot.inbox.i18n import Translator
from bot.storage.models import Checkin
from prompts.instruments import GOAL_PLACEHOLDER, Instrument

MAX_POINTS = 200  # per instrument and rater: the latest ones; the caption says when cut
CHILD: svg.SeriesKind = "child"
CASEWORKER: svg.SeriesKind = "caseworker"


@dataclass(frozen=True, slots=True)
class TrendRow:
    """One line of the table alternative: the same number the chart shows."""

    date_label: str
    rater_label: str
    by_caseworker: bool
    score_label: str
    answered_label: str
    falls: str  # item texts that fell, "" when none


@dataclass(frozen=True, slots=True)
class InstrumentTrend:
    instrument_id: str
    title: str
    chart: Markup
    rows: list[TrendRow]
    summary: str  # "3 check-ins from the child, 1 rating by you"
    cut: bool  # older points left out (more than MAX_POINTS)


@dataclass(frozen=True, slots=True)
class _Run:
    row: Checkin
    result: machine.CheckinResult
    falls: list[str]


def load(
    finished: list[tuple[Checkin, dict[str, Any]]], checkins: Checkins, tr: Translator
) -> list[InstrumentTrend]:
    """The trend of every instrument in ``finished`` (``Checkins.results``: oldest first)."""
    by_instrument: dict[str, list[tuple[Checkin, dict[str, Any]]]] = {}
    for row, data in finished:
        by_instrument.setdefault(row.instrument_id, []).append((row, data))
    trends = []
    for number, (instrument_id, rows) in enumerate(sorted(by_instrument.items()), start=1):
        instrument = checkins.instruments.get(instrument_id)
        trends.append(build(instrument_id, instrument, rows, tr, chart_id=f"trend-{number}"))
    return trends


def build(
    instrument_id: str,
    instrument: Instrument | None,
    finished: Sequence[tuple[Checkin, Mapping[str, Any]]],
    tr: Translator,
    *,
    chart_id: str,
) -> InstrumentTrend:
    """One instrument's chart and table from its finished check-ins, oldest first."""
    threshold = instrument.scoring.change_threshold if instrument else 2
    child, caseworker = _runs(finished, threshold)
    cut = len(child) > MAX_POINTS or len(caseworker) > MAX_POINTS
    child, caseworker = child[-MAX_POINTS:], caseworker[-MAX_POINTS:]
    name = title(instrument, instrument_id, tr)
    series = [svg.Series(tr.t("trends.child"), CHILD, [_point(r, tr) for r in child])]
    if caseworker:
        series.append(
            svg.Series(tr.t("trends.caseworker"), CASEWORKER, [_point(r, tr) for r in caseworker])
        )
    every = sorted(child + caseworker, key=lambda r: r.row.started_at)
    summary = tr.t("trends.summary", child=len(child), caseworker=len(caseworker))
    falls = sum(1 for r in child if r.falls)
    desc = summary + " " + tr.t("trends.desc_falls", n=falls, threshold=threshold)
    scored = [r.result.score for r in every if r.result.score is not None]
    if scored:
        low, high = _num(min(scored), tr), _num(max(scored), tr)
        desc += " " + tr.t("trends.desc_range", low=low, high=high)
    chart = svg.line_chart(
        chart_id=chart_id,
        title=tr.t("trends.chart_title", instrument=name),
        desc=desc,
        series=series,
        y_range=_y_range(instrument, every),
        x_labels=_x_labels(every, tr),
        legend_fall=tr.t("trends.fall", n=threshold),
    )
    rows = [_table_row(r, instrument, tr) for r in every]
    return InstrumentTrend(instrument_id, name, chart, rows, summary, cut)


def _runs(
    finished: Sequence[tuple[Checkin, Mapping[str, Any]]], threshold: int
) -> tuple[list[_Run], list[_Run]]:
    child: list[_Run] = []
    caseworker: list[_Run] = []
    for row, data in sorted(finished, key=lambda f: f[0].started_at):
        try:
            result = machine.CheckinResult.from_dict(data)
        except machine.CheckinError:
            continue  # unreadable (an older format): left out of the chart, kept in the panel
        if row.rater == CASEWORKER:
            caseworker.append(_Run(row, result, []))
            continue
        falls = machine.falls(child[-1].result, result, threshold=threshold) if child else []
        child.append(_Run(row, result, falls))
    return child, caseworker


def _point(run: _Run, tr: Translator) -> svg.Point:
    moment = run.row.finished_at or run.row.started_at
    score = run.result.score
    value = _num(score, tr) if score is not None else tr.t("trends.no_score")
    return svg.Point(
        x=moment.timestamp(),
        y=score,
        label=f"{tr.date(moment)}: {value}",
        marked=bool(run.falls),
    )


def _table_row(run: _Run, instrument: Instrument | None, tr: Translator) -> TrendRow:
    answers = run.result.answers
    answered = sum(1 for v in answers.values() if v is not None)
    score = run.result.score
    by_caseworker = run.row.rater == CASEWORKER
    return TrendRow(
        date_label=tr.time(run.row.finished_at or run.row.started_at),
        rater_label=tr.t("trends.caseworker") if by_caseworker else tr.t("trends.child"),
        by_caseworker=by_caseworker,
        score_label=_num(score, tr) if score is not None else tr.t("trends.no_score"),
        answered_label=tr.t("trends.answered", n=answered, of=len(answers)),
        falls=", ".join(_item_text(instrument, run.result, slot, tr) for slot in run.falls),
    )


def _y_range(instrument: Instrument | None, runs: Sequence[_Run]) -> tuple[float, float]:
    """The scale's own range (0–10 for a mean of 0–10 items), widened to fit every value."""
    summed = instrument is not None and instrument.scoring.method == "sum"
    low, high = 0.0, 10.0
    for i, run in enumerate(runs):
        ranges = [RANGES.get(r, (0, 10)) for r in run.result.responses.values()] or [(0, 10)]
        lows, highs = [r[0] for r in ranges], [r[1] for r in ranges]
        this = (sum(lows), sum(highs)) if summed else (min(lows), max(highs))
        low, high = (this[0], this[1]) if i == 0 else (min(low, this[0]), max(high, this[1]))
        if run.result.score is not None:
            low, high = min(low, run.result.score), max(high, run.result.score)
    return float(low), float(max(high, low + 1))


def _x_labels(runs: Sequence[_Run], tr: Translator) -> list[tuple[float, str]]:
    """The first and the last date (and the middle one for a long series): enough to read
    the span without labels running into each other."""
    if not runs:
        return []
    moments = [r.row.finished_at or r.row.started_at for r in runs]
    chosen: list[dt.datetime] = [moments[0]]
    if len(moments) > 2:
        chosen.append(moments[len(moments) // 2])
    if len(moments) > 1:
        chosen.append(moments[-1])
    # Within one day the dates alone would all read the same: show the times too.
    label = tr.time if tr.date(moments[0]) == tr.date(moments[-1]) else tr.date
    return [(m.timestamp(), label(m)) for m in chosen]


def _item_text(
    instrument: Instrument | None, result: machine.CheckinResult, slot: str, tr: Translator
) -> str:
    item_id = slot.split(".", 1)[0]
    item = next((i for i in instrument.items if i.id == item_id), None) if instrument else None
    if item is None or instrument is None:
        return slot
    band = result.age_band if result.age_band in instrument.age_bands else instrument.age_bands[-1]
    text = item.text.get(tr.language, band)
    goal = result.goals.get(slot)
    return text.replace(GOAL_PLACEHOLDER, goal) if goal is not None else text


def _num(value: float, tr: Translator) -> str:
    text = f"{value:g}"
    return text.replace(".", ",") if tr.language == "da" else text
