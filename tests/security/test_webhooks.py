"""Hostile webhooks on every channel: replayed, reordered, re-signed, oversized, nested, slow.

Each request goes over HTTP to the app as served (real adapters, real signature checks, real
storage); what must hold is read back from the database and the child's phone.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode

import aiohttp
import pytest

from bot import appkeys
from bot.providers import DEMO_TWILIO_TOKEN, MESSENGER_WEBHOOK, SMS_STATUS
from bot.storage.models import Message
from channels.sandbox.messenger import MessengerSandbox
from channels.sandbox.twilio import TwilioSandbox
from channels.sms import compute_signature
from tests.flows.conftest import ADDRESSES, CHANNELS, Stack
from tests.flows.test_channels import (
    MESSENGER_BODY,
    SMS_FORM,
    TELEGRAM_UPDATE,
    counts,
    good_request,
    messenger_headers,
    post_raw,
    telegram_headers,
    twilio_headers,
    wait_for_state,
)

pytestmark = pytest.mark.slow

ALL_CHANNELS = (*CHANNELS, "webchat")


async def child_texts(stack: Stack, case_id: str) -> list[str]:
    return [text for author, text in await stack.texts(case_id) if author == "child"]


async def webchat_case(stack: Stack) -> tuple[str, str]:
    await stack.inbox.caseworker("sanne")
    new = await stack.inbox.case("sanne", ref="SAG-WEB")
    return new.case_id, new.webchat_token


async def enrolled(stack: Stack, channel: str) -> tuple[str, str | None]:
    """A case reachable on ``channel``; the web chat token for web chat."""
    if channel == "webchat":
        return await webchat_case(stack)
    case_id = await stack.case()
    await stack.enrol(case_id, stack.phone(channel), channel)
    return case_id, None


def with_text(channel: str, text: str) -> bytes:
    """The flows' canonical request for ``channel`` (same provider id) with another text."""
    if channel == "sms":
        return SMS_FORM.replace(b"hemmelig+besked", text.replace(" ", "+").encode())
    if channel == "telegram":
        return TELEGRAM_UPDATE.replace(b"hemmelig besked", text.encode())
    return MESSENGER_BODY.replace(b"hemmelig besked", text.encode())


async def post_webchat(stack: Stack, token: str, body: bytes) -> int:
    headers = {"Content-Type": "application/json"}
    response = await post_raw(stack, f"/c/{token}/messages", body, headers)
    return response.status


def chat_body(client_id: str, text: str) -> bytes:
    return json.dumps({"client_id": client_id, "text": text}).encode()


# -- replayed ------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ALL_CHANNELS)
async def test_a_replayed_message_is_stored_once_even_with_another_text(
    stack: Stack, channel: str
) -> None:
    case_id, token = await enrolled(stack, channel)
    statuses = []
    for text in ("hemmelig besked", "hemmelig besked", "anden tekst samme id"):
        if token is not None:
            statuses.append(await post_webchat(stack, token, chat_body("replay-0001", text)))
            continue
        path, body, headers = good_request(stack, channel, with_text(channel, text))
        statuses.append((await post_raw(stack, path, body, headers)).status)
    assert statuses == [200, 200, 200]  # the provider must stop retrying
    texts = await child_texts(stack, case_id)
    assert texts.count("hemmelig besked") == 1
    assert "anden tekst samme id" not in texts


# -- reordered ------------------------------------------------------------------------------


def twilio_status(stack: Stack, sid: str, status: str, error: str | None = None) -> bytes:
    form = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status}
    if error is not None:
        form["ErrorCode"] = error
    return urlencode(form).encode()


