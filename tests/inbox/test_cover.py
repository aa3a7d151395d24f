"""Away and cover, and the team lead's queue of what nobody answered in time."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from bot.inbox.i18n import LOCAL_ZONE
from bot.inbox.teams import add_team
from bot.storage.models import AuditEvent, Cover, Message, Role, utcnow
from tests.inbox.conftest import InboxHarness, start, stop
from tests.inbox.test_roles import staff


async def _team(inbox: InboxHarness) -> dict[str, str]:
    team_a, team_b = await add_team(inbox.db, "Team A"), await add_team(inbox.db, "Team B")
    return {
        "anna": await staff(inbox, "anna", team_id=team_a),
        "bo": await staff(inbox, "bo", team_id=team_a),
        "lea": await staff(inbox, "lea", team_id=team_a, role=Role.TEAM_LEAD),
        "carl": await staff(inbox, "carl", team_id=team_b),
    }


def _tomorrow() -> str:
    return (dt.datetime.now(LOCAL_ZONE).date() + dt.timedelta(days=1)).isoformat()


async def test_a_colleague_covers_while_the_caseworker_is_away(inbox: InboxHarness) -> None:
    ids = await _team(inbox)
    case = await inbox.case("anna", ref="S-1", child="Mika")
    await inbox.child_writes(case, "er du der?")
    anna, bo = await inbox.logged_in("anna"), await inbox.logged_in("bo")
    assert (await bo.get(f"/inbox/cases/{case.case_id}")).status == 403

    away = await anna.post(
        "/inbox/away",
        data={
            "csrf_token": await inbox.session_csrf(anna),
            "covered_by": ids["bo"],
            "ends_on": _tomorrow(),
        },
        allow_redirects=False,
    )
    assert away.status == 303

    queue = await (await bo.get("/inbox/")).text()
    assert case.case_id in queue and 'data-role="covering"' in queue
    assert "Dækker for Anna Rådgiver" in queue
    page = await bo.get(f"/inbox/cases/{case.case_id}")
    body = await page.text()
    assert page.status == 200
    assert "Dækker for Anna Rådgiver" in body and "er du der?" in body
    reply = await bo.post(
        f"/inbox/cases/{case.case_id}/reply",
        data={"csrf_token": await inbox.session_csrf(bo), "text": "Jeg dækker for Anna."},
        allow_redirects=False,
    )
    assert reply.status == 303
    last = (await inbox.messages(case.case_id))[-1]
    assert (last.author, last.caseworker_id) == ("caseworker", ids["bo"])

    # Carl (another team) may not end it; Anna ends it and Bo's access ends with it.
    async with inbox.db.read() as session:
        [cover] = (await session.exec(select(Cover))).all()
    carl = await inbox.logged_in("carl")
    refused = await carl.post(
        f"/inbox/away/{cover.id}/end",
        data={"csrf_token": await inbox.session_csrf(carl)},
        allow_redirects=False,
    )
    ended = await anna.post(
        f"/inbox/away/{cover.id}/end",
        data={"csrf_token": await inbox.session_csrf(anna)},
        allow_redirects=False,
    )
    assert (refused.status, ended.status) == (403, 303)
    assert (await bo.get(f"/inbox/cases/{case.case_id}")).status == 403
    async with inbox.db.read() as session:
        actions = (await session.exec(select(AuditEvent.action))).all()
    assert {"cover.set", "cover.end"} <= set(actions)


async def test_a_colleague_from_another_team_cannot_cover(inbox: InboxHarness) -> None:
    ids = await _team(inbox)
    anna = await inbox.logged_in("anna")
    response = await anna.post(
        "/inbox/away",
        data={
            "csrf_token": await inbox.session_csrf(anna),
            "covered_by": ids["carl"],
            "ends_on": _tomorrow(),
        },
    )
    assert response.status == 400
    assert "samme team" in await response.text()
    async with inbox.db.read() as session:
        assert (await session.exec(select(Cover))).all() == []


@pytest.fixture
async def timed_inbox(db_url: str, tmp_path: Path) -> AsyncIterator[InboxHarness]:
    harness = await start(tmp_path, database_url=db_url, response_hours=24)
    try:
        yield harness
    finally:
        await stop(harness)


async def test_the_team_queue_shows_what_nobody_answered_in_time(
    timed_inbox: InboxHarness,
) -> None:
    inbox = timed_inbox
    ids = await _team(inbox)
    late = await inbox.case("anna", ref="S-LATE", child="Sen")
    fresh = await inbox.case("bo", ref="S-FRESH", child="Ny")
    answered = await inbox.case("bo", ref="S-DONE", child="Svar")
    other = await inbox.case("carl", ref="S-OTHER", child="Andet")
    for case in (late, fresh, answered, other):
        await inbox.child_writes(case, "hej")
    # The late one's message arrived two days ago (a row's own timestamp, set as a test setup).
    async with inbox.db.write() as session:
        await session.execute(
            update(Message)
            .where(col(Message.case_id) == late.case_id)
            .values(created_at=utcnow() - dt.timedelta(days=2))
        )
    bo = await inbox.logged_in("bo")
    await bo.post(
        f"/inbox/cases/{answered.case_id}/reply",
        data={"csrf_token": await inbox.session_csrf(bo), "text": "Hej igen"},
    )

    lea = await inbox.logged_in("lea")
    page = await lea.get("/inbox/team")
    body = await page.text()
    anna = await inbox.logged_in("anna")

    assert page.status == 200
    assert (await anna.get("/inbox/team")).status == 403
    order = [ref for ref in ("S-LATE", "S-FRESH", "S-DONE") if ref in body]
    assert order == ["S-LATE", "S-FRESH", "S-DONE"]
    assert body.index("S-LATE") < body.index("S-FRESH") < body.index("S-DONE")
    assert "S-OTHER" not in body
    rows = {
        case.case_id: body.split(f'data-case-id="{case.case_id}"', 1)[1].split("</tr>", 1)[0]
        for case in (late, fresh, answered)
    }
    assert 'data-overdue="1"' in rows[late.case_id]
    assert 'data-overdue="0"' in rows[fresh.case_id]
    assert "Besvaret" in rows[answered.case_id]
    assert ids["anna"] != ids["bo"]
