"""The whole app with its provider sandboxes, and the child's phones on each channel.

``stack`` is Stemme as ``stemme serve`` runs it in demo mode: the real SDK clients (twilio,
python-telegram-bot, aiohttp for Graph) talk over HTTP to the fake providers on 127.0.0.1, the
fake providers post correctly signed webhooks back to the app's public URL, and the outbox and
the scheduler run. A :class:`Phone` is the child's handset on one channel: it writes through
the sandbox's control API and reads what Stemme sent it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import errno
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlmodel import col, select

from bot import appkeys
from bot.app import create_app
from bot.cases import add_case, add_caseworker
from bot.crypto import Keyring
from bot.engine.conversation import COPENHAGEN
from bot.engine.enrolment import NewInvitation
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.models import Case, Message, Outbox
from channels.sandbox.base import PhoneMessage, Sandbox
from consent.ages import age_on, milestones_at_enrolment
from tests.inbox.conftest import PASSWORD, InboxHarness

SANDBOX_OF = {"sms": "twilio", "telegram": "telegram", "messenger": "messenger"}
# Fictional addresses: Ofcom's drama range for SMS; made-up Telegram chat ids and Messenger PSIDs.
ADDRESSES = {"sms": "+447700900123", "telegram": "700123", "messenger": "7000000000123"}
CHANNELS = tuple(SANDBOX_OF)
WAIT = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Phone:
    """The child's phone on one channel, through the sandbox's control API."""

    sandbox: Sandbox
    address: str
    seen: int = 0  # the highest message number read so far

    async def write(self, text: str, *, button: str | None = None) -> int:
        """Send a message (or press a button); returns Stemme's HTTP status."""
        return await self.sandbox.deliver_inbound(self.address, text, button=button)

    async def read(self, count: int = 1, *, wait: float = WAIT) -> list[PhoneMessage]:
        """Exactly the next ``count`` messages Stemme sent to this phone (waits for them)."""
        got: list[PhoneMessage] = []
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=wait)
        while len(got) < count:
            left = (deadline - dt.datetime.now(dt.UTC)).total_seconds()
            assert left > 0, f"expected {count} messages, got {[m.text[:60] for m in got]}"
            new = await self.sandbox.messages_to(self.address, after=self.seen, wait=left)
            # Two messages can arrive together (a run of replies goes out back to back): take
            # only what was asked for; the rest are read next time (after ``seen``).
            new = new[: count - len(got)]
            if new:
                got += new
                self.seen = new[-1].n
        return got

    async def read_one(self, *, wait: float = WAIT) -> PhoneMessage:
        [message] = await self.read(1, wait=wait)
        return message

    async def nothing_new(self, *, wait: float = 0.6) -> None:
        new = await self.sandbox.messages_to(self.address, after=self.seen, wait=wait)
        assert new == [], [m.text[:80] for m in new]


