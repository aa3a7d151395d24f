"""The web chat channel over a real socket: page, WebSocket protocol, resume, bad input."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse
from aiohttp.test_utils import TestClient
from sqlmodel import select

from bot import appkeys
from bot.storage.models import Message
from tests.helpers import CaseFixture, make_case

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
async def case(client: Client) -> CaseFixture:
    app = client.server.app
    return await make_case(app[appkeys.DB], app[appkeys.KEYS])


async def receive(ws: ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        msg = await ws.receive_json(timeout=5)
        if msg["type"] == kind:
            return msg  # type: ignore[no-any-return]


async def lines_until(ws: ClientWebSocketResponse, seq: int) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    while not lines or lines[-1]["seq"] < seq:
        lines.append(await receive(ws, "line"))
    return lines


async def test_child_page_is_safe_to_open(client: Client, case: CaseFixture) -> None:
    response = await client.get(f"/c/{case.webchat_token}")
    body = await response.text()
    assert response.status == 200
    assert "112" in body and "116 111" in body
    assert "Hurtig exit" in body
    csp = response.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce and f'nonce="{nonce.group(1)}"' in body
    assert "unsafe-inline" not in csp
    assert response.headers["Cache-Control"].startswith("no-store")
    assert response.headers["Referrer-Policy"] == "no-referrer"


async def test_unknown_link_is_a_plain_404(client: Client, case: CaseFixture) -> None:
    response = await client.get("/c/" + "A" * 32)
    assert response.status == 404
    assert 'content="invalid"' in await response.text()
    ws_response = await client.get("/c/" + "A" * 32 + "/ws")
    assert ws_response.status == 403


async def test_send_is_acknowledged_after_commit_and_echoed_once(
    client: Client, case: CaseFixture
) -> None:
    async with client.ws_connect(f"/c/{case.webchat_token}/ws") as ws:
        await ws.send_json({"type": "hello", "after": 0})
        await ws.send_json({"type": "send", "client_id": "client-0001", "text": "hej"})
        ack = await receive(ws, "ack")
        assert ack == {"type": "ack", "client_id": "client-0001", "seq": 1}
        async with client.server.app[appkeys.DB].read() as session:
            assert len((await session.exec(select(Message))).all()) == 1
        [line] = await lines_until(ws, 1)
        assert (line["text"], line["client_id"], line["direction"]) == ("hej", "client-0001", "in")
        # A resend after a lost ack (same client id) is answered with the same seq, not stored.
        await ws.send_json({"type": "send", "client_id": "client-0001", "text": "hej"})
        assert (await receive(ws, "ack"))["seq"] == 1
    async with client.server.app[appkeys.DB].read() as session:
        assert len((await session.exec(select(Message))).all()) == 1


async def test_reconnect_resumes_without_loss_or_doubles(
    client: Client, case: CaseFixture
) -> None:
    app = client.server.app
    router = app[appkeys.ROUTER]
    async with client.ws_connect(f"/c/{case.webchat_token}/ws") as ws:
        await ws.send_json({"type": "hello", "after": 0})
        await ws.send_json({"type": "send", "client_id": "client-0001", "text": "en"})
        await receive(ws, "ack")
        seen = [line["seq"] for line in await lines_until(ws, 1)]
    # While the child is offline: two replies and nothing else.
    for text in ("to", "tre"):
        await router.reply(case_id=case.case_id, caseworker_id=case.caseworker_id, text=text)
    async with client.ws_connect(f"/c/{case.webchat_token}/ws") as ws:
        await ws.send_json({"type": "hello", "after": seen[-1]})
        missed = await lines_until(ws, 3)
        assert [(m["seq"], m["text"], m["author"]) for m in missed] == [
            (2, "to", "caseworker"),
            (3, "tre", "caseworker"),
        ]
        # Live: a reply while connected arrives exactly once.
        await router.reply(case_id=case.case_id, caseworker_id=case.caseworker_id, text="fire")
        [live] = await lines_until(ws, 4)
        assert live["text"] == "fire"
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive_json(timeout=0.5)


async def test_seen_marks_replies_delivered(client: Client, case: CaseFixture) -> None:
    app = client.server.app
    stored = await app[appkeys.ROUTER].reply(
        case_id=case.case_id, caseworker_id=case.caseworker_id, text="Hej"
    )
    async with client.ws_connect(f"/c/{case.webchat_token}/ws") as ws:
        await ws.send_json({"type": "hello", "after": 0})
        await lines_until(ws, stored.seq)
        await ws.send_json({"type": "seen", "seq": stored.seq})
        for _ in range(50):
            async with app[appkeys.DB].read() as session:
                message = await session.get(Message, stored.message_id)
            assert message is not None
            if message.delivery_state == "delivered":
                break
            await asyncio.sleep(0.05)
    assert message.delivery_state == "delivered"


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("not json", "bad_request"),
        ("[1, 2]", "bad_request"),
        ('{"type": "send", "client_id": "x", "text": "hej"}', "bad_request"),
        ('{"type": "send", "client_id": "client-0001", "text": "   "}', "bad_request"),
        ('{"type": "send", "client_id": "client-0001", "text": "' + "å" * 2001 + '"}', "too_long"),
        ('{"type": "hello", "after": -1}', "bad_request"),
        ('{"type": "nonsense"}', "bad_request"),
    ],
)
async def test_bad_frames_get_an_error_and_store_nothing(
    client: Client, case: CaseFixture, caplog: pytest.LogCaptureFixture, frame: str, error: str
) -> None:
    caplog.set_level(logging.DEBUG)
    async with client.ws_connect(f"/c/{case.webchat_token}/ws") as ws:
        await ws.send_str(frame)
        assert (await receive(ws, "error"))["error"] == error
        # The socket still works afterwards.
        await ws.send_json({"type": "send", "client_id": "client-0002", "text": "ok"})
        assert (await receive(ws, "ack"))["seq"] == 1
    assert "ååå" not in caplog.text and "not json" not in caplog.text


async def test_post_fallback_acknowledges_after_commit(client: Client, case: CaseFixture) -> None:
    response = await client.post(
        f"/c/{case.webchat_token}/messages", json={"client_id": "client-0009", "text": "via post"}
    )
    assert response.status == 200
    async with client.server.app[appkeys.DB].read() as session:
        assert [m.provider_message_id for m in (await session.exec(select(Message))).all()] == [
            "client-0009"
        ]


async def test_post_with_a_wrong_token_is_refused_and_stores_nothing(
    client: Client, case: CaseFixture
) -> None:
    response = await client.post(
        "/c/" + "B" * 32 + "/messages", json={"client_id": "client-0009", "text": "x"}
    )
    assert response.status == 403
    async with client.server.app[appkeys.DB].read() as session:
        assert (await session.exec(select(Message))).all() == []


@pytest.mark.parametrize(
    "body",
    ["[null, null]", '"text"', "42", "[" * 100_000 + "]" * 100_000],
    ids=["array", "string", "number", "deeply-nested"],
)
async def test_post_that_is_not_a_json_object_is_a_400_and_stores_nothing(
    client: Client, case: CaseFixture, body: str
) -> None:
    # Found by the schemathesis run (tests/fuzz): a JSON array was a 500.
    response = await client.post(
        f"/c/{case.webchat_token}/messages",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 400
    async with client.server.app[appkeys.DB].read() as session:
        assert (await session.exec(select(Message))).all() == []
