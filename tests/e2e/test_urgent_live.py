"""The queue in real Chromium: an urgent case moves to the top live; every control is labelled.

Two children write: first an ordinary message on a second case, then the demo child writes
about violence. Without a reload, the demo child's row moves above the other with its urgent
flag. Then the queue and the conversation are checked for controls without a label (a screen
reader would announce them as nothing) and walked with the Tab key.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from .server import BIN, REPO, DemoInfo, ServerProcess
from .test_browser import DESKTOP, WAIT_MS, Watch, log_in

pytestmark = pytest.mark.slow

_LINK = re.compile(r"/c/(?P<token>[A-Za-z0-9_-]+)")
# Every visible control and what a screen reader would call it (empty: unlabelled).
_UNLABELLED = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, a[href]')]
  .filter(el => el.offsetParent !== null)
  .filter(el => {
    const named = (el.getAttribute('aria-label') || '').trim()
      || (el.labels && [...el.labels].some(l => l.textContent.trim()))
      || (el.getAttribute('aria-labelledby') || '').trim()
      || (['BUTTON', 'A'].includes(el.tagName) && el.textContent.trim())
      || (el.type === 'submit' && (el.value || '').trim())
      || (el.getAttribute('title') || '').trim();
    return !named;
  })
  .map(el => el.outerHTML.slice(0, 120))"""


def add_case(server: ServerProcess, demo: DemoInfo, case_ref: str) -> str:
    """``stemme case add`` beside the running server; returns the new child's link token."""
    result = subprocess.run(
        [
            str(BIN / "stemme"),
            "case",
            "add",
            case_ref,
            "--caseworker",
            demo.username,
            "--name",
            "Testbarn",
            "--birth-date",
            "2012-03-04",
        ],
        cwd=REPO,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    match = _LINK.search(result.stdout)
    assert match is not None, result.stdout
    return match["token"]


async def child_writes(server: ServerProcess, token: str, client_id: str, text: str) -> None:
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{server.base_url}/c/{token}/messages", json={"client_id": client_id, "text": text}
        )
        assert response.status == 200


async def test_an_urgent_conversation_moves_to_the_top_live(
    browser: Browser, stemme: tuple[ServerProcess, DemoInfo], artifacts: Path
) -> None:
    server, demo = stemme
    other = add_case(server, demo, "DEMO-0002")
    await child_writes(server, other, "first-0001", "hej, kan vi snakke i morgen?")
    watch = Watch()
    page = await log_in(await browser.new_context(**DESKTOP), demo, watch)
    rows = page.locator("#queue tbody tr")
    await expect(rows.first).to_contain_text("DEMO-0002", timeout=WAIT_MS)
    await page.evaluate("window.__same_page = true")

    await child_writes(server, demo.token, "urgent-0001", "han slår mig når han er fuld")

    await expect(rows.first).to_contain_text("DEMO-0001", timeout=WAIT_MS)
    await expect(rows.first).to_have_attribute("data-urgent", "1")
    await expect(rows.first.locator('[data-role="urgent"]')).to_be_visible()
    assert await page.evaluate("window.__same_page === true")  # moved live, not reloaded
    await page.screenshot(path=str(artifacts / "inbox-urgent-live.png"), full_page=True)
    watch.assert_clean()


async def test_every_control_is_labelled_and_reachable_by_keyboard(
    browser: Browser, stemme: tuple[ServerProcess, DemoInfo]
) -> None:
    server, demo = stemme
    await child_writes(server, demo.token, "label-0001", "hej")
    watch = Watch()
    page = await log_in(await browser.new_context(**DESKTOP), demo, watch)
    assert await page.evaluate(_UNLABELLED) == []

    # Keyboard only: Tab to the case's link and open it with Enter.
    link = page.locator("#queue tbody tr a", has_text=re.compile(".+")).first
    await expect(link).to_be_visible(timeout=WAIT_MS)
    href = await link.get_attribute("href")
    for _ in range(60):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.getAttribute('href')") == href:
            break
    else:
        pytest.fail(f"Tab never reached {href}")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/inbox/cases/*")
    await expect(page.locator("#transcript")).to_be_visible()
    assert await page.evaluate(_UNLABELLED) == []

    # The reply box is reachable by Tab and takes typing.
    for _ in range(200):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.id") == "reply-text":
            break
    else:
        pytest.fail("Tab never reached the reply box")
    await page.keyboard.type("Tak for din besked.")
    await expect(page.locator("#reply-text")).to_have_value("Tak for din besked.")
    watch.assert_clean()
