"""The queue: urgent first, then unanswered by age, badges, "mark handled", on both databases."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import event, update
from sqlmodel import col, select

from bot import appkeys
from bot.ids import uuid7
from bot.inbox import queue
from bot.inbox.i18n import LOCAL_ZONE
from bot.storage.models import (
    AuditEvent,
    Case,
    Caseworker,
    ChannelIdentity,
    ConversationState,
    utcnow,
)
from channels.base import ChannelName, Inbound, ProviderMessageId
from tests.inbox.conftest import InboxHarness

ROW = re.compile(r'<tr data-case-id="(?P<id>[^"]+)"(?P<attrs>[^>]*)>(?P<body>.*?)</tr>', re.S)


def rows(page: str) -> list[tuple[str, str]]:
    """(case id, the row's HTML) in the order the queue shows them."""
    return [(m["id"], m["attrs"] + m["body"]) for m in ROW.finditer(page)]


async def add_identity(
    inbox: InboxHarness, case_id: str, address: str, *, channel: str = "messenger"
) -> str:
    """Give the case a consented identity on ``channel`` (as enrolment would leave it)."""
    async with inbox.db.write() as session:
        key = await inbox.keys.case_key(session, case_id)
        identity_id = uuid7()
        session.add(
            ChannelIdentity(
                id=identity_id,
                case_id=case_id,
                channel=channel,
                address_enc=key.encrypt(
                    address, table="channel_identity", row_id=identity_id, field="address"
                ),
                address_index=inbox.keys.address_index(channel, address),
                consented_at=utcnow(),
            )
        )
    return identity_id


async def test_urgent_first_then_unanswered_by_age_with_badges(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    answered = await inbox.case("anna", ref="Q-ANSWERED", child="Alma")
    oldest = await inbox.case("anna", ref="Q-OLDEST", child="Bo")
    newest = await inbox.case("anna", ref="Q-NEWEST", child="Cai")
    urgent = await inbox.case("anna", ref="Q-URGENT", child="Dana")
    quiet = await inbox.case("anna", ref="Q-QUIET", child="Eli")
    client = await inbox.logged_in("anna")

    await inbox.child_writes(answered, "hej")
    await inbox.router.reply(case_id=answered.case_id, caseworker_id=await _id(inbox), text="hej")
    await inbox.child_writes(oldest, "er du der?")
    await inbox.child_writes(newest, "hallo")
    await inbox.child_writes(urgent, "kan jeg bo et andet sted")  # a § 48 request: 24-hour timer
    # Quiet hours around "now" (local time), a scheduled check-in, and a Messenger window.
    now_local = dt.datetime.now(LOCAL_ZONE)
    async with inbox.db.write() as session:
        # The others have no quiet hours (equal times), whatever hour the test runs at.
        await session.execute(
            update(Case)
            .where(col(Case.id) != quiet.case_id)
            .values(quiet_start="12:00", quiet_end="12:00")
        )
        row = await session.get(Case, quiet.case_id)
        assert row is not None
        row.quiet_start = (now_local - dt.timedelta(hours=1)).strftime("%H:%M")
        row.quiet_end = (now_local + dt.timedelta(hours=1)).strftime("%H:%M")
    await inbox.app[appkeys.SCHEDULER].add_schedule(
        case_id=quiet.case_id,
        instrument_id="wellbeing",
        caseworker_id=await _id(inbox),
        every_days=7,
    )
    await add_identity(inbox, quiet.case_id, "7000000000991")
    await inbox.router.route_inbound(
        [
            Inbound(
                channel=ChannelName("messenger"),
                address="7000000000991",
                provider_message_id=ProviderMessageId("m-quiet-1"),
                text="hej fra messenger",
                received_at=utcnow(),
            )
        ]
    )

    page = await (await client.get("/inbox/")).text()
    order = [case_id for case_id, _ in rows(page)]
    assert order[:4] == [urgent.case_id, oldest.case_id, newest.case_id, quiet.case_id]
    assert order[4] == answered.case_id  # answered: after every unanswered one
    by_id = dict(rows(page))
    assert 'data-urgent="1"' in by_id[urgent.case_id]
    assert 'data-role="waiting"' in by_id[oldest.case_id]
    assert 'data-role="waiting"' not in by_id[answered.case_id]
    assert "Stille tid nu" in by_id[quiet.case_id]
    assert "Stille tid nu" not in by_id[oldest.case_id]
    assert "Næste tjek-in" in by_id[quiet.case_id]
    assert re.search(r"Svarvindue lukker om (23|24) t \d+ min", by_id[quiet.case_id])
    assert 'data-channel="messenger"' in by_id[quiet.case_id]
    assert 'data-channel="webchat"' in by_id[oldest.case_id]
    assert "Svarvindue" not in by_id[oldest.case_id]  # no Messenger, no window badge


async def test_mark_handled_until_the_child_writes_again(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="Q-HANDLED")
    client = await inbox.logged_in("anna")
    await inbox.child_writes(case, "tak for i dag")
    token = await inbox.session_csrf(client)
    assert _unanswered(await (await client.get("/inbox/")).text(), case.case_id)

    response = await client.post(
        f"/inbox/cases/{case.case_id}/handled",
        data={"csrf_token": token, "next": "queue"},
        allow_redirects=False,
    )
    assert response.status == 303 and response.headers["Location"] == "/inbox/"
    assert not _unanswered(await (await client.get("/inbox/")).text(), case.case_id)
    async with inbox.db.read() as session:
        actions = (
            await session.exec(select(AuditEvent.action).where(AuditEvent.case_id == case.case_id))
        ).all()
    assert "case.handled" in actions

    await inbox.child_writes(case, "en ting mere")
    assert _unanswered(await (await client.get("/inbox/")).text(), case.case_id)


async def test_mark_handled_on_another_caseworkers_case_is_refused(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.caseworker("bent")
    case = await inbox.case("anna", ref="Q-NOT-BENTS")
    await inbox.child_writes(case, "hej")
    bent = await inbox.logged_in("bent")
    token = await inbox.session_csrf(bent)
    response = await bent.post(
        f"/inbox/cases/{case.case_id}/handled", data={"csrf_token": token}, allow_redirects=False
    )
    assert response.status in (403, 404)
    async with inbox.db.read() as session:
        state = await session.get(ConversationState, case.case_id)
    assert state is not None and state.handled_at is None
    # Without a CSRF token nothing happens either, even on one's own case.
    anna = await inbox.logged_in("anna")
    response = await anna.post(f"/inbox/cases/{case.case_id}/handled", allow_redirects=False)
    assert response.status == 403


async def test_the_queue_takes_the_same_number_of_queries_for_3_or_30_cases(
    inbox: InboxHarness,
) -> None:
    await inbox.caseworker("anna")
    worker = await _id(inbox)
    counts = []
    made = 0
    for total in (3, 30):
        while made < total:
            case = await inbox.case("anna", ref=f"Q-N-{made}", child=f"Barn {made}")
            await inbox.child_writes(case, "hej")
            made += 1
        statements: list[str] = []

        def count(*args: object, seen: list[str] = statements) -> None:
            seen.append(str(args[2]))

        engine = inbox.db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            async with inbox.db.read() as session:
                found = await queue.load(session, inbox.keys, [worker], now=utcnow())
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(found) == total
        # Only the queue's own queries: no message bodies are read.
        assert not any("body_enc" in s for s in statements)
        counts.append(len(statements))
    assert counts[0] == counts[1]


def test_quiet_hours_across_midnight_and_within_a_day() -> None:
    at = dt.datetime(2026, 1, 10, 22, 30, tzinfo=LOCAL_ZONE)  # 22:30 local
    assert queue.quiet_now("21:00", "08:00", at)
    assert not queue.quiet_now("21:00", "08:00", at.replace(hour=12))
    assert queue.quiet_now("21:00", "08:00", at.replace(hour=7, minute=59))
    assert queue.quiet_now("13:00", "23:00", at)
    assert not queue.quiet_now("13:00", "13:00", at)  # equal: no quiet hours
    assert not queue.quiet_now("nonsense", "08:00", at)


async def _id(inbox: InboxHarness, username: str = "anna") -> str:
    async with inbox.db.read() as session:
        found = (
            await session.exec(select(Caseworker.id).where(Caseworker.username == username))
        ).first()
    assert found is not None
    return found


def _unanswered(page: str, case_id: str) -> bool:
    return 'data-unanswered="1"' in dict(rows(page))[case_id]
