"""Check-ins on the conversation page: what can be sent, what is planned, what came back.

The child's finished check-ins are shown item by item ("sprunget over" for a skipped one),
with the score, a visible mark on items that fell by the instrument's threshold or more since
the previous check-in (descriptive only, no clinical cut-off), and the caseworker's nearest
parallel rating of the same instrument beside them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.crypto import DataKey
from bot.engine import checkin as machine
from bot.engine.answers import RANGES
from bot.engine.checkins import Checkins
from bot.inbox.i18n import Translator
from bot.inbox.panels import Choice
from bot.storage.models import Case, Checkin, Schedule
from prompts.instruments import GOAL_PLACEHOLDER, Instrument

YES_LITTLE_NO = "yes_little_no"
ITEM_FIELD = "item."
SHOWN_RESULTS = 20

Rated = tuple[Checkin, dict[str, Any]]  # a finished check-in and its decrypted result


@dataclass(frozen=True, slots=True)
class ItemLine:
    label: str
    child: str
    caseworker: str | None
    fell: bool


@dataclass(frozen=True, slots=True)
class ResultView:
    checkin_id: str
    title: str
    by_caseworker: bool
    date_label: str
    status: str
    status_label: str
    items: list[ItemLine]
    score_label: str | None
    falls: list[str]
    threshold: int
    closing_text: str | None
    rating_label: str | None  # "Din vurdering 03.02.2025, score 6" beside a child's check-in


@dataclass(frozen=True, slots=True)
class RatingField:
    name: str
    label: str
    options: list[Choice]


@dataclass(frozen=True, slots=True)
class RatingForm:
    instrument_id: str
    title: str
    fields: list[RatingField]


@dataclass(frozen=True, slots=True)
class ScheduleView:
    title: str
    plan_label: str
    next_label: str


@dataclass(frozen=True, slots=True)
class CheckinPanel:
    instruments: list[Choice]
    ratings: list[RatingForm]
    schedules: list[ScheduleView]
    results: list[ResultView]


def title(instrument: Instrument | None, instrument_id: str, tr: Translator) -> str:
    if instrument is None:
        return instrument_id
    return instrument.title.get(tr.language) or instrument.title.get("da") or instrument_id


def ratable(instrument: Instrument) -> bool:
    """A parallel rating takes one answer per item; per-goal items need the child's goals."""
    return not any(item.per_goal for item in instrument.items)


def rating_band(instrument: Instrument) -> str:
    # Checkins.record_rating scores on the oldest age band's scales.
    return instrument.age_bands[-1]


async def load(
    session: AsyncSession,
    key: DataKey,
    checkins: Checkins,
    case: Case,
    tr: Translator,
    finished: list[tuple[Checkin, dict[str, Any]]],
) -> CheckinPanel:
    has_goals = bool(await checkins.goals(session, key, case))
    instruments = [
        Choice(i.id, title(i, i.id, tr))
        for i in checkins.instruments.values()
        if has_goals or ratable(i)
    ]
    ratings = [rating_form(i, tr) for i in checkins.instruments.values() if ratable(i)]
    schedules = (
        await session.exec(
            select(Schedule)
            .where(Schedule.case_id == case.id, Schedule.active == True)  # noqa: E712
            .order_by(col(Schedule.next_due_at))
        )
    ).all()
    return CheckinPanel(
        instruments=instruments,
        ratings=ratings,
        schedules=[_schedule(s, checkins, tr) for s in schedules],
        results=_results(finished, checkins, tr),
    )


def rating_form(instrument: Instrument, tr: Translator) -> RatingForm:
    band = rating_band(instrument)
    fields = []
    for item in instrument.items:
        response = item.response[band]
        low, high = RANGES[response]
        options = [Choice("", tr.t("checkins.skip"))]
        options += [Choice(str(v), answer_label(response, v, tr)) for v in range(low, high + 1)]
        fields.append(
            RatingField(
                name=ITEM_FIELD + item.id,
                label=item.text.get(tr.language, band),
                options=options,
            )
        )
    return RatingForm(instrument.id, title(instrument, instrument.id, tr), fields)


def parse_rating(
    instrument: Instrument, form: Mapping[str, object]
) -> dict[str, int | None] | None:
    """The answers of a submitted rating form; ``None`` if a value is not on the item's scale."""
    band = rating_band(instrument)
    answers: dict[str, int | None] = {}
    for item in instrument.items:
        raw = form.get(ITEM_FIELD + item.id)
        text = raw.strip() if isinstance(raw, str) else ""
        if not text:
            answers[item.id] = None
            continue
        low, high = RANGES[item.response[band]]
        if not text.isdigit() or not low <= int(text) <= high:
            return None
        answers[item.id] = int(text)
    return answers


def answer_label(response: str, value: int | None, tr: Translator) -> str:
    if value is None:
        return tr.t("checkins.skipped")
    if response == YES_LITTLE_NO:
        return tr.t(f"checkins.answer.yln.{value}")
    _, high = RANGES.get(response, (0, 10))
    return tr.t("checkins.answer.scale", value=value, high=high)


