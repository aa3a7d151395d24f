"""The trend chart in real headless Chromium: three check-ins answered by the child over the web
chat socket, sent by the caseworker from the case page, drawn as SVG with a table below it.

The screenshot goes to ``tests/artifacts/inbox-trends.png``.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from .chat import ChildSocket, child_socket
from .server import DemoInfo, ServerProcess
from .test_browser import DESKTOP, WAIT_MS, Watch, login_and_open_case

pytestmark = pytest.mark.slow

ANSWERS = (("8", "8", "8", "8"), ("5", "8", "8", "8"), ("6", "7", "7", "7"))


def no_quiet_hours(db_path: Path) -> None:
    """Check-ins go out at once, whatever the hour the suite runs at (the demo child's quiet
    hours are 21–08)."""
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        with conn:
            conn.execute("UPDATE child_case SET quiet_start = '00:00', quiet_end = '00:00'")
    finally:
        conn.close()


async def say(child: ChildSocket, text: str) -> None:
    client_id = str(uuid.uuid4())
    await child.send(client_id, text)
    await child.wait_ack(client_id)


async def send_checkin(page: Page) -> None:
    await page.select_option("#send-instrument", "wellbeing")
    await page.click("form[action$='/checkins/send'] [type=submit]")
    await expect(page.locator("p.notice")).to_be_visible(timeout=WAIT_MS)


async def test_trend_chart_renders_three_checkins(
    browser: Browser,
    stemme: tuple[ServerProcess, DemoInfo],
    http: aiohttp.ClientSession,
    artifacts: Path,
) -> None:
    server, demo = stemme
    no_quiet_hours(server.db_path)
    watch = Watch()
    context = await browser.new_context(**DESKTOP)
    try:
        page, _ = await login_and_open_case(context, demo, watch)
        async with child_socket(http, server.ws_base, demo.token) as child:
            await child.hello()
            await say(child, "hej")
            await say(child, "ja")
            for answers in ANSWERS:
                await send_checkin(page)
                for answer in (*answers, "nej"):
                    await say(child, answer)

        await page.reload()
        trends = page.locator("#trends")
        chart = trends.locator("svg.chart")
        await expect(chart).to_have_count(1)
        points = chart.locator("circle.point-child")
        await expect(points).to_have_count(3)
        values = [await p.get_attribute("data-value") for p in await points.all()]
        assert values == ["8", "7.25", "6.75"]
        await expect(chart.locator("path.fall-mark")).to_have_count(1)
        await expect(chart).to_have_attribute("role", "img")
        assert "Sådan har jeg det" in (await chart.locator("title").first.text_content() or "")
        # The table alternative holds the same three scores.
        await trends.locator("details.trend-table summary").click()
        rows = trends.locator("tr.trend-row")
        await expect(rows).to_have_count(3)
        await expect(rows.nth(1)).to_contain_text("7,25")
        await expect(rows.nth(1)).to_contain_text("Faldet")
        await trends.scroll_into_view_if_needed()
        await trends.screenshot(path=str(artifacts / "inbox-trends.png"))
        watch.assert_clean()
    finally:
        await context.close()
