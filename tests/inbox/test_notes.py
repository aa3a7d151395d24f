"""The conversation's tools: internal notes, the reply box's aids, pausing a channel, ticks.

Every test runs on SQLite and on PostgreSQL (the ``inbox`` fixture).
"""

from __future__ import annotations

import re

from sqlalchemy import func
from sqlmodel import col, select

from bot import appkeys
from bot.outbox import PAUSED_REASON
from bot.storage.models import (
    AuditEvent,
    CaseNote,
    Caseworker,
    ChannelIdentity,
    Message,
    Outbox,
    ParticipationEntry,
)
from tests.inbox.conftest import InboxHarness
from tests.inbox.test_queue import add_identity

NOTE = 'Mor ringede i går <b>vred</b> & "bekymret"'
SMS = "+447700900555"  # Ofcom's drama range: not a real number


def _section(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}".*?</section>', page, re.S)
    assert match is not None, section_id
    return match.group(0)


def _transcript(page: str) -> str:
    match = re.search(r'<ol id="transcript".*?</ol>', page, re.S)
    assert match is not None
    return match.group(0)


async def _counts(inbox: InboxHarness, case_id: str) -> tuple[int, int, int]:
    async with inbox.db.read() as session:
        counts = []
        for table in (Message, ParticipationEntry, Outbox):
            query = select(func.count()).select_from(table).where(table.case_id == case_id)
            counts.append(int((await session.exec(query)).one()))
    return counts[0], counts[1], counts[2]


async def test_a_note_is_encrypted_audited_shown_apart_and_never_reaches_the_child(
    inbox: InboxHarness,
) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="N-1")
    await inbox.child_writes(case, "hej")
    client = await inbox.logged_in("anna")
    token = await inbox.session_csrf(client)
    before = await _counts(inbox, case.case_id)

    response = await client.post(
        f"/inbox/cases/{case.case_id}/notes",
        data={"csrf_token": token, "text": NOTE},
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.headers["Location"] == f"/inbox/cases/{case.case_id}?done=note_added#notes"

    page = await (await client.get(response.headers["Location"])).text()
    notes = _section(page, "notes")
    escaped = "Mor ringede i går &lt;b&gt;vred&lt;/b&gt; &amp; &#34;bekymret&#34;"
    assert escaped in notes and 'class="note"' in notes and "Intern note" in notes
    assert "<b>vred</b>" not in page
    assert "vred" not in _transcript(page)  # not a message
    assert "Noten er gemt. Den sendes ikke til barnet." in page
    # No message, no participation entry, nothing queued for any channel.
    assert await _counts(inbox, case.case_id) == before
    async with inbox.db.read() as session:
        [note] = (await session.exec(select(CaseNote))).all()
        events = (
            await session.exec(select(AuditEvent).where(AuditEvent.action == "note.add"))
        ).all()
    assert note.case_id == case.case_id
    assert b"vred" not in note.body_enc and "vred".encode("utf-16-le") not in note.body_enc
    [added] = events
    assert added.case_id == case.case_id and "vred" not in added.detail
    # The child's web chat page has nothing of it either.
    chat = await inbox.client().get(f"/c/{case.webchat_token}")
    assert "vred" not in await chat.text()


async def test_an_empty_or_too_long_note_is_refused_and_the_draft_kept(
    inbox: InboxHarness,
) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="N-2")
    client = await inbox.logged_in("anna")
    token = await inbox.session_csrf(client)
    path = f"/inbox/cases/{case.case_id}/notes"

    empty = await client.post(path, data={"csrf_token": token, "text": "   "})
    assert empty.status == 400
    assert "Skriv noten, før du gemmer." in await empty.text()
    long = "x" * 4001
    too_long = await client.post(path, data={"csrf_token": token, "text": long})
    assert too_long.status == 400
    body = await too_long.text()
    assert "Noten er for lang" in body and long in body
    async with inbox.db.read() as session:
        assert (await session.exec(select(CaseNote))).all() == []