@dataclass
class Stack:
    inbox: InboxHarness

    @property
    def app(self) -> Any:
        return self.inbox.app

    @property
    def db(self) -> Database:
        return self.inbox.db

    @property
    def settings(self) -> Settings:
        return self.inbox.settings

    def sandbox(self, channel: str) -> Sandbox:
        return self.app[appkeys.PROVIDERS].sandboxes[SANDBOX_OF[channel]]

    def phone(self, channel: str, address: str | None = None) -> Phone:
        return Phone(self.sandbox(channel), address or ADDRESSES[channel])

    async def case(
        self,
        *,
        worker: str = "sanne",
        ref: str = "SAG-1",
        birth_date: dt.date = dt.date(2013, 5, 17),
        language: str = "da",
    ) -> str:
        async with self.db.read() as session:
            from bot.storage.models import Caseworker

            exists = (
                await session.exec(select(Caseworker).where(Caseworker.username == worker))
            ).first()
        if exists is None:
            await add_caseworker(
                self.db,
                username=worker,
                display_name=f"{worker.title()} Fiktiv",
                password=PASSWORD,
            )
        new = await add_case(
            self.db,
            self.app[appkeys.KEYS],
            case_ref=ref,
            caseworker_username=worker,
            child_name="Testbarn (fiktiv)",
            birth_date=birth_date,
            language=language,
        )
        return new.case_id

    async def invite(self, case_id: str, *channels: str) -> NewInvitation:
        async with self.db.write() as session:
            return await self.app[appkeys.ENROLMENT].invite(
                session, case_id=case_id, channels=list(channels), caseworker_id=None
            )

    async def enrol(self, case_id: str, phone: Phone, channel: str) -> list[PhoneMessage]:
        """Send the code (Telegram: ``/start <code>``) and say JA; returns what the bot sent."""
        invitation = await self.invite(case_id, channel)
        code = f"/start {invitation.code}" if channel == "telegram" else invitation.code
        assert await phone.write(code) == 200
        notice = await phone.read_one()
        assert "112" in notice.text and "116 111" in notice.text, notice.text
        assert await phone.write("ja") == 200
        # Thanks, then a note on each right the child already has at this age.
        async with self.db.read() as session:
            case = await session.get(Case, case_id)
        assert case is not None
        age = age_on(case.child_birth_date, dt.datetime.now(COPENHAGEN).date())
        after = await phone.read(1 + len(milestones_at_enrolment(age)))
        return [notice, *after]

    async def idle(self, wait: float = WAIT) -> None:
        """Wait until the outbox has no delivery left to make (before a planned stop)."""
        for _ in range(int(wait / 0.05)):
            async with self.db.read() as session:
                left = (
                    await session.exec(
                        select(Outbox.id).where(
                            col(Outbox.kind).in_(["deliver", "prompt"]),
                            Outbox.status == "pending",
                        )
                    )
                ).all()
            if not left:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"outbox still has {len(left)} deliveries")

    async def messages(self, case_id: str) -> list[Message]:
        async with self.db.read() as session:
            query = select(Message).where(Message.case_id == case_id).order_by(col(Message.seq))
            return list((await session.exec(query)).all())

    async def texts(self, case_id: str) -> list[tuple[str, str]]:
        """(author, text) of the case's messages, decrypted as the inbox shows them."""
        keys = self.app[appkeys.KEYS]
        rows = await self.messages(case_id)
        out = []
        async with self.db.read() as session:
            for m in rows:
                text = await keys.decrypt_text(
                    session, case_id, m.body_enc, table="message", row_id=m.id, field="body"
                )
                out.append((m.author, text))
        return out


def flow_settings(tmp_path: Path, db_url: str, **overrides: object) -> Settings:
    port = free_port()
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "database_url": db_url,
        "port": port,
        "public_base_url": f"http://127.0.0.1:{port}",
        "sandbox_port": 0,
        "office_hours": "00:00-24:00",
        "office_days": "1-7",
        "outbox_poll_seconds": 0.2,
    }
    return Settings.from_env({}, **(values | overrides))


async def start_stack(
    settings: Settings, *, keyring: Keyring | None = None, from_key_file: bool = False
) -> Stack:
    """The app on ``settings.port``; on another free port if something took that one meanwhile
    (``free_port`` can only say the port *was* free: other processes on the machine race us).

    With ``from_key_file`` the app reads its keyring from the key file, as ``stemme serve``
    does. As there, no access log: request paths hold web chat tokens.
    """
    if not from_key_file:
        keyring = keyring or Keyring.generate()
    for attempt in range(5):
        app = create_app(settings, keyring=keyring)
        server = TestServer(app, host="127.0.0.1", port=settings.port)
        try:
            await server.start_server(access_log=None)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or attempt == 4:
                raise
            await app[appkeys.DB].dispose()
            port = free_port()
            settings = dataclasses.replace(
                settings, port=port, public_base_url=f"http://127.0.0.1:{port}"
            )
            continue
        return Stack(InboxHarness(app=app, server=server, settings=settings))
    raise AssertionError("unreachable")


async def stop_stack(stack: Stack) -> None:
    for client in stack.inbox.clients:
        await client.close()
    await stack.inbox.server.close()


@pytest.fixture
async def stack(tmp_path: Path, db_url: str) -> AsyncIterator[Stack]:
    running = await start_stack(flow_settings(tmp_path, db_url))
    try:
        yield running
    finally:
        await stop_stack(running)
