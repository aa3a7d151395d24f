"""Trend charts: the SVG builder, the trend of one instrument, and the case page showing it."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col

from bot.engine import checkin as machine
from bot.inbox import svg, trends
from bot.inbox.i18n import Translations, Translator
from bot.storage.models import Case, Checkin
from prompts.instruments import load_instruments
from tests.inbox.conftest import InboxHarness, csrf_from

NS = {"s": svg.SVG_NS}
T0 = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
WELLBEING = load_instruments()["wellbeing"]
ITEMS = ("me", "home", "school_friends", "overall")


def tr(language: str = "da") -> Translator:
    return Translations.load(default="da").for_language(language)


def parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)


def points(root: ET.Element, kind: str) -> list[ET.Element]:
    return [e for e in root.iter() if f"point-{kind}" in (e.get("class") or "").split()]


def falls(root: ET.Element) -> list[ET.Element]:
    return [e for e in root.iter() if e.get("class") == "fall-mark"]


def run(
    answers: Sequence[int | None],
    *,
    day: int,
    rater: str = "child",
    status: str = "completed",
) -> tuple[Checkin, dict[str, Any]]:
    """A finished wellbeing check-in (one value per item, None: skipped) on day ``day``."""
    values = dict(zip(ITEMS, answers, strict=True))
    given = [v for v in values.values() if v is not None]
    at = T0 + dt.timedelta(days=day)
    row = Checkin(
        id=f"00000000-0000-7000-8000-{day:012d}{'c' if rater == 'caseworker' else ''}"[:36],
        case_id="case",
        instrument_id="wellbeing",
        instrument_version="1",
        rater=rater,
        status=status,
        started_at=at,
        finished_at=at,
    )
    result = machine.CheckinResult(
        instrument_id="wellbeing",
        instrument_version=1,
        status=machine.Status(status),
        answers=values,
        responses=dict.fromkeys(ITEMS, "scale_0_10"),
        score=round(sum(given) / len(given), 2) if given else None,
        age_band="13_17",
    )
    return row, result.to_dict()


# -- the SVG builder -------------------------------------------------------------------------


def test_line_chart_draws_each_point_breaks_at_gaps_and_marks_falls() -> None:
    child = [
        svg.Point(0, 6, "a"),
        svg.Point(10, None, "skipped"),
        svg.Point(20, 3, "b", marked=True),
        svg.Point(30, 4, "c"),
    ]
    rated = [svg.Point(15, 5, "r")]
    markup = svg.line_chart(
        chart_id="t1",
        title="Titel",
        desc="Beskrivelse",
        series=[svg.Series("Barnet", "child", child), svg.Series("Rådgiver", "caseworker", rated)],
        y_range=(0, 10),
        x_labels=[(0, "01.03"), (30, "31.03")],
        legend_fall="Fald",
    )
    root = parse(markup)

    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "t1-title t1-desc"
    assert root.find("s:title", NS) is not None and root.find("s:title", NS).text == "Titel"  # type: ignore[union-attr]
    assert root.find("s:desc", NS).text == "Beskrivelse"  # type: ignore[union-attr]
    assert [p.get("data-value") for p in points(root, "child")] == ["6", "3", "4"]
    assert [p.get("data-value") for p in points(root, "caseworker")] == ["5"]
    assert len(falls(root)) == 1
    # The skipped check-in breaks the child's line: one lone point, then a line of two.
    lines = [e for e in root.iter(f"{{{svg.SVG_NS}}}polyline") if e.get("class") == "line-child"]
    assert [len((e.get("points") or "").split()) for e in lines] == [2]
    dashed = [e for e in root.iter() if e.get("class") == "line-caseworker"]
    assert dashed and all(e.get("stroke-dasharray") == "6 4" for e in dashed)
    texts = [e.text for e in root.iter(f"{{{svg.SVG_NS}}}text")]
    assert "Barnet" in texts and "Rådgiver" in texts and "Fald" in texts
    assert "01.03" in texts and "31.03" in texts
    assert "style" not in markup  # the CSP allows no inline styles


def test_hostile_labels_stay_text() -> None:
    hostile = '<script>alert(1)</script>" onload="x" &amp; \x00\x1b'
    markup = svg.line_chart(
        chart_id='x" onload="alert(1)',
        title=hostile,
        desc=hostile,
        series=[svg.Series(hostile, "child", [svg.Point(0, 1, hostile, marked=True)])],
        y_range=(0, 10),
        x_labels=[(0, hostile)],
        legend_fall=hostile,
    )
    root = parse(markup)  # still well-formed XML

    shown = '<script>alert(1)</script>" onload="x" &amp; '
    assert root.find("s:title", NS).text == shown  # type: ignore[union-attr]
    assert root.get("id") == "x--onload--alert-1-"
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    assert all(not name.startswith("on") for e in root.iter() for name in e.attrib)
    assert "<script>" not in markup


def test_bar_chart_leaves_a_gap_for_a_hidden_value() -> None:
    bars = [svg.Bar("01.26", 12, "12"), svg.Bar("02.26", None, "skjult"), svg.Bar("03.26", 7, "7")]
    root = parse(svg.bar_chart(chart_id="b", title="Søjler", desc="d", bars=bars))

    drawn = [e for e in root.iter() if e.get("class") == "bar"]
    assert [e.get("data-value") for e in drawn] == ["12", "7"]
    texts = [e.text for e in root.iter(f"{{{svg.SVG_NS}}}text")]
    assert "skjult" in texts and "02.26" in texts
    heights = [float(e.get("height") or 0) for e in drawn]
    assert heights[0] > heights[1] > 0


# -- one instrument's trend ------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 3, 100])
def test_trend_has_one_point_and_one_row_per_checkin(count: int) -> None:
    finished = [run([5 + i % 3, 6, 7, 8], day=i) for i in range(count)]
    trend = trends.build("wellbeing", WELLBEING, finished, tr(), chart_id="trend-1")
    root = parse(trend.chart)

    assert len(points(root, "child")) == count
    assert points(root, "caseworker") == []
    assert len(trend.rows) == count
    assert trend.title == "Sådan har jeg det"
    assert trend.summary == f"{count} tjek-ins fra barnet, 0 vurderinger fra rådgiveren"


def test_trend_marks_falls_skips_and_ratings_like_the_table() -> None:
    finished = [
        run([8, 8, 8, 8], day=0),
        run([5, 8, 8, 8], day=7),  # "me" fell by 3: flagged
        run([None, None, None, None], day=14, status="abandoned"),  # all skipped: no score
        run([6, None, 7, 7], day=21),
        run([4, 5, 5, 5], day=8, rater="caseworker"),
    ]
    trend = trends.build("wellbeing", WELLBEING, finished, tr(), chart_id="trend-1")
    root = parse(trend.chart)

    assert [p.get("data-value") for p in points(root, "child")] == ["8", "7.25", "6.67"]
    assert [p.get("data-value") for p in points(root, "caseworker")] == ["4.75"]
    assert len(falls(root)) == 1
    rows = [(r.rater_label, r.score_label, r.answered_label, r.falls) for r in trend.rows]
    assert rows == [
        ("Barnet", "8", "4 af 4", ""),
        ("Barnet", "7,25", "4 af 4", "Hvordan har du det med dig selv for tiden?"),
        ("Rådgiverens vurdering", "4,75", "4 af 4", ""),
        ("Barnet", "sprunget over", "0 af 4", ""),
        ("Barnet", "6,67", "3 af 4", ""),
    ]
    # Every number the chart draws is in the table.
    drawn = {p.get("data-value") for p in root.iter() if p.get("data-value")}
    assert drawn == {r.score_label.replace(",", ".") for r in trend.rows} - {"sprunget over"}


def test_trend_in_english_and_with_hostile_instrument_title() -> None:
    finished = [run([5, 5, 5, 5], day=0)]
    trend = trends.build("<b>x</b>", None, finished, tr("en"), chart_id="trend-9")
    root = parse(trend.chart)

    assert root.find("s:title", NS).text == "<b>x</b>: score over time"  # type: ignore[union-attr]
    assert trend.rows[0].rater_label == "The child"
    assert not [e for e in root.iter() if e.tag.endswith("}b")]


# -- on the case page ------------------------------------------------------------------------


async def no_quiet_hours(inbox: InboxHarness, case_id: str) -> None:
    async with inbox.db.write() as session:
        await session.execute(
            update(Case)
            .where(col(Case.id) == case_id)
            .values(quiet_start="00:00", quiet_end="00:00")
        )


async def answer_checkin(inbox: InboxHarness, case: Any, values: Sequence[str]) -> None:
    for value in values:
        await inbox.child_writes(case, value)


async def test_case_page_shows_three_checkins_and_a_rating(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    await no_quiet_hours(inbox, case.case_id)
    client = await inbox.logged_in("anna")
    page_url = f"/inbox/cases/{case.case_id}"
    for values in (["8", "8", "8", "8"], ["5", "8", "8", "8"], ["6", "7", "7", "7"]):
        token = csrf_from(await (await client.get(page_url)).text())
        sent = await client.post(
            f"{page_url}/checkins/send",
            data={"csrf_token": token, "instrument_id": "wellbeing"},
            allow_redirects=False,
        )
        assert sent.status == 303
        assert "checkin_sent" in sent.headers["Location"]
        await answer_checkin(inbox, case, [*values, "nej"])
    token = csrf_from(await (await client.get(page_url)).text())
    rated = await client.post(
        f"{page_url}/checkins/rating",
        data={"csrf_token": token, "instrument_id": "wellbeing"}
        | {f"item.{i}": "4" for i in ITEMS},
        allow_redirects=False,
    )
    assert rated.status == 303

    page = await (await client.get(page_url)).text()

    section = page[page.index('<section id="trends"') :]
    section = section[: section.index("</section>")]
    chart = re.search(r"<svg.*?</svg>", section, re.S)
    assert chart is not None
    root = parse(chart.group(0))
    assert [p.get("data-value") for p in points(root, "child")] == ["8", "7.25", "6.75"]
    assert [p.get("data-value") for p in points(root, "caseworker")] == ["4"]
    assert len(falls(root)) == 1
    assert section.count('<tr class="trend-row') == 4
    assert "7,25" in section and "Faldet" in section