async def test_notes_on_another_caseworkers_case_are_refused(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.caseworker("bent")
    case = await inbox.case("anna", ref="N-3")
    bent = await inbox.logged_in("bent")
    token = await inbox.session_csrf(bent)
    response = await bent.post(
        f"/inbox/cases/{case.case_id}/notes",
        data={"csrf_token": token, "text": "min note"},
        allow_redirects=False,
    )
    assert response.status in (403, 404)
    async with inbox.db.read() as session:
        assert (await session.exec(select(CaseNote))).all() == []


async def test_the_reply_box_warns_per_channel_and_offers_canned_replies(
    inbox: InboxHarness,
) -> None:
    await inbox.caseworker("anna")
    with_sms = await inbox.case("anna", ref="N-4")  # born 2012: 13-17 band
    sms_id = await add_identity(inbox, with_sms.case_id, SMS, channel="sms")
    webchat_only = await inbox.case("anna", ref="N-5")
    client = await inbox.logged_in("anna")

    page = await (await client.get(f"/inbox/cases/{with_sms.case_id}")).text()
    reply = _section(page, "reply")
    assert "SMS er ikke til fortrolige oplysninger – send som sikkert link." in reply
    assert f'data-identity="{sms_id}"' in reply
    assert 'name="secure" value="1"' in reply and "Send som sikkert link" in reply
    assert "Standardsvar til 13–17 år" in reply
    assert "Du kan altid tage en bisidder med" in reply  # the 13-17 band's own text
    assert 'class="button-quiet canned-insert"' in reply and "data-text=" in reply
    # Inserting is done by the page's script file: no inline script, no inline handler.
    for tag in re.findall(r"<script[^>]*>", page):
        assert "src=" in tag and "nonce=" in tag
    assert not re.search(r"\son[a-z]+=", page)

    plain = _section(
        await (await client.get(f"/inbox/cases/{webchat_only.case_id}")).text(), "reply"
    )
    assert "SMS er ikke" not in plain and 'name="secure"' not in plain


async def test_pausing_a_channel_stops_replies_on_it_until_resumed(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="N-6")
    other = await inbox.case("anna", ref="N-7")
    sms_id = await add_identity(inbox, case.case_id, SMS, channel="sms")
    other_sms = await add_identity(inbox, other.case_id, "+447700900556", channel="sms")
    client = await inbox.logged_in("anna")
    token = await inbox.session_csrf(client)
    # A reply queued for SMS before the pause.
    anna_id = await _caseworker_id(inbox, "anna")
    queued = await inbox.router.reply(
        case_id=case.case_id, caseworker_id=anna_id, text="vi ses", identity_id=sms_id
    )

    base = f"/inbox/cases/{case.case_id}/channels"
    paused = await client.post(
        f"{base}/{sms_id}/pause", data={"csrf_token": token}, allow_redirects=False
    )
    assert paused.status == 303
    async with inbox.db.read() as session:
        identity = await session.get(ChannelIdentity, sms_id)
    assert identity is not None and identity.status == "paused"

    # The outbox does not send what was queued; the reason is in plain words.
    await inbox.app[appkeys.OUTBOX].run_once()
    async with inbox.db.read() as session:
        message = await session.get(Message, queued.message_id)
    assert message is not None and message.delivery_state == "failed"
    assert message.delivery_reason == PAUSED_REASON
    page = await (await client.get(f"/inbox/cases/{case.case_id}")).text()
    assert f"Ikke leveret: {PAUSED_REASON}" in page
    assert f"/channels/{sms_id}/resume" in page
    # A new reply cannot choose the paused channel.
    refused = await client.post(
        f"/inbox/cases/{case.case_id}/reply",
        data={"csrf_token": token, "text": "hej", "identity_id": sms_id},
    )
    assert refused.status == 400

    # Someone else's channel through this case's URL: not found. The web chat: not pausable.
    foreign = await client.post(
        f"{base}/{other_sms}/pause", data={"csrf_token": token}, allow_redirects=False
    )
    assert foreign.status == 404
    webchat_id = await _identity(inbox, case.case_id, "webchat")
    webchat = await client.post(f"{base}/{webchat_id}/pause", data={"csrf_token": token})
    assert webchat.status == 409
    assert "Webchatten kan ikke sættes på pause" in await webchat.text()

    resumed = await client.post(
        f"{base}/{sms_id}/resume", data={"csrf_token": token}, allow_redirects=False
    )
    assert resumed.status == 303
    async with inbox.db.read() as session:
        identity = await session.get(ChannelIdentity, sms_id)
        actions = (
            await session.exec(
                select(AuditEvent.action)
                .where(AuditEvent.case_id == case.case_id)
                .order_by(col(AuditEvent.seq))
            )
        ).all()
    assert identity is not None and identity.status == "active"
    assert [a for a in actions if a.startswith("channel.")] == [
        "channel.paused",
        "channel.resumed",
    ]
    again = await client.post(
        f"/inbox/cases/{case.case_id}/reply",
        data={"csrf_token": token, "text": "hej igen", "identity_id": sms_id},
        allow_redirects=False,
    )
    assert again.status == 303


async def test_pausing_another_caseworkers_channel_is_refused(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.caseworker("bent")
    case = await inbox.case("anna", ref="N-8")
    sms_id = await add_identity(inbox, case.case_id, SMS, channel="sms")
    bent = await inbox.logged_in("bent")
    token = await inbox.session_csrf(bent)
    response = await bent.post(
        f"/inbox/cases/{case.case_id}/channels/{sms_id}/pause",
        data={"csrf_token": token},
        allow_redirects=False,
    )
    assert response.status in (403, 404)
    async with inbox.db.read() as session:
        identity = await session.get(ChannelIdentity, sms_id)
    assert identity is not None and identity.status == "active"


async def test_every_outbound_message_shows_its_delivery_state(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="N-9", consented=False)  # the bot sends the notice
    await inbox.child_writes(case, "hej")
    anna_id = await _caseworker_id(inbox, "anna")
    await inbox.router.reply(case_id=case.case_id, caseworker_id=anna_id, text="hej med dig")
    client = await inbox.logged_in("anna")
    page = await (await client.get(f"/inbox/cases/{case.case_id}")).text()
    items = re.findall(r'<li class="msg msg-out.*?</li>', _transcript(page), re.S)
    assert len(items) >= 2  # the bot's and the caseworker's
    for item in items:
        assert re.search(r'class="msg-state state-[a-z]+" data-role="state">[^<]+<', item), item


async def _caseworker_id(inbox: InboxHarness, username: str) -> str:
    async with inbox.db.read() as session:
        found = (
            await session.exec(select(Caseworker.id).where(Caseworker.username == username))
        ).first()
    assert found is not None
    return found


async def _identity(inbox: InboxHarness, case_id: str, channel: str) -> str:
    async with inbox.db.read() as session:
        found = (
            await session.exec(
                select(ChannelIdentity.id).where(
                    ChannelIdentity.case_id == case_id, ChannelIdentity.channel == channel
                )
            )
        ).first()
    assert found is not None
    return found