async def test_sms_status_callbacks_in_any_order_never_move_backwards(stack: Stack) -> None:
    case_id, phone = await stack.case(), stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")
    sandbox = stack.sandbox("sms")
    assert isinstance(sandbox, TwilioSandbox)
    # The provider's own report is a stale "queued"; the test posts the rest, out of order.
    sandbox.status_script(["queued"])
    stored = await stack.app[appkeys.ROUTER].reply(
        case_id=case_id, caseworker_id=await worker_id(stack), text="Tak for din besked."
    )
    sid = (await phone.read_one()).provider_id
    await stack.idle()  # the send's answer (and so the provider id) is stored

    url = stack.settings.public_url(SMS_STATUS)
    seen = []
    for status, error in [("delivered", None), ("sent", None), ("queued", None),
                          ("undelivered", "30003"), ("delivered", None)]:  # fmt: skip
        body = twilio_status(stack, sid, status, error)
        form = dict(parse_qsl(body.decode()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sandbox.sign(url, form),
        }
        assert (await post_raw(stack, SMS_STATUS, body, headers)).status == 200
        async with stack.db.read() as session:
            row = await session.get(Message, stored.message_id)
        assert row is not None
        seen.append(row.delivery_state)
    assert seen == ["delivered"] * 5
    assert row.delivery_reason is None


async def test_messenger_receipts_in_any_order_never_move_backwards(stack: Stack) -> None:
    case_id, phone = await stack.case(), stack.phone("messenger")
    await stack.enrol(case_id, phone, "messenger")
    sandbox = stack.sandbox("messenger")
    assert isinstance(sandbox, MessengerSandbox)
    stored = await stack.app[appkeys.ROUTER].reply(
        case_id=case_id, caseworker_id=await worker_id(stack), text="Tak for din besked."
    )
    mid = (await phone.read_one()).provider_id
    assert await wait_for_state(stack, stored.message_id, "delivered") == "delivered"

    psid = ADDRESSES["messenger"]
    now_ms = 4_102_444_800_000  # a watermark after everything sent (year 2100)
    events = [
        {"read": {"watermark": now_ms}},
        {"delivery": {"mids": [mid], "watermark": now_ms - 60_000}},
        {"delivery": {"mids": [mid]}},
    ]
    seen = []
    for content in events:
        event = {"sender": {"id": psid}, "recipient": {"id": sandbox.page_id}, "timestamp": now_ms}
        body = json.dumps(
            {
                "object": "page",
                "entry": [{"id": sandbox.page_id, "time": now_ms, "messaging": [event | content]}],
            }
        ).encode()
        assert (
            await post_raw(stack, MESSENGER_WEBHOOK, body, messenger_headers(body))
        ).status == 200
        async with stack.db.read() as session:
            row = await session.get(Message, stored.message_id)
        assert row is not None
        seen.append(row.delivery_state)
    assert seen == ["read", "read", "read"]


async def worker_id(stack: Stack) -> str:
    from sqlmodel import select

    from bot.storage.models import Caseworker

    async with stack.db.read() as session:
        row = (await session.exec(select(Caseworker).where(Caseworker.username == "sanne"))).one()
    return row.id


# -- re-signed ------------------------------------------------------------------------------


def resigned(stack: Stack, channel: str, body: bytes) -> list[dict[str, str]]:
    """Headers signed with an old or wrong secret, or right secret for the wrong thing."""
    if channel == "sms":
        form = list(parse_qsl(body.decode(), keep_blank_values=True))
        url = stack.settings.public_url("/webhooks/twilio/sms")
        base = {"Content-Type": "application/x-www-form-urlencoded"}
        return [
            base | {"X-Twilio-Signature": compute_signature("old-auth-token", url, form)},
            # The right token, but for another URL (a replay to a different endpoint).
            base | {"X-Twilio-Signature": compute_signature(DEMO_TWILIO_TOKEN, url + "x", form)},
            # The right token over the original body: the text was changed after signing.
            twilio_headers(stack, SMS_FORM),
        ]
    if channel == "telegram":
        return [telegram_headers("old-telegram-secret"), telegram_headers("")]
    sha1 = hmac.new(b"demo-messenger-app-secret", body, hashlib.sha1).hexdigest()
    return [
        messenger_headers(body, "old-messenger-app-secret"),
        messenger_headers(MESSENGER_BODY),  # signed before the text was changed
        {"Content-Type": "application/json", "X-Hub-Signature": f"sha1={sha1}"},  # legacy
    ]


@pytest.mark.parametrize("channel", ALL_CHANNELS)
async def test_a_request_signed_with_a_wrong_or_old_secret_is_refused_and_not_stored(
    sqlite_stack: Stack, channel: str
) -> None:
    stack = sqlite_stack
    case_id, token = await enrolled(stack, channel)
    before = await counts(stack)
    if token is not None:
        forged_tokens = ["A" * 32, token[:-1] + ("B" if token[-1] != "B" else "C"), ""]
        for forged_token in forged_tokens:
            status = await post_webchat(stack, forged_token, chat_body("forged-0001", "falsk"))
            assert status in (403, 404), forged_token
    else:
        body = with_text(channel, "falsk besked")
        path = good_request(stack, channel)[0]
        for headers in resigned(stack, channel, body):
            assert (await post_raw(stack, path, body, headers)).status == 403, headers
    assert await counts(stack) == before
    assert "falsk besked" not in await child_texts(stack, case_id)
    channel_object = stack.app[appkeys.PROVIDERS].channels[channel]
    assert channel_object.counters["signature_rejected"] >= 2


# -- oversized and nested -------------------------------------------------------------------


def big_body(channel: str, size: int) -> bytes:
    padding = b"x" * size
    if channel == "sms":
        return SMS_FORM + b"&Padding=" + padding
    if channel == "webchat":
        return b'{"client_id": "big-000001", "text": "' + padding + b'"}'
    base = TELEGRAM_UPDATE if channel == "telegram" else MESSENGER_BODY
    return base[:-1] + b',"p":"' + padding + b'"}'


async def signed_post(stack: Stack, channel: str, token: str | None, body: bytes) -> int:
    if token is not None:
        return await post_webchat(stack, token, body)
    path, _, headers = good_request(stack, channel, body)
    return (await post_raw(stack, path, body, headers)).status


@pytest.mark.parametrize("channel", ALL_CHANNELS)
async def test_oversized_bodies_get_413_declared_or_chunked(
    sqlite_stack: Stack, channel: str
) -> None:
    stack = sqlite_stack
    _, token = await enrolled(stack, channel)
    before = await counts(stack)
    body = big_body(channel, 1024 * 1024)
    assert await signed_post(stack, channel, token, body) == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    path = f"/c/{token}/messages" if token is not None else good_request(stack, channel)[0]
    headers = {} if token is not None else good_request(stack, channel, body)[2]
    async with (
        aiohttp.ClientSession() as session,
        session.post(stack.settings.public_url(path), data=chunks(), headers=headers) as response,
    ):
        assert response.status == 413
    assert await counts(stack) == before


NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("channel", ["telegram", "messenger", "webchat"])
async def test_deeply_nested_json_is_a_400_not_a_crash(sqlite_stack: Stack, channel: str) -> None:
    stack = sqlite_stack
    case_id, token = await enrolled(stack, channel)
    before = await counts(stack)
    wrapped = b'{"object": "page", "entry": ' + NESTED + b"}"
    for body in (NESTED, wrapped):
        assert await signed_post(stack, channel, token, body) == 400
    assert await counts(stack) == before
    # Still serving: the next ordinary message goes through.
    if token is not None:
        assert await post_webchat(stack, token, chat_body("after-nested", "hej igen")) == 200
    else:
        assert await stack.phone(channel).write("hej igen") == 200
    assert "hej igen" in await child_texts(stack, case_id)


# -- slow clients ---------------------------------------------------------------------------


async def trickle(stack: Stack, path: str, headers: dict[str, str]) -> bytes:
    """Sends the headers and a little of a 200-byte body, then a byte at a time, until the
    server answers or closes; returns what it answered."""
    host, port = "127.0.0.1", stack.inbox.server.port
    assert port is not None
    reader, writer = await asyncio.open_connection(host, port)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}Content-Length: 200\r\n\r\n"
        .encode() + b"x" * 10
    )  # fmt: skip
    answer = asyncio.ensure_future(reader.read(200))
    try:
        for _ in range(150):  # at most 150 more bytes: the body is never complete
            done, _pending = await asyncio.wait({answer}, timeout=0.1)
            if done:
                break
            writer.write(b"x")
            await writer.drain()
        else:
            return b"(no answer while the body trickled)"
        return answer.result()
    finally:
        answer.cancel()
        writer.close()


@pytest.mark.parametrize("channel", ALL_CHANNELS)
async def test_a_slow_client_times_out_and_others_are_served_meanwhile(
    sqlite_stack: Stack, channel: str
) -> None:
    stack = sqlite_stack
    case_id, token = await enrolled(stack, channel)
    if token is not None:
        path, headers = f"/c/{token}/messages", {"Content-Type": "application/json"}
    else:
        path, _, headers = good_request(stack, channel)
    slow = asyncio.ensure_future(trickle(stack, path, headers))
    # While it trickles, an ordinary message is taken and stored.
    if token is not None:
        assert await post_webchat(stack, token, chat_body("meanwhile-01", "imens")) == 200
    else:
        assert await stack.phone(channel).write("imens") == 200
    answer = await slow
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert "imens" in await child_texts(stack, case_id)
