"""The statistics page and its CSV: suppression, the same cells in both, charts, refusals."""

from __future__ import annotations

import csv
import html
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from sqlmodel import select

from bot.inbox import stats
from bot.storage.models import AuditEvent
from tests.inbox.conftest import InboxHarness
from tests.inbox.test_stats import seed


def page_tables(page: str) -> dict[str, list[list[str]]]:
    """Every statistics table on the page: its rows of cell texts (header row first)."""
    found = {}
    for match in re.finditer(r'<table[^>]*id="stats-(\w+)"[^>]*>(.*?)</table>', page, re.S):
        rows = re.findall(r"<tr>(.*?)</tr>", match.group(2), re.S)
        found[match.group(1)] = [
            [html.unescape(c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)]
            for r in rows
        ]
    return found


def csv_tables(body: str) -> list[list[list[str]]]:
    """The export split into its sections (a header row starts each)."""
    sections: list[list[list[str]]] = []
    for row in csv.reader(io.StringIO(body.lstrip("\ufeff")), delimiter=";"):
        if row[0] == "Afsnit":
            sections.append([row[1:]])
        else:
            sections[-1].append(row[1:])
    return sections


def row_for(table: Sequence[Sequence[str]], first: str) -> list[str]:
    [row] = [list(r) for r in table if r and r[0] == first]
    return row


async def test_lead_page_suppresses_small_cells_and_csv_matches(inbox: InboxHarness) -> None:
    s = await seed(inbox)
    client = await inbox.logged_in("lead")

    page = await client.get("/inbox/stats")
    text = await page.text()
    export = await client.get("/inbox/stats.csv")
    body = await export.text()

    assert page.status == 200 and export.status == 200
    assert page.headers["Cache-Control"] == "no-store"
    assert "færre end 5 børn" in text
    tables = page_tables(text)
    assert tables["contacts"][1:] == [
        [s.month, "SMS", "skjult", "skjult"],
        [s.month, "Webchat", "9", "6"],
    ]
    assert row_for(tables["responses"], s.month) == [s.month, "10", "3,0", "6,0", "3", "6"]
    assert row_for(tables["checkins"], s.month) == [s.month, "17", "16", "94 %", "6"]
    assert row_for(tables["change"], "Sådan har jeg det") == [
        "Sådan har jeg det",
        "5,00",
        "6,00",
        "+1,00",
        "6",
    ]
    assert row_for(tables["change"], "Hvordan var mødet?")[1:] == ["skjult"] * 4
    [urgent] = tables["urgent"][1:]
    assert urgent[1:] == ["5", "25", "40", "1", "5"]
    # Never a case ref, a child's name or a per-child row.
    for case_ref in ("N-1", "N-6", "S-1", "Mika"):
        assert case_ref not in text and case_ref not in body
    # The CSV is the page's tables, cell for cell.
    assert export.headers["Content-Type"].startswith("text/csv")
    assert csv_tables(body) == list(tables.values())
    async with inbox.db.read() as session:
        events = (await session.exec(select(AuditEvent))).all()
    assert [(e.action, e.detail) for e in events if e.action.startswith("stats")] == [
        ("stats.export", '{"months":12}')
    ]


async def test_admin_sees_the_whole_municipality(inbox: InboxHarness) -> None:
    s = await seed(inbox)
    client = await inbox.logged_in("admin")

    tables = page_tables(await (await client.get("/inbox/stats?months=3")).text())

    assert tables["contacts"][1:] == [
        [s.month, "SMS", "skjult", "skjult"],
        [s.month, "Webchat", "10", "7"],
    ]
    assert row_for(tables["change"], "Sådan har jeg det")[-1] == "7"


async def test_plain_caseworker_and_bad_input_are_refused(inbox: InboxHarness) -> None:
    await seed(inbox)
    carl = await inbox.logged_in("carl")
    lead = await inbox.logged_in("lead")
    anonymous = inbox.client()

    page = await carl.get("/inbox/stats")
    export = await carl.get("/inbox/stats.csv")
    away = await anonymous.get("/inbox/stats.csv", allow_redirects=False)
    bad = [await lead.get(f"/inbox/stats?months={m}") for m in ("0", "25", "x", "-1", "1e3")]

    assert page.status == export.status == 403
    assert "Måned" not in await page.text()
    assert away.status in (302, 303) and away.headers["Location"].startswith("/inbox/login")
    assert [b.status for b in bad] == [400] * 5
    assert "Ugyldig periode" in await bad[0].text()
    async with inbox.db.read() as session:
        events = (await session.exec(select(AuditEvent))).all()
    assert not [e for e in events if e.action == stats.STATS_EXPORT]


async def test_charts_draw_the_shown_cells_only(inbox: InboxHarness) -> None:
    s = await seed(inbox)
    client = await inbox.logged_in("lead")

    text = await (await client.get("/inbox/stats?months=2")).text()

    charts = {
        root.get("id"): root
        for root in (ET.fromstring(m) for m in re.findall(r"<svg.*?</svg>", text, re.S))
    }
    assert set(charts) == {
        "stats-contacts-sms",
        "stats-contacts-webchat",
        "stats-responses",
        "stats-checkins",
    }
    assert all(c.get("role") == "img" for c in charts.values())
    bars = {
        key: [b.get("data-value") for b in c.iter() if b.get("class") == "bar"]
        for key, c in charts.items()
    }
    assert bars == {
        "stats-contacts-sms": [],  # hidden: two children
        "stats-contacts-webchat": ["9"],
        "stats-responses": ["3"],
        "stats-checkins": ["94"],
    }
    assert ' style="' not in text
    assert s.month in text
