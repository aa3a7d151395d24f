"""The rig for the crash test: children on every channel, fake providers, and a retrying load.

The fake providers run in the test process (not inside the server), so they outlive every kill:
what they received is the truth about what Stemme sent. Each inbound message is a fixed
provider id that is posted again until Stemme acknowledges it, as a real provider retries an
unacknowledged webhook; the rig records which ids were acknowledged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bot.cases import add_case, add_caseworker
from bot.crypto import Keyring
from bot.engine.enrolment import Enrolment
from bot.keys import KeyService
from bot.providers import (
    DEMO_MESSENGER_SECRET,
    DEMO_MESSENGER_TOKEN,
    DEMO_MESSENGER_VERIFY,
    DEMO_TELEGRAM_SECRET,
    DEMO_TELEGRAM_TOKEN,
    DEMO_TWILIO_NUMBER,
    DEMO_TWILIO_SID,
    DEMO_TWILIO_TOKEN,
)
from bot.storage.db import Database
from channels.base import ChannelName, Inbound, ProviderMessageId
from channels.sandbox.messenger import MessengerSandbox
from channels.sandbox.telegram import TelegramSandbox
from channels.sandbox.twilio import TwilioSandbox
from tests.helpers import mark_consented

PROVIDERS = ("sms", "telegram", "messenger")


@dataclass(frozen=True)
class Child:
    case_id: str
    sms: str  # Ofcom's drama range: fictional
    telegram: str  # a made-up chat id
    messenger: str  # a made-up PSID
    webchat: str  # the link token


@dataclass
class Sandboxes:
    twilio: TwilioSandbox
    telegram: TelegramSandbox
    messenger: MessengerSandbox

    async def stop(self) -> None:
        for sandbox in (self.twilio, self.telegram, self.messenger):
            await sandbox.stop()

    def sent_ids(self) -> dict[str, set[str]]:
        return {
            "sms": {m.provider_id for m in self.twilio.sent},
            "telegram": {m.provider_id for m in self.telegram.sent},
            "messenger": {m.provider_id for m in self.messenger.sent},
        }


async def start_sandboxes(stemme_url: str) -> Sandboxes:
    twilio = TwilioSandbox(
        account_sid=DEMO_TWILIO_SID,
        auth_token=DEMO_TWILIO_TOKEN,
        stemme_url=stemme_url,
        number=DEMO_TWILIO_NUMBER,
    )
    telegram = TelegramSandbox(DEMO_TELEGRAM_TOKEN, stemme_url, DEMO_TELEGRAM_SECRET)
    messenger = MessengerSandbox(
        page_access_token=DEMO_MESSENGER_TOKEN,
        app_secret=DEMO_MESSENGER_SECRET,
        stemme_url=stemme_url,
    )
    for sandbox in (twilio, telegram, messenger):
        await sandbox.start()
    return Sandboxes(twilio, telegram, messenger)


def server_env(*, data_dir: Path, db_url: str, port: int, sandboxes: Sandboxes) -> dict[str, str]:
    """``stemme serve`` with "real" providers that are the rig's sandboxes."""
    return {
        "STEMME_DATA_DIR": str(data_dir),
        "STEMME_DATABASE_URL": db_url,
        "STEMME_PORT": str(port),
        "STEMME_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "STEMME_SANDBOX": "false",
        "STEMME_OFFICE_HOURS": "00:00-24:00",
        "STEMME_OFFICE_DAYS": "1-7",
        "STEMME_OUTBOX_POLL_SECONDS": "0.2",
        "STEMME_TWILIO_ACCOUNT_SID": DEMO_TWILIO_SID,
        "STEMME_TWILIO_AUTH_TOKEN": DEMO_TWILIO_TOKEN,
        "STEMME_TWILIO_FROM": DEMO_TWILIO_NUMBER,
        "STEMME_TWILIO_API_BASE_URL": sandboxes.twilio.url,
        "STEMME_TELEGRAM_ENABLED": "true",
        "STEMME_TELEGRAM_DPIA_APPROVED": "true",
        "STEMME_TELEGRAM_BOT_TOKEN": DEMO_TELEGRAM_TOKEN,
        "STEMME_TELEGRAM_WEBHOOK_SECRET": DEMO_TELEGRAM_SECRET,
        "STEMME_TELEGRAM_API_BASE_URL": sandboxes.telegram.url + "/bot",
        "STEMME_MESSENGER_ENABLED": "true",
        "STEMME_MESSENGER_DPIA_APPROVED": "true",
        "STEMME_MESSENGER_PAGE_TOKEN": DEMO_MESSENGER_TOKEN,
        "STEMME_MESSENGER_APP_SECRET": DEMO_MESSENGER_SECRET,
        "STEMME_MESSENGER_VERIFY_TOKEN": DEMO_MESSENGER_VERIFY,
        "STEMME_MESSENGER_GRAPH_URL": sandboxes.messenger.url,
    }