def _schedule(row: Schedule, checkins: Checkins, tr: Translator) -> ScheduleView:
    name = title(checkins.instruments.get(row.instrument_id), row.instrument_id, tr)
    if row.every_days is not None:
        plan = tr.t("checkins.plan.every", n=row.every_days)
    elif row.meeting_at is not None:
        plan = tr.t("checkins.plan.meeting", time=tr.time(row.meeting_at))
    else:
        plan = tr.t("checkins.plan.once")
    due = tr.time(row.next_due_at) if row.next_due_at else tr.t("checkins.plan.none")
    return ScheduleView(name, plan, due)


def _results(
    finished: list[tuple[Checkin, dict[str, Any]]], checkins: Checkins, tr: Translator
) -> list[ResultView]:
    children = [(row, data) for row, data in finished if row.rater != "caseworker"]
    beside = _pair_ratings(finished)
    previous: dict[str, machine.CheckinResult] = {}
    views: list[ResultView] = []
    for row, data in children:  # oldest first, so each is compared with the one before
        result = _parse(data)
        instrument = checkins.instruments.get(row.instrument_id)
        falls: list[str] = []
        before = previous.get(row.instrument_id)
        if result is not None and before is not None:
            threshold = instrument.scoring.change_threshold if instrument else 2
            falls = machine.falls(before, result, threshold=threshold)
        if result is not None:
            previous[row.instrument_id] = result
        views.append(_view(row, data, instrument, falls, beside.get(row.id), tr))
    shown = {rating[0].id for rating in beside.values()}
    for row, data in finished:
        if row.rater == "caseworker" and row.id not in shown:
            instrument = checkins.instruments.get(row.instrument_id)
            views.append(_view(row, data, instrument, [], None, tr))
    views.sort(key=lambda v: v.checkin_id, reverse=True)  # UUIDv7: newest first
    return views[:SHOWN_RESULTS]


def _pair_ratings(finished: Sequence[Rated]) -> dict[str, Rated]:
    """Each caseworker rating beside the child's check-in of the same instrument nearest in
    time (the latest rating wins where two are nearest to the same check-in)."""
    beside: dict[str, Rated] = {}
    for rating in finished:
        if rating[0].rater != "caseworker":
            continue
        same = [
            r
            for r, _ in finished
            if r.rater != "caseworker" and r.instrument_id == rating[0].instrument_id
        ]
        if same:
            nearest = min(same, key=lambda r: abs(r.started_at - rating[0].started_at))
            beside[nearest.id] = rating
    return beside


def _parse(data: Mapping[str, Any]) -> machine.CheckinResult | None:
    try:
        return machine.CheckinResult.from_dict(data)
    except machine.CheckinError:
        return None


def _view(
    row: Checkin,
    data: Mapping[str, Any],
    instrument: Instrument | None,
    falls: list[str],
    rating: Rated | None,
    tr: Translator,
) -> ResultView:
    answers: Mapping[str, Any] = data.get("answers") or {}
    responses: Mapping[str, Any] = data.get("responses") or {}
    goals: Mapping[str, Any] = data.get("goals") or {}
    band = str(data.get("age_band") or (instrument.age_bands[-1] if instrument else ""))
    rated: Mapping[str, Any] = (rating[1].get("answers") or {}) if rating else {}
    rated_responses: Mapping[str, Any] = (rating[1].get("responses") or {}) if rating else {}
    items = []
    for slot, value in answers.items():
        items.append(
            ItemLine(
                label=_item_label(instrument, str(slot), band, goals.get(slot), tr),
                child=answer_label(str(responses.get(slot, "")), value, tr),
                caseworker=(
                    answer_label(str(rated_responses.get(slot, "")), rated.get(slot), tr)
                    if rating is not None
                    else None
                ),
                fell=slot in falls,
            )
        )
    score = data.get("score")
    rating_label = None
    if rating is not None:
        rating_label = tr.t("checkins.rating_beside", date=tr.date(rating[0].started_at))
        if rating[1].get("score") is not None:
            rating_label += " · " + _score(rating[1]["score"], tr)
    status = str(data.get("status") or row.status)
    key = f"checkins.status.{status}"
    return ResultView(
        checkin_id=row.id,
        title=title(instrument, row.instrument_id, tr),
        by_caseworker=row.rater == "caseworker",
        date_label=tr.time(row.finished_at or row.started_at),
        status=status,
        status_label=tr.t(key) if tr.known(key) else status,
        items=items,
        score_label=_score(score, tr) if score is not None else None,
        falls=[_item_label(instrument, f, band, goals.get(f), tr) for f in falls],
        threshold=instrument.scoring.change_threshold if instrument else 2,
        closing_text=data.get("closing_text") or None,
        rating_label=rating_label,
    )


def _score(score: float, tr: Translator) -> str:
    text = f"{float(score):g}"
    return tr.t("checkins.score", score=text.replace(".", ",") if tr.language == "da" else text)


def _item_label(
    instrument: Instrument | None, slot: str, band: str, goal: object, tr: Translator
) -> str:
    item_id = slot.split(".", 1)[0]
    item = next((i for i in instrument.items if i.id == item_id), None) if instrument else None
    if item is None:
        return slot
    try:
        text = item.text.get(tr.language, band)
    except KeyError:
        text = item.text.get(tr.language, rating_band(instrument)) if instrument else slot
    return text.replace(GOAL_PLACEHOLDER, str(goal)) if goal is not None else text
