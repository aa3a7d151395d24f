"""A closed case takes no replies: the inbox says so instead of queueing a message."""

from __future__ import annotations

from sqlmodel import select

from bot.case_close import close_case
from bot.storage.models import ConversationState, Outbox, utcnow
from channels.base import ChannelName, Inbound, ProviderMessageId
from tests.inbox.conftest import InboxHarness


async def test_a_reply_to_a_closed_case_is_refused_and_nothing_is_queued(
    inbox: InboxHarness,
) -> None:
    worker = await inbox.caseworker("kim")
    case = await inbox.case("kim", ref="SAG-LUK")
    await inbox.child_writes(case, "hej")
    client = await inbox.logged_in("kim")
    csrf = await inbox.session_csrf(client)
    await close_case(inbox.db, case_id=case.case_id, actor=worker)
    before = [m.id for m in await inbox.messages(case.case_id)]

    response = await client.post(
        f"/inbox/cases/{case.case_id}/reply",
        data={"text": "ringer i morgen", "csrf_token": csrf},
        allow_redirects=False,
    )
    assert response.status == 409
    assert "Sagen er lukket" in await response.text()
    assert [m.id for m in await inbox.messages(case.case_id)] == before


async def test_words_of_danger_to_a_closed_case_alert_on_call_at_once(
    inbox: InboxHarness,
) -> None:
    worker = await inbox.caseworker("kim")
    case = await inbox.case("kim", ref="SAG-LUK2")
    await close_case(inbox.db, case_id=case.case_id, actor=worker)
    before = [m.id for m in await inbox.messages(case.case_id)]

    stored = await inbox.router.route_inbound(
        [
            Inbound(
                channel=ChannelName("webchat"),
                address=case.webchat_token,
                provider_message_id=ProviderMessageId("closed-risk-1"),
                text="han slår mig hver aften",
                received_at=utcnow(),
            )
        ]
    )

    assert stored == [None]  # nobody reads a closed case: the words are not kept
    assert [m.id for m in await inbox.messages(case.case_id)] == before
    async with inbox.db.read() as session:
        state = await session.get(ConversationState, case.case_id)
        jobs = (
            await session.exec(
                select(Outbox).where(Outbox.case_id == case.case_id, Outbox.kind == "escalate")
            )
        ).all()
    assert state is not None and state.urgent_since is not None
    assert "violence" in (state.urgent_reasons or "")
    assert len(jobs) == 1 and jobs[0].next_attempt_at <= utcnow()  # not after the usual wait


async def test_ordinary_words_to_a_closed_case_alert_nobody(inbox: InboxHarness) -> None:
    worker = await inbox.caseworker("kim")
    case = await inbox.case("kim", ref="SAG-LUK3")
    await close_case(inbox.db, case_id=case.case_id, actor=worker)
    await inbox.router.route_inbound(
        [
            Inbound(
                channel=ChannelName("webchat"),
                address=case.webchat_token,
                provider_message_id=ProviderMessageId("closed-plain-1"),
                text="hej, hvordan går det?",
                received_at=utcnow(),
            )
        ]
    )
    async with inbox.db.read() as session:
        state = await session.get(ConversationState, case.case_id)
        jobs = (await session.exec(select(Outbox).where(Outbox.kind == "escalate"))).all()
    assert state is not None and state.urgent_since is None
    assert jobs == []
