"""The webhook sink against the reference receiver: signatures, timestamps, replays, failures."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from standardwebhooks.webhooks import Webhook

from bot.caselog.receiver import receiver_app
from bot.caselog.sinks import SinkError, read_entries
from bot.caselog.webhook import WebhookSink, body_bytes, sign_headers
from bot.ids import uuid7
from tests.caselog.helpers import SECRET, entry


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with TestClient(TestServer(receiver_app(SECRET, tmp_path / "in"))) as client:
        yield client


def signed(item: dict[str, Any], *, at: dt.datetime | None = None) -> tuple[bytes, dict[str, str]]:
    body = body_bytes(item)
    return body, sign_headers(Webhook(SECRET), item["id"], body, now=at)


async def test_a_delivery_is_filed_once_and_a_redelivery_is_acknowledged(
    receiver: TestClient,
    tmp_path: Path,  # type: ignore[type-arg]
) -> None:
    item = entry()
    body, headers = signed(item)
    first = await receiver.post("/entries", data=body, headers=headers)
    again = await receiver.post("/entries", data=body, headers=signed(item)[1])
    assert (first.status, again.status) == (201, 200)
    assert read_entries(tmp_path / "in") == [item]


@pytest.mark.parametrize(
    "tamper",
    ["body", "signature", "id", "secret", "stale", "future", "garbage", "missing"],
)
async def test_tampered_stale_or_unsigned_deliveries_are_rejected(
    receiver: TestClient,
    tmp_path: Path,
    tamper: str,  # type: ignore[type-arg]
) -> None:
    item = entry()
    body, headers = signed(item)
    if tamper == "body":
        body = body.replace(b'"seq":1', b'"seq":2')
    elif tamper == "signature":
        sig = headers["webhook-signature"]
        headers["webhook-signature"] = sig[:-3] + ("A" if sig[-3] != "A" else "B") + sig[-2:]
    elif tamper == "id":
        headers["webhook-id"] = uuid7()  # the signature covers the id
    elif tamper == "secret":
        other = Webhook("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
        headers = sign_headers(other, item["id"], body)
    elif tamper == "stale":
        headers = signed(item, at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6))[1]
    elif tamper == "future":
        headers = signed(item, at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6))[1]
    elif tamper == "garbage":
        headers["webhook-signature"] = "not-a-signature"
    else:
        del headers["webhook-signature"]
    response = await receiver.post("/entries", data=body, headers=headers)
    assert response.status == 401
    assert read_entries(tmp_path / "in") == []


async def test_concurrent_redeliveries_are_filed_once(
    receiver: TestClient,
    tmp_path: Path,  # type: ignore[type-arg]
) -> None:
    item = entry()
    body, headers = signed(item)
    answers = await asyncio.gather(
        *(receiver.post("/", data=body, headers=headers) for _ in range(5))
    )
    assert sorted(a.status for a in answers) == [200, 200, 200, 200, 201]
    assert read_entries(tmp_path / "in") == [item]


async def test_the_webhook_id_must_be_the_entry_id(receiver: TestClient) -> None:  # type: ignore[type-arg]
    item = entry()
    body = body_bytes(item)
    headers = sign_headers(Webhook(SECRET), uuid7(), body)  # validly signed, but another id
    assert (await receiver.post("/", data=body, headers=headers)).status == 400


async def test_a_restarted_receiver_still_knows_what_it_filed(tmp_path: Path) -> None:
    item = entry()
    for expected in (201, 200):
        app = receiver_app(SECRET, tmp_path / "in")
        async with TestClient(TestServer(app)) as client:
            body, headers = signed(item)
            assert (await client.post("/", data=body, headers=headers)).status == expected
    assert len(read_entries(tmp_path / "in")) == 1


async def test_the_sink_signs_per_standard_webhooks() -> None:
    seen: list[tuple[bytes, dict[str, str]]] = []

    async def capture(request: web.Request) -> web.Response:
        seen.append((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", capture)
    async with TestServer(app, host="127.0.0.1") as server:
        sink = WebhookSink(str(server.make_url("/hook")), SECRET, timeout=2)
        item = entry()
        await sink.deliver(item)
        await sink.aclose()
    [(body, headers)] = seen
    assert headers["webhook-id"] == item["id"]
    assert Webhook(SECRET).verify(body, headers) == item
    assert json.loads(body) == item


@pytest.mark.parametrize("status", [400, 409, 500, 503])
async def test_anything_but_2xx_means_try_again(status: int) -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", refuse)
    async with TestServer(app, host="127.0.0.1") as server:
        sink = WebhookSink(str(server.make_url("/hook")), SECRET, timeout=2)
        with pytest.raises(SinkError) as caught:
            await sink.deliver(entry())
        await sink.aclose()
    assert caught.value.reason == f"webhook: HTTP {status}"


async def test_a_silent_or_absent_receiver_means_try_again(unused_tcp_port: int) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hang)
    async with TestServer(app, host="127.0.0.1") as server:
        sink = WebhookSink(str(server.make_url("/hook")), SECRET, timeout=0.2)
        with pytest.raises(SinkError, match="TimeoutError"):
            await sink.deliver(entry())
        await sink.aclose()
    absent = WebhookSink(f"http://127.0.0.1:{unused_tcp_port}/hook", SECRET, timeout=1)
    with pytest.raises(SinkError, match="ClientConnectorError"):
        await absent.deliver(entry())
    await absent.aclose()
