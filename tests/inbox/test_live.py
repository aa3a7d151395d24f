"""The inbox WebSocket: authenticated, origin-checked, authorised per case, resumable."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from sqlalchemy import update
from sqlmodel import col, select

from bot.storage.models import AuditEvent, Case, InboxSession, utcnow
from tests.inbox.conftest import InboxHarness

TIMEOUT = 5


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, object]:
    data = await ws.receive_json(timeout=TIMEOUT)
    assert isinstance(data, dict)
    return data


async def _watch(
    ws: aiohttp.ClientWebSocketResponse, case_id: str, after: int | None = None
) -> list[dict[str, object]]:
    """Watch a conversation; returns what arrived before the server said it is watching."""
    request: dict[str, object] = {"type": "watch", "case_id": case_id}
    if after is not None:
        request["after"] = after
    await ws.send_json(request)
    backlog = []
    while (event := await _receive(ws))["type"] != "watching":
        backlog.append(event)
    return backlog


async def test_websocket_needs_a_session(inbox: InboxHarness) -> None:
    client = inbox.client()

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/inbox/ws")

    assert refused.value.status == 401


async def test_websocket_refuses_a_foreign_origin(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    client = await inbox.logged_in("anna")

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/inbox/ws", origin="https://evil.example")
    public = await client.ws_connect("/inbox/ws", origin=inbox.settings.public_base_url)
    own = await client.ws_connect("/inbox/ws", origin=str(inbox.server.make_url("")))

    assert refused.value.status == 403
    await public.close()
    await own.close()


async def test_live_child_message_arrives_decrypted(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1", child="Mika")
    client = await inbox.logged_in("anna")
    ws = await client.ws_connect("/inbox/ws")
    assert await _watch(ws, case.case_id) == []

    stored = await inbox.child_writes(case, "jeg er ked af det <3")
    event = await _receive(ws)

    assert event["type"] == "message"
    assert event["case_id"] == case.case_id
    assert event["message_id"] == stored.message_id
    assert event["seq"] == stored.seq == 1
    assert event["text"] == "jeg er ked af det <3"
    assert (event["direction"], event["author"], event["author_label"]) == ("in", "child", "Mika")
    assert event["delivery_state"] == "delivered"
    assert event["state_label"] is None
    assert isinstance(event["created_at"], str)
    await ws.close()


async def test_reply_appears_live_with_its_state_label(inbox: InboxHarness) -> None:
    anna = await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    client = await inbox.logged_in("anna")
    ws = await client.ws_connect("/inbox/ws")
    await _watch(ws, case.case_id)

    await inbox.router.reply(case_id=case.case_id, caseworker_id=anna, text="Hej fra Anna")
    event = await _receive(ws)

    assert (event["type"], event["direction"], event["text"]) == ("message", "out", "Hej fra Anna")
    assert (event["delivery_state"], event["state_label"]) == ("queued", "I kø")
    assert event["author_label"] == "Anna Rådgiver (rådgiver)"
    await ws.close()


async def test_resume_after_sends_exactly_the_missed_messages(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    for text in ("en", "to", "tre", "fire"):
        await inbox.child_writes(case, text)
    client = await inbox.logged_in("anna")
    ws = await client.ws_connect("/inbox/ws")

    backlog = await _watch(ws, case.case_id, after=2)
    await inbox.child_writes(case, "fem")
    live = await _receive(ws)

    assert [(e["seq"], e["text"]) for e in backlog] == [(3, "tre"), (4, "fire")]
    assert (live["seq"], live["text"]) == (5, "fem")
    await ws.close()


async def test_another_caseworkers_case_is_forbidden(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    await inbox.caseworker("bo")
    case = await inbox.case("anna", ref="S-1")
    await inbox.child_writes(case, "hemmeligt")
    bo = await inbox.logged_in("bo")
    ws = await bo.ws_connect("/inbox/ws")

    await ws.send_json({"type": "watch", "case_id": case.case_id, "after": 0})
    answer = await _receive(ws)
    await ws.send_json({"type": "watch", "case_id": "no-such-case"})
    unknown = await _receive(ws)
    await inbox.child_writes(case, "mere")
    await ws.send_json({"type": "nonsense"})
    bad = await _receive(ws)

    assert answer == {"type": "error", "error": "forbidden", "case_id": case.case_id}
    assert unknown == {"type": "error", "error": "forbidden", "case_id": "no-such-case"}
    assert bad == {"type": "error", "error": "bad_request"}  # and nothing about the case leaked
    async with inbox.db.read() as session:
        events = (
            await session.exec(select(AuditEvent).where(col(AuditEvent.case_id).is_not(None)))
        ).all()
    # The refused watch of an existing case is audited; no transcript was read.
    assert [(e.action, e.case_id) for e in events] == [("case.access_refused", case.case_id)]
    await ws.close()


async def test_watching_is_audited_as_a_transcript_read(inbox: InboxHarness) -> None:
    anna = await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    client = await inbox.logged_in("anna")
    ws = await client.ws_connect("/inbox/ws")

    await _watch(ws, case.case_id, after=0)

    async with inbox.db.read() as session:
        [event] = (await session.exec(select(AuditEvent))).all()
    assert (event.actor, event.action, event.case_id) == (anna, "transcript.read", case.case_id)
    await ws.close()


async def test_queue_gets_unread_counts_live(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    queue_client = await inbox.logged_in("anna")
    queue_ws = await queue_client.ws_connect("/inbox/ws")
    await queue_ws.send_json({"type": "watch_queue"})
    assert await _receive(queue_ws) == {"type": "watching_queue"}

    await inbox.child_writes(case, "hej")
    first = await _receive(queue_ws)
    await inbox.child_writes(case, "hallo?")
    second = await _receive(queue_ws)
    await queue_client.get(f"/inbox/cases/{case.case_id}")  # reading it clears the badge
    cleared = await _receive(queue_ws)

    assert (first["type"], first["case_id"], first["unread"]) == (
        "queue_changed",
        case.case_id,
        1,
    )
    assert (second["unread"], second["unread_label"]) == (2, "2 ulæste")
    assert (cleared["unread"], cleared["unread_label"]) == (0, "Ingen ulæste")
    await queue_ws.close()


async def test_conversation_watcher_marks_live_messages_read(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    client = await inbox.logged_in("anna")
    ws = await client.ws_connect("/inbox/ws")
    await _watch(ws, case.case_id, after=0)

    await inbox.child_writes(case, "hej")
    await _receive(ws)

    [message] = await inbox.messages(case.case_id)
    assert message.read_at is not None
    await ws.close()


async def test_logout_closes_the_live_connection(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    client = await inbox.logged_in("anna")
    ws = await client.ws_connect("/inbox/ws")
    await _watch(ws, case.case_id)
    async with inbox.db.write() as session:
        await session.execute(update(InboxSession).values(revoked_at=utcnow()))

    await inbox.child_writes(case, "hej")  # the next event re-checks the session
    closing = await ws.receive(timeout=TIMEOUT)

    assert closing.type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 4401
    await ws.close()


async def test_shutdown_closes_open_inbox_sockets(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    case = await inbox.case("anna", ref="S-1")
    client = await inbox.logged_in("anna")
    ws = await client.ws_connect("/inbox/ws")
    await _watch(ws, case.case_id)

    await asyncio.wait_for(inbox.server.close(), timeout=TIMEOUT)

    closing = await ws.receive(timeout=TIMEOUT)
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_a_case_reassigned_while_watched_stops_being_sent(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    bo = await inbox.caseworker("bo")
    case = await inbox.case("anna", ref="S-1")
    client = await inbox.logged_in("anna")
    ws = await client.ws_connect("/inbox/ws")
    await _watch(ws, case.case_id)
    async with inbox.db.write() as session:
        await session.execute(update(Case).values(caseworker_id=bo))

    await inbox.child_writes(case, "til den nye rådgiver")
    answer = await _receive(ws)

    assert answer == {"type": "error", "error": "forbidden", "case_id": case.case_id}
    await ws.close()
