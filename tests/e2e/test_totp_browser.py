"""Logging in with password and TOTP in real headless Chromium (``stemme serve`` on the demo).

Three things a caseworker meets: the code step, a code that was used already, and the setup
page after an admin reset their two-step verification. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from bot.inbox import totp

from .server import BIN, REPO, DemoInfo, ServerProcess
from .test_browser import DESKTOP, WAIT_MS, Watch

pytestmark = pytest.mark.slow


async def _password(page: Page, demo: DemoInfo) -> None:
    await page.goto(demo.inbox_url)
    await page.wait_for_url("**/inbox/login")
    await page.fill("input[name=username]", demo.username)
    await page.fill("input[name=password]", demo.password)
    await page.click("form[action='/inbox/login'] [type=submit]")


async def test_password_then_code_and_a_replayed_code_is_refused(
    browser: Browser, stemme: tuple[ServerProcess, DemoInfo], artifacts: Path
) -> None:
    _, demo = stemme
    watch = Watch()
    first = await browser.new_context(**DESKTOP)
    second = await browser.new_context(**DESKTOP)
    try:
        page = await first.new_page()
        watch.attach(page)
        await _password(page, demo)
        await page.wait_for_url("**/inbox/login/code")
        # Nothing of the inbox opens between the password and the code.
        other_tab = await first.new_page()
        await other_tab.goto(demo.inbox_url)
        await expect(other_tab).to_have_url(f"{demo.inbox_url}login")
        await other_tab.close()
        code = totp.code_at(demo.totp_secret, totp.current_step())
        await page.fill("input[name=code]", code)
        await page.screenshot(path=str(artifacts / "inbox-totp-code.png"))
        await page.click("form[action='/inbox/login/code'] [type=submit]")
        await page.wait_for_url("**/inbox/", timeout=WAIT_MS)
        await expect(page.locator("#queue tbody tr", has_text="DEMO-0001")).to_have_count(1)

        # Someone who saw the code (over the shoulder, in a proxy log) tries it elsewhere.
        thief = await second.new_page()
        watch.attach(thief)
        await _password(thief, demo)
        await thief.wait_for_url("**/inbox/login/code")
        await thief.fill("input[name=code]", code)
        await thief.click("form[action='/inbox/login/code'] [type=submit]")
        alert = thief.locator("p.error[role=alert]")
        await expect(alert).to_contain_text("allerede brugt", timeout=WAIT_MS)
        await thief.screenshot(path=str(artifacts / "inbox-totp-replayed.png"))
        await thief.goto(demo.inbox_url)
        await expect(thief).to_have_url(f"{demo.inbox_url}login")
        watch.assert_clean()
    finally:
        await first.close()
        await second.close()


async def test_setup_page_after_a_reset_shows_a_qr_code_and_logs_in(
    browser: Browser, stemme: tuple[ServerProcess, DemoInfo], artifacts: Path
) -> None:
    server, demo = stemme
    reset = subprocess.run(
        [str(BIN / "stemme"), "user", "reset-2fa", demo.username],
        cwd=REPO,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert reset.returncode == 0, reset.stderr
    watch = Watch()
    context = await browser.new_context(**DESKTOP)
    try:
        page = await context.new_page()
        watch.attach(page)
        await _password(page, demo)
        await page.wait_for_url("**/inbox/login/setup")
        qr = page.locator("figure.totp-qr svg")
        await expect(qr).to_be_visible()
        box = await qr.bounding_box()
        assert box is not None and box["width"] >= 100
        secret = (await page.locator("#totp-secret").text_content() or "").replace(" ", "")
        assert secret != demo.totp_secret and len(secret) == 32
        await page.screenshot(path=str(artifacts / "inbox-totp-setup.png"), full_page=True)

        # A mistyped code first: refused on the page, the secret stays the same.
        wrong = next(
            f"{n:06d}" for n in range(1000) if totp.matching_step(secret, f"{n:06d}") is None
        )
        await page.fill("input[name=code]", wrong)
        await page.click("form[action='/inbox/login/setup'] [type=submit]")
        await expect(page.locator("p.error[role=alert]")).to_contain_text("forkert")
        assert (await page.locator("#totp-secret").text_content() or "").replace(" ", "") == secret
        await page.fill("input[name=code]", totp.code_at(secret, totp.current_step()))
        await page.click("form[action='/inbox/login/setup'] [type=submit]")
        await page.wait_for_url("**/inbox/", timeout=WAIT_MS)
        await expect(page.locator("#queue tbody tr", has_text="DEMO-0001")).to_have_count(1)
        watch.assert_clean()
    finally:
        await context.close()
