"""Every provider channel end to end through the app: the real SDKs against the sandboxes.

Issue 3's must-shows at the level a municipality sees them: a message in and a reply out with
the delivery state reaching the inbox; bad input refused with nothing stored; a redelivered
webhook stored once; an unknown sender gets the enrolment prompt and never reaches the inbox.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from urllib.parse import parse_qsl

import aiohttp
import pytest
from sqlmodel import func, select

from bot import appkeys
from bot.providers import (
    DEMO_MESSENGER_SECRET,
    DEMO_TELEGRAM_SECRET,
    MESSENGER_WEBHOOK,
    SMS_INBOUND,
    TELEGRAM_WEBHOOK,
)
from bot.storage.models import (
    ChannelIdentity,
    EarlyStatus,
    Message,
    ParticipationEntry,
    PendingReply,
)
from channels.sandbox.twilio import TwilioSandbox
from tests.flows.conftest import CHANNELS, Stack

pytestmark = pytest.mark.slow


async def wait_for_state(stack: Stack, message_id: str, state: str, wait: float = 10.0) -> str:
    for _ in range(int(wait / 0.05)):
        async with stack.db.read() as session:
            message = await session.get(Message, message_id)
        assert message is not None
        if message.delivery_state == state:
            return state
        await asyncio.sleep(0.05)
    return message.delivery_state


async def counts(stack: Stack) -> tuple[int, int, int]:
    async with stack.db.read() as session:
        messages = (await session.exec(select(func.count()).select_from(Message))).one()
        entries = (await session.exec(select(func.count()).select_from(ParticipationEntry))).one()
        identities = (await session.exec(select(func.count()).select_from(ChannelIdentity))).one()
    return int(messages), int(entries), int(identities)


# What each channel can honestly report for a reply the child's phone received.
DELIVERED = {"sms": "delivered", "telegram": "sent", "messenger": "delivered"}


@pytest.mark.parametrize("channel", CHANNELS)
async def test_message_in_and_reply_out_with_delivery_state_in_the_inbox(
    stack: Stack, channel: str
) -> None:
    case_id = await stack.case()
    phone = stack.phone(channel)
    await stack.enrol(case_id, phone, channel)

    assert await phone.write("hej, hvornår er mødet?") == 200
    await phone.nothing_new()  # consented, staffed hours: the bot stays quiet
    texts = await stack.texts(case_id)
    assert texts[-1] == ("child", "hej, hvornår er mødet?")

    caseworker = await stack.inbox.logged_in("sanne")
    page = await caseworker.get(f"/inbox/cases/{case_id}")
    assert page.status == 200
    assert "hvornår er mødet?" in await page.text()

    worker_id = await _worker_id(stack)
    stored = await stack.app[appkeys.ROUTER].reply(
        case_id=case_id, caseworker_id=worker_id, text="Mødet er på tirsdag kl. 10."
    )
    received = await phone.read_one()
    assert received.text == "Mødet er på tirsdag kl. 10."
    state = await wait_for_state(stack, stored.message_id, DELIVERED[channel])
    assert state == DELIVERED[channel]
    async with stack.db.read() as session:
        row = await session.get(Message, stored.message_id)
    assert row is not None and row.provider_message_id == received.provider_id

    # The inbox page shows the tick in plain Danish.
    page = await caseworker.get(f"/inbox/cases/{case_id}")
    html = await page.text()
    label = {"delivered": "Leveret", "sent": "Sendt"}[DELIVERED[channel]]
    assert label in html


async def _worker_id(stack: Stack) -> str:
    from bot.storage.models import Caseworker

    async with stack.db.read() as session:
        worker = (
            await session.exec(select(Caseworker).where(Caseworker.username == "sanne"))
        ).one()
    return worker.id


async def post_raw(
    stack: Stack, path: str, body: bytes, headers: dict[str, str]
) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session:
        response = await session.post(stack.settings.public_url(path), data=body, headers=headers)
        await response.read()
        return response


def twilio_headers(stack: Stack, body: bytes) -> dict[str, str]:
    sandbox = stack.sandbox("sms")
    assert isinstance(sandbox, TwilioSandbox)
    form = dict(parse_qsl(body.decode(), keep_blank_values=True))
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sandbox.sign(stack.settings.public_url(SMS_INBOUND), form),
    }


def messenger_headers(body: bytes, secret: str = DEMO_MESSENGER_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


def telegram_headers(secret: str = DEMO_TELEGRAM_SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret}


SMS_FORM = (
    b"MessageSid=SM0123456789abcdef0123456789abcdef&From=%2B447700900123&To=%2B447700900001"
    b"&Body=hemmelig+besked&AccountSid=AC00000000000000000000000000000000de"
)
TELEGRAM_UPDATE = json.dumps(
    {
        "update_id": 900001,
        "message": {
            "message_id": 77,
            "date": 1_790_000_000,
            "chat": {"id": 700123, "type": "private"},
            "from": {"id": 700123, "is_bot": False, "first_name": "Fiktiv"},
            "text": "hemmelig besked",
        },
    }
).encode()
MESSENGER_BODY = json.dumps(
    {
        "object": "page",
        "entry": [
            {
                "id": "100000000000001",
                "time": 1_790_000_000_000,
                "messaging": [
                    {
                        "sender": {"id": "7000000000123"},
                        "recipient": {"id": "100000000000001"},
                        "timestamp": 1_790_000_000_000,
                        "message": {"mid": "m_fiktiv_1", "text": "hemmelig besked"},
                    }
                ],
            }
        ],
    }
).encode()


def good_request(
    stack: Stack, channel: str, body: bytes | None = None
) -> tuple[str, bytes, dict[str, str]]:
    if channel == "sms":
        body = body if body is not None else SMS_FORM
        return SMS_INBOUND, body, twilio_headers(stack, body)
    if channel == "telegram":
        body = body if body is not None else TELEGRAM_UPDATE
        return TELEGRAM_WEBHOOK, body, telegram_headers()
    body = body if body is not None else MESSENGER_BODY
    return MESSENGER_WEBHOOK, body, messenger_headers(body)


def forged(channel: str, body: bytes) -> list[dict[str, str]]:
    """Wrong and missing signatures for ``body``."""
    if channel == "sms":
        base = {"Content-Type": "application/x-www-form-urlencoded"}
        return [base | {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}, base]
    if channel == "telegram":
        return [telegram_headers("wrong-secret"), {"Content-Type": "application/json"}]
    return [messenger_headers(body, "wrong-app-secret"), {"Content-Type": "application/json"}]


@pytest.mark.parametrize("channel", CHANNELS)
async def test_bad_input_is_refused_and_nothing_is_stored(stack: Stack, channel: str) -> None:
    case_id = await stack.case()
    phone = stack.phone(channel)
    await stack.enrol(case_id, phone, channel)
    before = await counts(stack)
    path, body, _ = good_request(stack, channel)

    for headers in forged(channel, body):
        response = await post_raw(stack, path, body, headers)
        assert response.status == 403, headers
    truncated = body[: len(body) // 2]
    path, _, headers = good_request(stack, channel, truncated)
    assert (await post_raw(stack, path, truncated, headers)).status == 400
    padding = b"x" * (2 * 1024 * 1024)
    huge = (
        body + b"&Padding=" + padding
        if channel == "sms"
        else body[:-1] + b',"p":"' + padding + b'"}'
    )
    path, _, headers = good_request(stack, channel, huge)
    assert (await post_raw(stack, path, huge, headers)).status == 413

    assert await counts(stack) == before
    await phone.nothing_new()
    texts = [text for _, text in await stack.texts(case_id)]
    assert "hemmelig besked" not in texts


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_redelivered_webhook_is_stored_once(stack: Stack, channel: str) -> None:
    case_id = await stack.case()
    phone = stack.phone(channel)
    await stack.enrol(case_id, phone, channel)
    before, _, _ = await counts(stack)

    path, body, headers = good_request(stack, channel)
    first = await post_raw(stack, path, body, headers)
    again = await post_raw(stack, path, body, headers)
    assert (first.status, again.status) == (200, 200)

    after, _, _ = await counts(stack)
    assert after == before + 1
    assert [t for a, t in await stack.texts(case_id) if a == "child"].count("hemmelig besked") == 1


@pytest.mark.parametrize("channel", CHANNELS)
async def test_unknown_sender_gets_the_enrolment_prompt_not_the_inbox(
    stack: Stack, channel: str
) -> None:
    case_id = await stack.case()
    stranger = stack.phone(channel, {"sms": "+447700900999", "telegram": "700999",
                                     "messenger": "7000000000999"}[channel])  # fmt: skip
    before = await counts(stack)

    assert await stranger.write("hej er der nogen?") == 200
    prompt = await stranger.read_one()
    assert "kode" in prompt.text.lower()
    # A second message soon after is not answered again (no SMS ping-pong with strangers).
    assert await stranger.write("hallo?") == 200
    await stranger.nothing_new()

    assert await counts(stack) == before
    assert await stack.messages(case_id) == []
    async with stack.db.read() as session:
        # The prompt's address was forgotten once it was sent.
        assert (await session.exec(select(PendingReply))).all() == []
    caseworker = await stack.inbox.logged_in("sanne")
    queue = await (await caseworker.get("/inbox/")).text()
    assert "hej er der nogen?" not in queue


async def test_sms_status_reports_out_of_order_never_go_backwards(stack: Stack) -> None:
    case_id = await stack.case()
    phone = stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")
    sandbox = stack.sandbox("sms")
    assert isinstance(sandbox, TwilioSandbox)

    sandbox.status_script(["delivered", "sent", "queued"])
    stored = await stack.app[appkeys.ROUTER].reply(
        case_id=case_id, caseworker_id=await _worker_id(stack), text="Tak for din besked."
    )
    await phone.read_one()
    await sandbox.drain()
    assert await wait_for_state(stack, stored.message_id, "delivered") == "delivered"
    await asyncio.sleep(0.3)
    async with stack.db.read() as session:
        row = await session.get(Message, stored.message_id)
        early = (await session.exec(select(EarlyStatus))).all()
    assert row is not None and row.delivery_state == "delivered"
    assert early == []  # reports that beat the send's answer were applied, then forgotten


async def test_sms_failure_reason_reaches_the_inbox_in_plain_danish(stack: Stack) -> None:
    case_id = await stack.case()
    phone = stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")
    sandbox = stack.sandbox("sms")
    assert isinstance(sandbox, TwilioSandbox)

    sandbox.status_script(["sent", "undelivered"], error_code="30003")
    stored = await stack.app[appkeys.ROUTER].reply(
        case_id=case_id, caseworker_id=await _worker_id(stack), text="Er du der?"
    )
    await phone.read_one()
    assert await wait_for_state(stack, stored.message_id, "undelivered") == "undelivered"
    async with stack.db.read() as session:
        row = await session.get(Message, stored.message_id)
    assert row is not None and row.delivery_reason
    caseworker = await stack.inbox.logged_in("sanne")
    html = await (await caseworker.get(f"/inbox/cases/{case_id}")).text()
    assert row.delivery_reason in html


async def test_sms_stop_to_the_carrier_blocks_sends_until_start(stack: Stack) -> None:
    """Twilio's own STOP handling (error 21610) and ours: nothing is sent blindly."""
    case_id = await stack.case()
    phone = stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")
    sandbox = stack.sandbox("sms")
    assert isinstance(sandbox, TwilioSandbox)
    sandbox.opt_out(phone.address)  # e.g. the child answered STOP to the carrier before

    stored = await stack.app[appkeys.ROUTER].reply(
        case_id=case_id, caseworker_id=await _worker_id(stack), text="Hej igen"
    )
    assert await wait_for_state(stack, stored.message_id, "failed") == "failed"
    async with stack.db.read() as session:
        row = await session.get(Message, stored.message_id)
        identity = (
            await session.exec(
                select(ChannelIdentity).where(
                    ChannelIdentity.case_id == case_id, ChannelIdentity.channel == "sms"
                )
            )
        ).one()
    assert row is not None and "stoppet" in (row.delivery_reason or "")
    assert identity.status == "opted_out"
    await phone.nothing_new()

    # START from the child opens the line again, on both sides.
    assert await phone.write("START") == 200
    await phone.read_one()  # the bot's "welcome back"
    async with stack.db.read() as session:
        identity = (
            await session.exec(select(ChannelIdentity).where(ChannelIdentity.id == identity.id))
        ).one()
    assert identity.status == "active"
    await stack.app[appkeys.ROUTER].reply(
        case_id=case_id, caseworker_id=await _worker_id(stack), text="Godt at høre fra dig"
    )
    assert (await phone.read_one()).text == "Godt at høre fra dig"
