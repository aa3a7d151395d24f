"""Handover: the team lead reassigns a case; the child is told; the new caseworker sees it."""

from __future__ import annotations

import json

from sqlmodel import col, select

from bot import appkeys
from bot.caselog.entries import FIELD, TABLE
from bot.inbox.handover import REASSIGNED
from bot.inbox.teams import add_team
from bot.router import BODY, MESSAGE_TABLE
from bot.storage.models import (
    AuditEvent,
    Case,
    ChannelIdentity,
    Handover,
    Message,
    ParticipationEntry,
    Role,
)
from tests.inbox.conftest import InboxHarness, csrf_from
from tests.inbox.test_roles import staff


async def _team(inbox: InboxHarness) -> dict[str, str]:
    team_a, team_b = await add_team(inbox.db, "Team A"), await add_team(inbox.db, "Team B")
    return {
        "anna": await staff(inbox, "anna", team_id=team_a),
        "bo": await staff(inbox, "bo", team_id=team_a),
        "lea": await staff(inbox, "lea", team_id=team_a, role=Role.TEAM_LEAD),
        "carl": await staff(inbox, "carl", team_id=team_b),
    }


async def _text(inbox: InboxHarness, message: Message) -> str:
    async with inbox.db.read() as session:
        return await inbox.keys.decrypt_text(
            session,
            message.case_id,
            message.body_enc,
            table=MESSAGE_TABLE,
            row_id=message.id,
            field=BODY,
        )


async def test_the_team_lead_hands_a_case_over(inbox: InboxHarness) -> None:
    ids = await _team(inbox)
    case = await inbox.case("anna", ref="S-1", child="Mika")
    await inbox.child_writes(case, "jeg vil gerne bo hos min moster")
    lea = await inbox.logged_in("lea")
    page = await (await lea.get(f"/inbox/cases/{case.case_id}")).text()
    assert 'action="/inbox/cases/' + case.case_id + '/handover"' in page
    assert f'value="{ids["bo"]}"' in page and f'value="{ids["carl"]}"' not in page
    # The lead looking in leaves the child's message unread for whoever works the case.
    child_lines = [m for m in await inbox.messages(case.case_id) if m.direction == "in"]
    assert [m.read_at for m in child_lines] == [None]

    done = await lea.post(
        f"/inbox/cases/{case.case_id}/handover",
        data={"csrf_token": csrf_from(page), "to": ids["bo"]},
        allow_redirects=False,
    )

    assert done.status == 303
    async with inbox.db.read() as session:
        row = await session.get(Case, case.case_id)
        assert row is not None and row.caseworker_id == ids["bo"]
        [handover] = (await session.exec(select(Handover))).all()
        assert (handover.from_caseworker_id, handover.to_caseworker_id) == (ids["anna"], ids["bo"])
        assert handover.by_caseworker_id == ids["lea"]
        [event] = (
            await session.exec(select(AuditEvent).where(AuditEvent.action == REASSIGNED))
        ).all()
        assert json.loads(event.detail) == {"from": ids["anna"], "to": ids["bo"]}
        [entry] = (
            await session.exec(
                select(ParticipationEntry).where(ParticipationEntry.kind == "handover")
            )
        ).all()
        key = await inbox.keys.case_key(session, case.case_id)
        [webchat] = (
            await session.exec(
                select(ChannelIdentity).where(ChannelIdentity.case_id == case.case_id)
            )
        ).all()
    payload = json.loads(key.decrypt(entry.payload_enc, table=TABLE, row_id=entry.id, field=FIELD))
    assert (payload["kind"], payload["channel"], payload["direction"]) == (
        "handover",
        "webchat",
        "out",
    )
    # The child is told on the channel they wrote from, in the bot's words, the new first name.
    told = (await inbox.messages(case.case_id))[-1]
    texts = inbox.app[appkeys.TEXTS]
    expected = texts.get("da", "handover.new_caseworker.13_17", caseworker="Bo")
    assert (told.author, told.identity_id, told.direction) == ("bot", webchat.id, "out")
    assert await _text(inbox, told) == expected
    assert payload["links"] == {"message_id": told.id}

    # Anna has no access any more; Bo sees the child's own words first.
    anna, bo = await inbox.logged_in("anna"), await inbox.logged_in("bo")
    assert (await anna.get(f"/inbox/cases/{case.case_id}")).status == 403
    summary = await (await bo.get(f"/inbox/cases/{case.case_id}")).text()
    assert 'id="handover-summary"' in summary
    section = summary.split('id="handover-summary"', 1)[1].split("</section>", 1)[0]
    assert "jeg vil gerne bo hos min moster" in section and "Anna Rådgiver" in section
    # The same web chat link keeps working: the child's next message reaches Bo.
    await inbox.child_writes(case, "hej Bo")
    again = await (await bo.get(f"/inbox/cases/{case.case_id}")).text()
    assert "hej Bo" in again
    assert 'action="/inbox/cases/' + case.case_id + '/handover"' not in again  # not a lead


async def test_only_the_lead_of_the_team_hands_over(inbox: InboxHarness) -> None:
    ids = await _team(inbox)
    case = await inbox.case("anna", ref="S-1")
    before = await inbox.messages(case.case_id)
    anna, lea = await inbox.logged_in("anna"), await inbox.logged_in("lea")
    anna_csrf, lea_csrf = await inbox.session_csrf(anna), await inbox.session_csrf(lea)

    by_owner = await anna.post(
        f"/inbox/cases/{case.case_id}/handover",
        data={"csrf_token": anna_csrf, "to": ids["bo"]},
        allow_redirects=False,
    )
    other_team = await lea.post(
        f"/inbox/cases/{case.case_id}/handover",
        data={"csrf_token": lea_csrf, "to": ids["carl"]},
        allow_redirects=False,
    )
    nobody = await lea.post(
        f"/inbox/cases/{case.case_id}/handover",
        data={"csrf_token": lea_csrf, "to": "no-such-caseworker"},
        allow_redirects=False,
    )
    no_csrf = await lea.post(
        f"/inbox/cases/{case.case_id}/handover", data={"to": ids["bo"]}, allow_redirects=False
    )

    assert (by_owner.status, other_team.status, nobody.status, no_csrf.status) == (
        403,
        400,
        400,
        403,
    )
    assert "samme team" in await other_team.text()
    async with inbox.db.read() as session:
        row = await session.get(Case, case.case_id)
        assert row is not None and row.caseworker_id == ids["anna"]
        assert (await session.exec(select(Handover))).all() == []
        refused = (
            await session.exec(
                select(AuditEvent.action).where(col(AuditEvent.case_id) == case.case_id)
            )
        ).all()
    assert list(refused).count("case.access_refused") == 1  # anna's attempt
    assert await inbox.messages(case.case_id) == before
