"""The queue, a conversation and replying: ownership, escaping, audit, CSRF, CSP."""

from __future__ import annotations

import re

from sqlalchemy import update
from sqlmodel import col, select

from bot.router import BODY, MESSAGE_TABLE
from bot.storage.models import AuditEvent, ChannelIdentity, Message, Outbox
from tests.inbox.conftest import InboxHarness, csrf_from

XSS = "<script>alert(1)</script> og <img src=x onerror=alert(1)>"


def _row(page: str, case_id: str) -> str:
    match = re.search(rf'<tr data-case-id="{case_id}"[^>]*>.*?</tr>', page, re.S)
    assert match is not None
    return match.group(0)


async def _outbound(inbox: InboxHarness, case_id: str) -> list[Message]:
    return [m for m in await inbox.messages(case_id) if m.direction == "out"]


async def _outbox_jobs(inbox: InboxHarness) -> int:
    async with inbox.db.read() as session:
        return len((await session.exec(select(Outbox).where(Outbox.kind == "deliver"))).all())


async def test_queue_shows_only_my_cases_with_unread_counts(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.caseworker("bo")
    quiet = await inbox.case("anna", ref="S-1", child="Ali")
    busy = await inbox.case("anna", ref="S-2", child="Sofie")
    other = await inbox.case("bo", ref="S-3", child="Noah")
    await inbox.child_writes(busy, "hej")
    await inbox.child_writes(busy, "er du der?")
    await inbox.child_writes(other, "hemmeligt")
    client = await inbox.logged_in("anna")

    page = await (await client.get("/inbox/")).text()

    assert 'data-unread="2"' in _row(page, busy.case_id)
    assert "2 ulæste" in _row(page, busy.case_id)
    assert 'data-unread="0"' in _row(page, quiet.case_id)
    assert page.index(busy.case_id) < page.index(quiet.case_id)  # unread first
    assert "Sofie" in page and "Ali" in page
    assert other.case_id not in page and "Noah" not in page and "S-3" not in page


async def test_opening_a_conversation_marks_it_read_and_audits(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    await inbox.child_writes(case, "hej")
    client = await inbox.logged_in("anna")

    first = await client.get(f"/inbox/cases/{case.case_id}")
    second = await client.get(f"/inbox/cases/{case.case_id}")

    assert first.status == second.status == 200
    assert first.headers["Cache-Control"] == "no-store"
    async with inbox.db.read() as session:
        events = (await session.exec(select(AuditEvent).order_by(col(AuditEvent.seq)))).all()
    assert [(e.action, e.case_id, e.detail) for e in events] == [
        ("transcript.read", case.case_id, "{}")
    ] * 2
    [message] = await inbox.messages(case.case_id)
    assert message.read_at is not None
    queue = await (await client.get("/inbox/")).text()
    assert 'data-unread="0"' in _row(queue, case.case_id)


async def test_another_caseworker_gets_403_and_the_attempt_is_audited(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.caseworker("bo")
    case = await inbox.case("anna", ref="S-1")
    await inbox.child_writes(case, "hej")
    bo = await inbox.logged_in("bo")
    csrf = await inbox.session_csrf(bo)

    page = await bo.get(f"/inbox/cases/{case.case_id}")
    missing = await bo.get("/inbox/cases/does-not-exist")
    reply = await bo.post(
        f"/inbox/cases/{case.case_id}/reply", data={"text": "hej", "csrf_token": csrf}
    )

    # Unknown: 404. Someone else's: 403 and an audit event per attempt (bot.inbox.access).
    assert missing.status == 404
    assert page.status == reply.status == 403
    assert "hej" not in await page.text()
    async with inbox.db.read() as session:
        events = (
            await session.exec(select(AuditEvent).where(col(AuditEvent.case_id).is_not(None)))
        ).all()
    assert [(e.action, e.case_id) for e in events] == [
        ("case.access_refused", case.case_id),
        ("case.access_refused", case.case_id),
    ]
    [message] = await inbox.messages(case.case_id)
    assert message.read_at is None
    assert await _outbound(inbox, case.case_id) == []


async def test_child_text_is_escaped_never_raw(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1", child="<b>Mika</b>")
    await inbox.child_writes(case, XSS)
    client = await inbox.logged_in("anna")

    conversation = await (await client.get(f"/inbox/cases/{case.case_id}")).text()
    queue = await (await client.get("/inbox/")).text()

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in conversation
    assert "&lt;img src=x onerror=alert(1)&gt;" in conversation
    for page in (conversation, queue):
        assert "<script>alert(1)" not in page
        assert "<img src=x" not in page
        assert "<b>Mika</b>" not in page
        assert "&lt;b&gt;Mika&lt;/b&gt;" in page


async def test_csp_nonce_matches_every_script_and_allows_no_inline(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    client = await inbox.logged_in("anna")

    for path in ("/inbox/", f"/inbox/cases/{case.case_id}"):
        response = await client.get(path)
        policy = response.headers["Content-Security-Policy"]
        page = await response.text()
        [nonce] = re.findall(r"script-src 'nonce-([^']+)'", policy)
        scripts = re.findall(r"<script\b[^>]*>", page)
        assert scripts, path
        assert all(f'nonce="{nonce}"' in tag and "src=" in tag for tag in scripts)
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert re.search(r"\son[a-z]+=", page) is None  # no inline event handlers
    again = await client.get("/inbox/")
    assert again.headers["Content-Security-Policy"] != policy  # a fresh nonce per response


async def test_reply_is_stored_encrypted_and_redirects_back(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    await inbox.child_writes(case, "hej")
    client = await inbox.logged_in("anna")
    csrf = await inbox.session_csrf(client)

    response = await client.post(
        f"/inbox/cases/{case.case_id}/reply",
        data={"text": "Hej Mika, jeg ringer i morgen.", "csrf_token": csrf},
        allow_redirects=False,
    )

    assert response.status == 303
    assert response.headers["Location"] == f"/inbox/cases/{case.case_id}"
    [reply] = await _outbound(inbox, case.case_id)
    assert (reply.direction, reply.author, reply.seq, reply.delivery_state) == (
        "out",
        "caseworker",
        2,
        "queued",
    )
    assert b"ringer i morgen" not in reply.body_enc
    async with inbox.db.read() as session:
        text = await inbox.keys.decrypt_text(
            session,
            case.case_id,
            reply.body_enc,
            table=MESSAGE_TABLE,
            row_id=reply.id,
            field=BODY,
        )
    assert text == "Hej Mika, jeg ringer i morgen."
    page = await (await client.get(f"/inbox/cases/{case.case_id}")).text()
    assert "Hej Mika, jeg ringer i morgen." in page
    assert "I kø" in page


async def test_reply_as_json_for_the_page_script(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    client = await inbox.logged_in("anna")
    csrf = await inbox.session_csrf(client)

    response = await client.post(
        f"/inbox/cases/{case.case_id}/reply",
        data={"text": "Hej", "csrf_token": csrf},
        headers={"Accept": "application/json"},
    )

    assert response.status == 200
    body = await response.json()
    [reply] = await _outbound(inbox, case.case_id)
    assert body == {"message_id": reply.id, "seq": reply.seq}


async def test_empty_or_too_long_reply_is_refused_kindly(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    client = await inbox.logged_in("anna")
    csrf = await inbox.session_csrf(client)
    url = f"/inbox/cases/{case.case_id}/reply"

    empty = await client.post(url, data={"text": "  \n ", "csrf_token": csrf})
    too_long = await client.post(url, data={"text": "x" * 4001, "csrf_token": csrf})
    as_json = await client.post(
        url, data={"text": "", "csrf_token": csrf}, headers={"Accept": "application/json"}
    )

    assert empty.status == too_long.status == as_json.status == 400
    assert "Skriv en besked, før du sender." in await empty.text()
    too_long_page = await too_long.text()
    assert "Beskeden er for lang" in too_long_page
    assert "x" * 4001 in too_long_page  # the draft is kept, not lost
    assert (await as_json.json())["error"] == "empty"
    assert await _outbound(inbox, case.case_id) == []
    assert await _outbox_jobs(inbox) == 0


async def test_reply_without_or_with_wrong_csrf_is_403_and_sends_nothing(
    inbox: InboxHarness,
) -> None:
    await inbox.caseworker("anna")
    await inbox.caseworker("bo")
    case = await inbox.case("anna", ref="S-1")
    client = await inbox.logged_in("anna")
    bo_csrf = await inbox.session_csrf(await inbox.logged_in("bo"))
    url = f"/inbox/cases/{case.case_id}/reply"

    missing = await client.post(url, data={"text": "hej"})
    wrong = await client.post(url, data={"text": "hej", "csrf_token": "x" * 43})
    someone_elses = await client.post(url, data={"text": "hej", "csrf_token": bo_csrf})

    assert missing.status == wrong.status == someone_elses.status == 403
    assert await _outbound(inbox, case.case_id) == []
    assert await _outbox_jobs(inbox) == 0


async def test_delivery_states_are_shown_in_plain_danish(inbox: InboxHarness) -> None:
    anna = await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    await inbox.child_writes(case, "hej")
    for _ in range(5):
        await inbox.router.reply(case_id=case.case_id, caseworker_id=anna, text="svar")
    outbound = await _outbound(inbox, case.case_id)
    states = [
        ("sent", None),
        ("delivered", None),
        ("read", None),
        ("failed", "barnet har frameldt sig"),
        ("undelivered", None),
    ]
    async with inbox.db.write() as session:
        for message, (state, reason) in zip(outbound, states, strict=True):
            await session.execute(
                update(Message)
                .where(col(Message.id) == message.id)
                .values(delivery_state=state, delivery_reason=reason)
            )
    client = await inbox.logged_in("anna")

    page = await (await client.get(f"/inbox/cases/{case.case_id}")).text()

    labels = re.findall(r'class="msg-state state-([a-z]+)" data-role="state">([^<]+)<', page)
    assert labels == [
        ("sent", "Sendt"),
        ("delivered", "Leveret"),
        ("read", "Læst"),
        ("failed", "Ikke leveret: barnet har frameldt sig"),
        ("undelivered", "Ikke leveret"),
    ]


async def test_english_caseworker_gets_english_ui(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna", language="en")
    case = await inbox.case("anna", ref="S-1")
    await inbox.child_writes(case, "hej")
    client = await inbox.logged_in("anna")

    queue = await (await client.get("/inbox/")).text()
    conversation = await (await client.get(f"/inbox/cases/{case.case_id}")).text()

    assert '<html lang="en">' in queue
    assert "My cases" in queue and "1 unread" in queue
    assert "Send reply" in conversation
    login = await (await inbox.client().get("/inbox/login")).text()
    assert '<html lang="da">' in login and "Log ind" in login
    assert csrf_from(login)


async def test_reply_to_a_child_without_a_channel_is_explained(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    async with inbox.db.write() as session:
        await session.execute(update(ChannelIdentity).values(status="inactive"))
    client = await inbox.logged_in("anna")
    csrf = await inbox.session_csrf(client)

    response = await client.post(
        f"/inbox/cases/{case.case_id}/reply", data={"text": "Hej", "csrf_token": csrf}
    )

    assert response.status == 409
    assert "Barnet kan ikke nås lige nu" in await response.text()
    assert await _outbound(inbox, case.case_id) == []
