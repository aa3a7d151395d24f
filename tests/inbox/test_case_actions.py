"""The bot's per-case actions in the inbox: urgent first and acknowledged, check-ins sent,
planned and rated, "Dine ord blev brugt", invitations, the child's channels, and replies that
the Messenger 24-hour window refuses."""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import re

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from bot import appkeys
from bot.cases import NewCase
from bot.inbox.i18n import LOCAL_ZONE
from bot.router import BODY, MESSAGE_TABLE
from bot.storage.models import (
    AuditEvent,
    Case,
    Caseworker,
    ChannelIdentity,
    Checkin,
    ConsentEvent,
    ConversationState,
    Direction,
    Message,
    Outbox,
    ParticipationEntry,
    Schedule,
    utcnow,
)
from channels.base import ChannelName, Inbound, ProviderMessageId
from tests.inbox.conftest import InboxHarness

CODE = re.compile(r'<p class="code" id="invitation-code">([0-9A-Z]{4}-[0-9A-Z]{4})</p>')
DISCLOSURE = "min far slår mig"  # risk (violence) and a legal signal (disclosure): 24-hour timer


def _words(page: str) -> str:
    """A page's text as a reader sees it: no tags, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _row(page: str, case_id: str) -> str:
    match = re.search(rf'<tr data-case-id="{case_id}"[^>]*>.*?</tr>', page, re.S)
    assert match is not None
    return match.group(0)


async def _texts(inbox: InboxHarness, case_id: str) -> list[tuple[Message, str]]:
    rows = await inbox.messages(case_id)
    async with inbox.db.read() as session:
        return [
            (
                m,
                await inbox.keys.decrypt_text(
                    session, case_id, m.body_enc, table=MESSAGE_TABLE, row_id=m.id, field=BODY
                ),
            )
            for m in rows
        ]


async def _state(inbox: InboxHarness, case_id: str) -> ConversationState:
    async with inbox.db.read() as session:
        state = await session.get(ConversationState, case_id)
    assert state is not None
    return state


async def _worker_id(inbox: InboxHarness, username: str) -> str:
    async with inbox.db.read() as session:
        query = select(Caseworker).where(Caseworker.username == username)
        return (await session.exec(query)).one().id


async def _no_quiet_hours(inbox: InboxHarness, case_id: str) -> None:
    """Whatever the clock says when the suite runs, the child is not in quiet hours."""
    async with inbox.db.write() as session:
        await session.execute(
            update(Case)
            .where(col(Case.id) == case_id)
            .values(quiet_start="00:00", quiet_end="00:00")
        )


async def _inbound(inbox: InboxHarness, channel: str, address: str, text: str, n: int) -> None:
    await inbox.router.route_inbound(
        [
            Inbound(
                channel=ChannelName(channel),
                address=address,
                provider_message_id=ProviderMessageId(f"{channel}-{n}"),
                text=text,
                received_at=utcnow(),
            )
        ]
    )


async def _identities(inbox: InboxHarness, case_id: str) -> list[ChannelIdentity]:
    async with inbox.db.read() as session:
        query = select(ChannelIdentity).where(ChannelIdentity.case_id == case_id)
        return list((await session.exec(query.order_by(col(ChannelIdentity.created_at)))).all())


async def _invite(inbox: InboxHarness, case_id: str, *channels: str) -> str:
    async with inbox.db.write() as session:
        invitation = await inbox.app[appkeys.ENROLMENT].invite(
            session, case_id=case_id, channels=list(channels), caseworker_id=None
        )
    return invitation.code


# -- urgent first ------------------------------------------------------------------------------


async def test_urgent_case_comes_first_with_badge_reasons_and_deadline(
    inbox: InboxHarness,
) -> None:
    await inbox.caseworker("anna")
    urgent = await inbox.case("anna", ref="S-1", child="Sofie")
    busy = await inbox.case("anna", ref="S-2", child="Ali")
    await inbox.child_writes(urgent, DISCLOSURE)
    # The other case is more recent and has more unread messages, and still comes second.
    await inbox.child_writes(busy, "hej")
    await inbox.child_writes(busy, "er du der?")
    client = await inbox.logged_in("anna")

    page = await (await client.get("/inbox/")).text()

    assert page.index(urgent.case_id) < page.index(busy.case_id)
    row = _row(page, urgent.case_id)
    assert 'data-urgent="1"' in row
    assert "Akut: vold, fortæller om vold eller overgreb" in html.unescape(row)
    due = (await _state(inbox, urgent.case_id)).timer_due_at
    assert due is not None
    local = due.astimezone(LOCAL_ZONE).strftime("%d.%m.%Y %H:%M")
    assert f"Svar senest {local}" in row
    calm = _row(page, busy.case_id)
    assert 'data-urgent="0"' in calm and "Svar senest" not in calm
    assert re.search(r'data-role="urgent" hidden>', calm)


async def test_acknowledging_is_audited_and_stops_the_on_call_escalation(
    inbox: InboxHarness,
) -> None:
    await inbox.caseworker("anna")
    seen = await inbox.case("anna", ref="S-1")
    unseen = await inbox.case("anna", ref="S-2")
    await inbox.child_writes(seen, DISCLOSURE)
    await inbox.child_writes(unseen, DISCLOSURE)
    client = await inbox.logged_in("anna")
    csrf = await inbox.session_csrf(client)

    page = await (await client.get(f"/inbox/cases/{seen.case_id}")).text()
    assert f'action="/inbox/cases/{seen.case_id}/acknowledge"' in page
    assert "Kvittér" in page and "svar senest" in page and "vold" in page
    response = await client.post(
        f"/inbox/cases/{seen.case_id}/acknowledge",
        data={"csrf_token": csrf},
        allow_redirects=False,
    )

    assert response.status == 303
    assert response.headers["Location"].startswith(f"/inbox/cases/{seen.case_id}?done=")
    assert (await _state(inbox, seen.case_id)).acknowledged_at is not None
    assert (await _state(inbox, unseen.case_id)).acknowledged_at is None
    anna = await _worker_id(inbox, "anna")
    async with inbox.db.read() as session:
        acks = (
            await session.exec(select(AuditEvent).where(AuditEvent.action == "urgent.acknowledge"))
        ).all()
    assert [(e.actor, e.case_id) for e in acks] == [(anna, seen.case_id)]
    after = await (await client.get(f"/inbox/cases/{seen.case_id}")).text()
    assert "/acknowledge" not in after
    assert "Du har kvitteret" in await (await client.get(response.headers["Location"])).text()

    # The on-call escalation falls due: only the case nobody acknowledged is escalated.
    async with inbox.db.write() as session:
        await session.execute(
            update(Outbox)
            .where(col(Outbox.kind) == "escalate")
            .values(next_attempt_at=utcnow() - dt.timedelta(minutes=1))
        )
    await inbox.app[appkeys.OUTBOX].run_once()
    assert (await _state(inbox, seen.case_id)).escalated_at is None
    assert (await _state(inbox, unseen.case_id)).escalated_at is not None
    async with inbox.db.read() as session:
        jobs = (await session.exec(select(Outbox).where(Outbox.kind == "escalate"))).all()
    assert {job.status for job in jobs} == {"done"}


async def test_acknowledging_updates_open_pages(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    await inbox.child_writes(case, DISCLOSURE)
    page_tab = await inbox.logged_in("anna")
    queue_tab = await inbox.logged_in("anna")
    conversation = await page_tab.ws_connect("/inbox/ws")
    await conversation.send_json({"type": "watch", "case_id": case.case_id})
    while (await conversation.receive_json(timeout=5))["type"] != "watching":
        pass
    queue = await queue_tab.ws_connect("/inbox/ws")
    await queue.send_json({"type": "watch_queue"})
    assert await queue.receive_json(timeout=5) == {"type": "watching_queue"}
    csrf = await inbox.session_csrf(page_tab)

    await page_tab.post(f"/inbox/cases/{case.case_id}/acknowledge", data={"csrf_token": csrf})

    assert await conversation.receive_json(timeout=5) == {
        "type": "flag",
        "case_id": case.case_id,
        "flagged": False,
    }
    changed = await queue.receive_json(timeout=5)
    # Acknowledged, but the 24-hour timer of the disclosure still keeps the case on top.
    assert (changed["type"], changed["case_id"], changed["urgent"]) == (
        "queue_changed",
        case.case_id,
        True,
    )
    assert changed["urgent_label"] == "Akut: fortæller om vold eller overgreb"
    await conversation.close()
    await queue.close()


async def test_another_caseworker_cannot_acknowledge(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.caseworker("bo")
    case = await inbox.case("anna", ref="S-1")
    await inbox.child_writes(case, DISCLOSURE)
    bo = await inbox.logged_in("bo")
    csrf = await inbox.session_csrf(bo)

    theirs = await bo.post(f"/inbox/cases/{case.case_id}/acknowledge", data={"csrf_token": csrf})
    missing = await bo.post("/inbox/cases/nope/acknowledge", data={"csrf_token": csrf})

    assert (theirs.status, missing.status) == (403, 404)
    assert (await _state(inbox, case.case_id)).acknowledged_at is None
    async with inbox.db.read() as session:
        events = (
            await session.exec(select(AuditEvent).where(col(AuditEvent.case_id).is_not(None)))
        ).all()
    assert [e.action for e in events] == ["case.access_refused"]


@pytest.mark.parametrize(
    "action",
    [
        "acknowledge",
        "checkins/send",
        "checkins/schedule",
        "checkins/rating",
        "words-used",
        "invite",
    ],
)
async def test_every_action_needs_the_csrf_token(inbox: InboxHarness, action: str) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    await inbox.child_writes(case, DISCLOSURE)
    client = await inbox.logged_in("anna")
    before = len(await inbox.messages(case.case_id))
    form = {
        "instrument_id": "wellbeing",
        "plan": "every",
        "every_days": "7",
        "item.me": "5",
        "summary": "Vi har talt med skolen.",
        "channels": "webchat",
    }

    missing = await client.post(f"/inbox/cases/{case.case_id}/{action}", data=form)
    wrong = await client.post(
        f"/inbox/cases/{case.case_id}/{action}", data={**form, "csrf_token": "x" * 43}
    )

    assert missing.status == wrong.status == 403
    assert len(await inbox.messages(case.case_id)) == before
    assert (await _state(inbox, case.case_id)).acknowledged_at is None
    async with inbox.db.read() as session:
        assert (await session.exec(select(Schedule))).all() == []
        assert (await session.exec(select(Checkin))).all() == []
        assert (await session.exec(select(AuditEvent))).all() == []


# -- check-ins ---------------------------------------------------------------------------------


async def test_send_now_asks_the_child_the_first_question(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    await _no_quiet_hours(inbox, case.case_id)
    client = await inbox.logged_in("anna")
    csrf = await inbox.session_csrf(client)

    response = await client.post(
        f"/inbox/cases/{case.case_id}/checkins/send",
        data={"csrf_token": csrf, "instrument_id": "wellbeing"},
        allow_redirects=False,
    )

    assert response.status == 303
    assert "done=checkin_sent" in response.headers["Location"]
    bot_lines = [text for m, text in await _texts(inbox, case.case_id) if m.author == "bot"]
    assert any("Hvordan har du det med dig selv for tiden?" in t for t in bot_lines)
    async with inbox.db.read() as session:
        [running] = (await session.exec(select(Checkin))).all()
    assert (running.instrument_id, running.status, running.rater) == (
        "wellbeing",
        "asking",
        "child",
    )


async def test_send_now_without_a_consented_channel_is_refused(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1", consented=False)
    client = await inbox.logged_in("anna")
    csrf = await inbox.session_csrf(client)

    response = await client.post(
        f"/inbox/cases/{case.case_id}/checkins/send",
        data={"csrf_token": csrf, "instrument_id": "wellbeing"},
    )

    assert response.status == 409
    assert "ikke har sagt ja til nogen kanal" in await response.text()
    assert await inbox.messages(case.case_id) == []
    async with inbox.db.read() as session:
        assert (await session.exec(select(Schedule))).all() == []


async def test_planning_every_n_days_and_before_a_meeting(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    client = await inbox.logged_in("anna")
    csrf = await inbox.session_csrf(client)
    url = f"/inbox/cases/{case.case_id}/checkins/schedule"
    meeting_day = (utcnow() + dt.timedelta(days=10)).astimezone(LOCAL_ZONE).date()

    every = await client.post(
        url,
        data={
            "csrf_token": csrf,
            "instrument_id": "participation",
            "plan": "every",
            "every_days": "7",
        },
        allow_redirects=False,
    )
    meeting = await client.post(
        url,
        data={
            "csrf_token": csrf,
            "instrument_id": "meeting_feedback",
            "plan": "meeting",
            "meeting_date": meeting_day.isoformat(),
            "meeting_time": "10:30",
        },
        allow_redirects=False,
    )
    bad = await client.post(
        url,
        data={
            "csrf_token": csrf,
            "instrument_id": "wellbeing",
            "plan": "every",
            "every_days": "0",
        },
    )

    assert every.status == meeting.status == 303
    assert bad.status == 400
    assert "mellem 1 og 365" in await bad.text()
    anna = await _worker_id(inbox, "anna")
    async with inbox.db.read() as session:
        rows = (await session.exec(select(Schedule).order_by(col(Schedule.created_at)))).all()
    assert [(r.instrument_id, r.every_days, r.active, r.created_by) for r in rows] == [
        ("participation", 7, True, anna),
        ("meeting_feedback", None, True, anna),
    ]
    expected = dt.datetime.combine(meeting_day, dt.time(10, 30), tzinfo=LOCAL_ZONE)
    assert rows[1].meeting_at == expected.astimezone(dt.UTC)
    page = _words(await (await client.get(f"/inbox/cases/{case.case_id}")).text())
    assert "Blev jeg hørt? · hver 7. dag · Næste:" in page
    assert f"Hvordan var mødet? · dagen før mødet {meeting_day:%d.%m.%Y} 10:30" in page


async def _answer_wellbeing(inbox: InboxHarness, case: NewCase, answers: list[str]) -> None:
    for answer in answers:
        await inbox.child_writes(case, answer)


async def test_results_falls_and_parallel_rating_side_by_side(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    await _no_quiet_hours(inbox, case.case_id)
    client = await inbox.logged_in("anna")
    csrf = await inbox.session_csrf(client)
    send = f"/inbox/cases/{case.case_id}/checkins/send"
    form = {"csrf_token": csrf, "instrument_id": "wellbeing"}

    assert (await client.post(send, data=form, allow_redirects=False)).status == 303
    await _answer_wellbeing(inbox, case, ["8", "8", "8", "8", "nej"])
    assert (await client.post(send, data=form, allow_redirects=False)).status == 303
    await _answer_wellbeing(inbox, case, ["5", "spring over", "8", "9", "Jeg savner min hund"])
    rating = await client.post(
        f"/inbox/cases/{case.case_id}/checkins/rating",
        data={
            "csrf_token": csrf,
            "instrument_id": "wellbeing",
            "item.me": "4",
            "item.home": "",
            "item.school_friends": "7",
            "item.overall": "6",
        },
        allow_redirects=False,
    )
    off_scale = await client.post(
        f"/inbox/cases/{case.case_id}/checkins/rating",
        data={"csrf_token": csrf, "instrument_id": "wellbeing", "item.me": "11"},
    )

    assert rating.status == 303 and off_scale.status == 400
    async with inbox.db.read() as session:
        rows = (await session.exec(select(Checkin).order_by(col(Checkin.started_at)))).all()
    assert [(r.rater, r.status) for r in rows] == [
        ("child", "completed"),
        ("child", "completed"),
        ("caseworker", "completed"),
    ]
    assert rows[1].flagged
    async with inbox.db.read() as session:
        key = await inbox.keys.case_key(session, case.case_id)
        [(_, mine)] = await inbox.app[appkeys.CHECKINS].results(
            session, key, case.case_id, rater="caseworker"
        )
    assert mine["answers"] == {"me": 4, "home": None, "school_friends": 7, "overall": 6}

    page = html.unescape(await (await client.get(f"/inbox/cases/{case.case_id}")).text())
    newest = page[page.index('<article class="result result-fall"') :]
    newest = _words(newest[: newest.index("</article>")])
    assert "Fald på 2 eller mere siden sidst: Hvordan har du det med dig selv for tiden?" in newest
    assert "5 af 10" in newest and "sprunget over" in newest
    assert "Rådgiverens vurdering" in newest and "4 af 10" in newest  # the rating beside it
    assert "Jeg savner min hund" in newest  # the child's own words
    assert "Score 7,33" in newest  # mean of 5, 8 and 9; the skipped item does not count
    assert page.count('class="result result-fall"') == 1


# -- "Dine ord blev brugt" ---------------------------------------------------------------------


async def test_words_used_tells_the_child_once_and_records_it(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    await inbox.child_writes(case, "jeg vil gerne have flere pauser i skolen")
    client = await inbox.logged_in("anna")
    csrf = await inbox.session_csrf(client)
    summary = "Vi har talt med din skole, og du får en pause hver time."

    response = await client.post(
        f"/inbox/cases/{case.case_id}/words-used",
        data={"csrf_token": csrf, "summary": summary},
        allow_redirects=False,
    )
    empty = await client.post(
        f"/inbox/cases/{case.case_id}/words-used", data={"csrf_token": csrf, "summary": "  "}
    )

    assert response.status == 303 and empty.status == 400
    sent = [(m, t) for m, t in await _texts(inbox, case.case_id) if m.direction == "out"]
    assert len(sent) == 1
    message, text = sent[0]
    assert (message.author, message.channel, message.delivery_state) == (
        "bot",
        "webchat",
        "queued",
    )
    assert summary in text and text.startswith("Anna ")  # the caseworker's first name
    async with inbox.db.read() as session:
        events = (
            await session.exec(select(ConsentEvent).where(ConsentEvent.kind == "words_used"))
        ).all()
        entries = (
            await session.exec(
                select(ParticipationEntry).where(ParticipationEntry.kind == "words_used")
            )
        ).all()
    assert [(e.actor, e.case_id, e.channel) for e in events] == [
        ("caseworker", case.case_id, "webchat")
    ]
    assert json.loads(events[0].detail) == {"message_id": message.id}  # no words in the ledger
    assert len(entries) == 1


async def test_words_used_without_a_consented_channel_sends_nothing(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1", consented=False)
    client = await inbox.logged_in("anna")
    csrf = await inbox.session_csrf(client)

    response = await client.post(
        f"/inbox/cases/{case.case_id}/words-used",
        data={"csrf_token": csrf, "summary": "Vi holder møde i næste uge."},
    )

    assert response.status == 409
    assert "Vi holder møde i næste uge." in await response.text()  # the draft is kept
    assert await inbox.messages(case.case_id) == []


# -- invitations and channels ----------------------------------------------------------------


async def test_invitation_shows_a_working_code_once_with_qr(
    inbox: InboxHarness, caplog: pytest.LogCaptureFixture
) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    client = await inbox.logged_in("anna")
    csrf = await inbox.session_csrf(client)
    caplog.set_level(logging.DEBUG)

    response = await client.post(
        f"/inbox/cases/{case.case_id}/invite",
        data=[("csrf_token", csrf), ("channels", "sms"), ("channels", "webchat")],
        allow_redirects=False,
    )

    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    page = await response.text()
    match = CODE.search(page)
    assert match is not None
    code = match.group(1)
    assert "<svg" in page and 'class="qr"' in page
    assert 'download="stemme-link.png"' in page and "data:image/png;base64," in page
    assert "+447700900001" in page  # the demo's (sandbox) SMS number
    assert inbox.settings.public_url("/c/") in page
    assert code not in caplog.text
    async with inbox.db.read() as session:
        audits = (await session.exec(select(AuditEvent))).all()
    assert [a.action for a in audits if a.action != "transcript.read"] == ["invitation.create"]
    assert code not in "".join(a.detail for a in audits)

    before = len(await _identities(inbox, case.case_id))
    await _inbound(inbox, "sms", "+4520304050", code.lower().replace("-", " "), 1)
    identities = await _identities(inbox, case.case_id)
    assert len(identities) == before + 1
    assert [i.channel for i in identities].count("sms") == 1
    # The channels section shows it: SMS, no yes yet, switched on here.
    conversation = await (await client.get(f"/inbox/cases/{case.case_id}")).text()
    sms_row = re.search(r'<tr data-channel="sms"[^>]*>.*?</tr>', conversation, re.S)
    assert sms_row is not None
    assert "SMS" in sms_row[0] and "Slået til" in sms_row[0]
    assert "har ikke sagt ja endnu" in sms_row[0]


async def test_invitation_refuses_a_channel_that_is_not_offered(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    client = await inbox.logged_in("anna")
    csrf = await inbox.session_csrf(client)

    none = await client.post(f"/inbox/cases/{case.case_id}/invite", data={"csrf_token": csrf})
    foreign = await client.post(
        f"/inbox/cases/{case.case_id}/invite",
        data=[("csrf_token", csrf), ("channels", "webchat"), ("channels", "whatsapp")],
    )

    assert none.status == foreign.status == 400
    assert CODE.search(await foreign.text()) is None
    async with inbox.db.read() as session:
        assert [a.action for a in (await session.exec(select(AuditEvent))).all()] == [
            "transcript.read",
            "transcript.read",
        ]


async def test_channels_show_consent_status_reason_and_delivery_reasons(
    inbox: InboxHarness,
) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    code = await _invite(inbox, case.case_id, "sms")
    await _inbound(inbox, "sms", "+4520304050", code, 1)
    await _inbound(inbox, "sms", "+4520304050", "ja", 2)
    reason = "Barnets telefon afviser beskeder fra os."
    async with inbox.db.write() as session:
        await session.execute(
            update(ChannelIdentity)
            .where(col(ChannelIdentity.channel) == "sms")
            .values(status="opted_out", status_reason=reason)
        )
        await session.execute(
            update(Message)
            .where(col(Message.case_id) == case.case_id, col(Message.direction) == "out")
            .values(delivery_state="failed", delivery_reason="Nummeret findes ikke.")
        )
    client = await inbox.logged_in("anna")

    page = html.unescape(await (await client.get(f"/inbox/cases/{case.case_id}")).text())

    sms = re.search(r'<tr data-channel="sms"[^>]*>.*?</tr>', page, re.S)
    webchat = re.search(r'<tr data-channel="webchat"[^>]*>.*?</tr>', page, re.S)
    assert sms is not None and webchat is not None
    assert "Sagde ja" in sms[0] and "Afmeldt" in sms[0] and reason in sms[0]
    assert "Webchat" in webchat[0] and "Aktiv" in webchat[0] and "Slået til" in webchat[0]
    assert "Ikke leveret: Nummeret findes ikke." in page


# -- replies and the Messenger window ----------------------------------------------------------


async def _messenger_child(inbox: InboxHarness, case_id: str, *, hours_ago: float) -> str:
    """The child enrolled on Messenger and said yes there, ``hours_ago`` hours ago."""
    code = await _invite(inbox, case_id, "messenger")
    await _inbound(inbox, "messenger", "7000000000001", code, 1)
    await _inbound(inbox, "messenger", "7000000000001", "ja", 2)
    [identity] = [i for i in await _identities(inbox, case_id) if i.channel == "messenger"]
    async with inbox.db.write() as session:
        # Message.created_at is the router's clock; move the child's Messenger messages back.
        await session.execute(
            update(Message)
            .where(
                col(Message.identity_id) == identity.id,
                col(Message.direction) == Direction.INBOUND.value,
            )
            .values(created_at=utcnow() - dt.timedelta(hours=hours_ago))
        )
    return identity.id


async def test_closed_messenger_window_explains_and_offers_web_chat(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    await _messenger_child(inbox, case.case_id, hours_ago=25)
    [webchat] = [i for i in await _identities(inbox, case.case_id) if i.channel == "webchat"]
    client = await inbox.logged_in("anna")
    csrf = await inbox.session_csrf(client)
    url = f"/inbox/cases/{case.case_id}/reply"
    before = len(await inbox.messages(case.case_id))

    refused = await client.post(url, data={"csrf_token": csrf, "text": "Hej <Mika>"})
    as_json = await client.post(
        url, data={"csrf_token": csrf, "text": "Hej"}, headers={"Accept": "application/json"}
    )

    assert refused.status == as_json.status == 409
    page = await refused.text()
    assert (
        "Barnet har ikke skrevet på Messenger i over 24 timer, "
        "så Messenger tillader ikke et svar nu" in page
    )
    assert ">Hej &lt;Mika&gt;</textarea>" in page  # the draft is kept (and escaped)
    select_box = re.search(
        r'<select id="reply-channel" name="identity_id">(.*?)</select>', page, re.S
    )
    assert select_box is not None
    assert re.findall(r'value="([^"]*)"', select_box[1]) == [webchat.id]
    body = await as_json.json()
    assert body["error"] == "window_closed"
    assert body["alternatives"] == [{"identity_id": webchat.id, "label": "Webchat"}]
    assert len(await inbox.messages(case.case_id)) == before  # nothing stored

    sent = await client.post(
        url,
        data={"csrf_token": csrf, "text": "Hej via webchat", "identity_id": webchat.id},
        allow_redirects=False,
    )

    assert sent.status == 303
    last, text = (await _texts(inbox, case.case_id))[-1]
    assert (last.author, last.channel, text) == ("caseworker", "webchat", "Hej via webchat")


async def test_reply_channel_choice_and_someone_elses_identity(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    mine = await inbox.case("anna", ref="S-1")
    other = await inbox.case("anna", ref="S-2")
    messenger = await _messenger_child(inbox, mine.case_id, hours_ago=1)
    [foreign] = await _identities(inbox, other.case_id)
    client = await inbox.logged_in("anna")
    csrf = await inbox.session_csrf(client)
    url = f"/inbox/cases/{mine.case_id}/reply"

    page = await (await client.get(f"/inbox/cases/{mine.case_id}")).text()
    wrong = await client.post(
        url, data={"csrf_token": csrf, "text": "Hej", "identity_id": foreign.id}
    )
    open_window = await client.post(
        url, data={"csrf_token": csrf, "text": "Hej på Messenger"}, allow_redirects=False
    )

    assert '<option value="">Barnets seneste kanal (Messenger)</option>' in page
    assert f'<option value="{messenger}">Messenger</option>' in page
    assert wrong.status == 400
    assert "Vælg en af barnets aktive kanaler." in await wrong.text()
    assert open_window.status == 303
    last, text = (await _texts(inbox, mine.case_id))[-1]
    assert (last.author, last.channel, text) == ("caseworker", "messenger", "Hej på Messenger")
    assert [m for m in await inbox.messages(other.case_id) if m.direction == "out"] == []


# -- languages ---------------------------------------------------------------------------------


async def test_pages_in_english(inbox: InboxHarness) -> None:
    await inbox.caseworker("emma", language="en")
    case = await inbox.case("emma", ref="S-1")
    await inbox.child_writes(case, DISCLOSURE)
    client = await inbox.logged_in("emma")
    csrf = await inbox.session_csrf(client)

    queue = html.unescape(await (await client.get("/inbox/")).text())
    page = html.unescape(await (await client.get(f"/inbox/cases/{case.case_id}")).text())
    invitation = await client.post(
        f"/inbox/cases/{case.case_id}/invite", data={"csrf_token": csrf, "channels": "webchat"}
    )

    assert "Urgent: violence, tells about violence or abuse" in queue
    for text in (
        "Acknowledge",
        "Legal deadline",
        "answer by",
        "The child's channels",
        "Said yes on",
        "Check-ins",
        "Send now",
        "Your parallel rating",
        "Your words were used",
        "Invite the child",
    ):
        assert text in page, text
    assert "Kvittér" not in page
    assert invitation.status == 200
    assert "The child's code" in html.unescape(await invitation.text())