async def enrol_children(db_url: str, keyring: Keyring, count: int) -> list[Child]:
    """``count`` cases, each child enrolled on all four channels and past the notice."""
    db = Database(db_url)
    keys = KeyService(keyring)
    enrolment = Enrolment(keys=keys)
    children: list[Child] = []
    try:
        await add_caseworker(db, username="kaos", display_name="Rådgiver Kaos", password="x" * 16)
        for n in range(count):
            case = await add_case(
                db,
                keys,
                case_ref=f"KAOS-{n}",
                caseworker_username="kaos",
                child_name="Testbarn",
                birth_date=dt.date(2012, 5, 1),
            )
            addresses = {
                "sms": f"+447700900{100 + n:03d}",
                "telegram": str(7_100_000 + n),
                "messenger": str(7_200_000_000_000 + n),
            }
            for channel, address in addresses.items():
                async with db.write() as session:
                    invitation = await enrolment.invite(
                        session, case_id=case.case_id, channels=[channel], caseworker_id=None
                    )
                async with db.write() as session:
                    identity = await enrolment.redeem(
                        session,
                        Inbound(
                            channel=ChannelName(channel),
                            address=address,
                            provider_message_id=ProviderMessageId(f"enrol-{channel}-{n}"),
                            text=invitation.code,
                            received_at=dt.datetime.now(dt.UTC),
                        ),
                    )
                    assert identity is not None, channel
            await mark_consented(db, case.case_id)
            assert case.webchat_token is not None
            children.append(Child(case.case_id, webchat=case.webchat_token, **addresses))
    finally:
        await db.dispose()
    return children


@dataclass(frozen=True)
class Send:
    """One inbound message with its fixed provider id, posted until acknowledged."""

    channel: str
    provider_id: str
    body: Mapping[str, Any]


def make_sends(children: list[Child], total: int, *, helpword_every: int) -> list[Send]:
    """``total`` messages spread over the children and the four channels.

    Every ``helpword_every``-th message is the HJÆLP keyword, which the bot answers, so the
    load carries outbound replies on every channel as well.
    """
    sends: list[Send] = []
    update_id = 1_000_000
    for i in range(total):
        child = children[i % len(children)]
        channel = ("sms", "telegram", "messenger", "webchat")[(i // len(children)) % 4]
        text = "hjælp" if i % helpword_every == 0 else f"kaos-besked {i}"
        if channel == "sms":
            sid = "SM" + secrets.token_hex(16)
            body: dict[str, Any] = {
                "MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid,
                "AccountSid": DEMO_TWILIO_SID, "From": child.sms, "To": DEMO_TWILIO_NUMBER,
                "Body": text, "NumMedia": "0", "NumSegments": "1", "SmsStatus": "received",
                "ApiVersion": "2010-04-01",
            }  # fmt: skip
            sends.append(Send("sms", sid, body))
        elif channel == "telegram":
            update_id += 1
            chat = int(child.telegram)
            body = {
                "update_id": update_id,
                "message": {
                    "message_id": update_id,
                    "from": {"id": chat, "is_bot": False, "first_name": "Testbarn"},
                    "chat": {"id": chat, "type": "private", "first_name": "Testbarn"},
                    "date": int(time.time()),
                    "text": text,
                },
            }
            sends.append(Send("telegram", f"m:{chat}:{update_id}", body))
        elif channel == "messenger":
            mid = "m_" + secrets.token_hex(12)
            event = {
                "sender": {"id": child.messenger},
                "recipient": {"id": "PAGE"},
                "timestamp": int(time.time() * 1000),
                "message": {"mid": mid, "text": text},
            }
            sends.append(Send("messenger", mid, event))
        else:
            client_id = "kaos-" + secrets.token_hex(8)
            sends.append(Send("webchat", client_id, {"token": child.webchat, "text": text}))
    return sends


@dataclass
class Load:
    """Posts every send until it is acknowledged; counts attempts and acknowledgements."""

    base_url: str
    sandboxes: Sandboxes
    acked: dict[str, set[str]] = field(default_factory=lambda: {c: set() for c in CHANNELS})
    attempts: int = 0
    refused: list[tuple[str, int]] = field(default_factory=list)

    def acked_count(self) -> int:
        return sum(len(ids) for ids in self.acked.values())

    async def run(self, sends: list[Send], *, concurrency: int) -> None:
        queue: asyncio.Queue[Send] = asyncio.Queue()
        for send in sends:
            queue.put_nowait(send)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            workers = [
                asyncio.create_task(self._worker(queue, http), name=f"load-{n}")
                for n in range(concurrency)
            ]
            await queue.join()
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self, queue: asyncio.Queue[Send], http: aiohttp.ClientSession) -> None:
        while True:
            send = await queue.get()
            try:
                while not await self._post_once(send, http):
                    await asyncio.sleep(0.2)
                self.acked[send.channel].add(send.provider_id)
            finally:
                queue.task_done()

    async def _post_once(self, send: Send, http: aiohttp.ClientSession) -> bool:
        self.attempts += 1
        try:
            if send.channel == "sms":
                status = await self.sandboxes.twilio.deliver_form(dict(send.body))
            elif send.channel == "telegram":
                status = await self.sandboxes.telegram.deliver_update(dict(send.body))
            elif send.channel == "messenger":
                status = await self.sandboxes.messenger.deliver_batch([[dict(send.body)]])
            else:
                token = send.body["token"]
                async with http.post(
                    f"{self.base_url}/c/{token}/messages",
                    data=json.dumps({"client_id": send.provider_id, "text": send.body["text"]}),
                    headers={"Content-Type": "application/json"},
                ) as response:
                    status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False  # the server is down or went down mid-request: the provider retries
        if status == 200:
            return True
        if status < 500:
            # Authentic messages are never refused; remember it (the test fails on it).
            self.refused.append((send.channel, status))
            return True
        return False


CHANNELS = (*PROVIDERS, "webchat")
