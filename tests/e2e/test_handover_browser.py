"""Handover in real headless Chromium: the team lead reassigns the demo case, the new caseworker
sees the child's own words first, and the child reads "ny rådgiver" in the same web chat.

The team lead and the new caseworker are added with ``stemme user add --team --role`` to the
demo team. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from .chat import query
from .test_browser import (
    CHILD_LINES,
    DESKTOP,
    WAIT_MS,
    Session,
    child_send,
    session,
)
from .test_roles_browser import add_user, first_login

pytestmark = pytest.mark.slow
__all__ = ["session"]  # the fixture, shared with the other browser tests

DEMO_TEAM = "Demo-team (fiktivt)"


async def test_the_team_lead_hands_over_and_the_child_is_told(
    browser: Browser, session: Session, artifacts: Path
) -> None:
    s = session
    base = s.server.base_url
    add_user(s.server, "lea", "Lea Fiktiv", DEMO_TEAM, "team_lead")
    add_user(s.server, "bo", "Bo Fiktiv", DEMO_TEAM, "caseworker")
    await child_send(s.child, "jeg vil gerne tale om skolen")
    await expect(s.inbox.locator("#transcript li.msg").last).to_contain_text(
        "jeg vil gerne tale om skolen", timeout=WAIT_MS
    )
    [(bo_id,)] = query(s.server.db_path, "SELECT id FROM caseworker WHERE username = 'bo'")
    [(webchat_before,)] = query(
        s.server.db_path,
        "SELECT id FROM channel_identity WHERE case_id = ? AND channel = 'webchat'",
        (s.case_id,),
    )

    lead_context = await browser.new_context(**DESKTOP)
    bo_context = await browser.new_context(**DESKTOP)
    try:
        lead = await lead_context.new_page()
        s.watch.attach(lead)
        await first_login(lead, base, "lea")
        await lead.goto(f"{base}/inbox/cases/{s.case_id}")
        await expect(lead.locator("#handover-heading")).to_be_visible()
        await lead.select_option("#handover-to", bo_id)
        await lead.screenshot(path=str(artifacts / "handover-lead-form.png"), full_page=True)
        await lead.click("#handover [type=submit]")
        await lead.wait_for_url("**done=handed_over*")
        await expect(lead.locator("p.notice")).to_contain_text("overdraget")

        # The child reads it in the same web chat, in the bot's words, with Bo's first name.
        told = s.child.locator(f"{CHILD_LINES}.out .text", has_text="ny rådgiver")
        await expect(told).to_have_count(1, timeout=WAIT_MS)
        text = await told.text_content() or ""
        assert "Bo" in text and "Samme nummer" in text
        await s.child.screenshot(path=str(artifacts / "handover-child-chat.png"))

        bo = await bo_context.new_page()
        s.watch.attach(bo)
        await first_login(bo, base, "bo")
        await bo.goto(f"{base}/inbox/cases/{s.case_id}")
        summary = bo.locator("#handover-summary")
        await expect(summary).to_contain_text("jeg vil gerne tale om skolen")
        await expect(summary).to_contain_text("Sanne Demo")
        await bo.screenshot(path=str(artifacts / "handover-new-caseworker.png"), full_page=True)

        # The child keeps writing in the same place, and it reaches Bo live.
        await child_send(s.child, "hej Bo")
        await expect(bo.locator("#transcript li.msg").last).to_contain_text(
            "hej Bo", timeout=WAIT_MS
        )
        # The previous caseworker no longer has the case.
        response = await s.inbox.goto(f"{base}/inbox/cases/{s.case_id}")
        assert response is not None and response.status == 403
    finally:
        await bo_context.close()
        await lead_context.close()
    s.watch.assert_clean()
    assert query(
        s.server.db_path,
        "SELECT id FROM channel_identity WHERE case_id = ? AND channel = 'webchat'",
        (s.case_id,),
    ) == [(webchat_before,)]
    kinds = [k for (k,) in query(s.server.db_path, "SELECT kind FROM participation_entry")]
    assert "handover" in kinds
    [(detail,)] = query(
        s.server.db_path, "SELECT detail FROM audit_event WHERE action = 'case.reassigned'"
    )
    assert bo_id in detail
