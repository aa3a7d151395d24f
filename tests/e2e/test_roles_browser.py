"""Roles in real headless Chromium: another team's case is refused with 403 and audited.

The other team, its caseworker and their case are made with the real command line
(``stemme team add``, ``stemme user add --team``, ``stemme case add``) against the running
service's database. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from bot.inbox import totp

from .chat import query
from .server import BIN, REPO, DemoInfo, ServerProcess
from .test_browser import DESKTOP, WAIT_MS, Watch, login_and_open_case

pytestmark = pytest.mark.slow

PASSWORD = "en lang fiktiv adgangskode"


def stemme_cli(server: ServerProcess, *args: str, stdin: str = "") -> str:
    """Run ``stemme …`` on the service's data directory; the output, or a failed assertion."""
    done = subprocess.run(
        [str(BIN / "stemme"), *args],
        cwd=REPO,
        env=server.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"stemme {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


def add_user(server: ServerProcess, username: str, name: str, team: str, role: str) -> None:
    stemme_cli(
        server,
        "user",
        "add",
        username,
        "--name",
        name,
        "--team",
        team,
        "--role",
        role,
        stdin=PASSWORD + "\n",
    )


async def first_login(page: Page, base_url: str, username: str) -> None:
    """A new account's first login: password, then TOTP set up from the secret on the page."""
    await page.goto(f"{base_url}/inbox/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("form[action='/inbox/login'] [type=submit]")
    await page.wait_for_url("**/inbox/login/setup")
    secret = (await page.locator("#totp-secret").text_content() or "").replace(" ", "")
    now = totp.current_step()
    for step in (now, now + 1):
        await page.fill("#code", totp.code_at(secret, step))
        await page.click("form[action='/inbox/login/setup'] [type=submit]")
        await page.wait_for_load_state()
        if page.url.endswith("/inbox/"):
            return
    await page.wait_for_url("**/inbox/")


async def test_another_teams_case_is_refused_and_audited(
    browser: Browser, stemme: tuple[ServerProcess, DemoInfo], artifacts: Path
) -> None:
    server, demo = stemme
    stemme_cli(server, "team", "add", "Team Nord")
    add_user(server, "carl", "Carl Fiktiv", "Team Nord", "caseworker")
    stemme_cli(
        server,
        "case",
        "add",
        "NORD-0001",
        "--caseworker",
        "carl",
        "--birth-date",
        "2012-01-01",
        "--name",
        "Fiktivt Nordbarn",
    )
    [(other_case,)] = query(
        server.db_path, "SELECT id FROM child_case WHERE case_ref = ?", ("NORD-0001",)
    )
    [(demo_id,)] = query(server.db_path, "SELECT id FROM caseworker WHERE username = ?", ("demo",))
    watch = Watch()
    context = await browser.new_context(**DESKTOP)
    try:
        page, _ = await login_and_open_case(context, demo, watch)
        response = await page.goto(f"{server.base_url}/inbox/cases/{other_case}")
        assert response is not None and response.status == 403
        await expect(page.locator("h1")).to_have_text("Ingen adgang", timeout=WAIT_MS)
        assert "Fiktivt Nordbarn" not in await page.content()
        await page.screenshot(path=str(artifacts / "roles-other-team-403.png"), full_page=True)
        # The team's own queue does not list it either.
        await page.goto(f"{server.base_url}/inbox/")
        assert other_case not in await page.content()
    finally:
        await context.close()
    watch.assert_clean()
    refused = query(
        server.db_path,
        "SELECT actor, detail FROM audit_event WHERE action = ? AND case_id = ?",
        ("case.access_refused", other_case),
    )
    assert refused == [(demo_id, '{"route":"GET /inbox/cases/{case_id}"}')]
    reads = query(
        server.db_path,
        "SELECT count(*) FROM audit_event WHERE action = ? AND case_id = ?",
        ("transcript.read", other_case),
    )
    assert reads == [(0,)]
    # The refusal is part of the hash chain like every other event.
    assert "audit log intact" in stemme_cli(server, "audit", "verify")
