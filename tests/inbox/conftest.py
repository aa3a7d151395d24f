"""A running Stemme app on 127.0.0.1 with real SQLite, and helpers to drive the inbox over HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlmodel import col, select

from bot import appkeys
from bot.app import create_app
from bot.cases import NewCase, add_case, add_caseworker
from bot.crypto import Keyring
from bot.keys import KeyService
from bot.router import Router, Stored
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.migrate import upgrade
from bot.storage.models import Message, utcnow
from channels.base import ChannelName, Inbound, ProviderMessageId
from tests.helpers import mark_consented

PASSWORD = "korrekt hest batteri hæfteklamme"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class InboxHarness:
    app: web.Application
    server: TestServer
    settings: Settings
    clients: list[aiohttp.ClientSession] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def db(self) -> Database:
        return self.app[appkeys.DB]

    @property
    def keys(self) -> KeyService:
        return self.app[appkeys.KEYS]

    @property
    def router(self) -> Router:
        return self.app[appkeys.ROUTER]

    def client(self) -> aiohttp.ClientSession:
        """A browser of its own: its own cookie jar (unsafe=True: the host is an IP address)."""
        session = aiohttp.ClientSession(
            base_url=str(self.server.make_url("/")),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )
        self.clients.append(session)
        return session

    async def caseworker(self, username: str, *, language: str = "da") -> str:
        return await add_caseworker(
            self.db,
            username=username,
            display_name=f"{username.title()} Rådgiver",
            password=PASSWORD,
            language=language,
        )

    async def case(
        self, caseworker: str, *, ref: str, child: str = "Mika", consented: bool = True
    ) -> NewCase:
        """A case; ``consented``: the child said JA to the notice earlier (no bot lines)."""
        new = await add_case(
            self.db,
            self.keys,
            case_ref=ref,
            caseworker_username=caseworker,
            child_name=child,
            birth_date=dt.date(2012, 5, 17),
        )
        if consented:
            await mark_consented(self.db, new.case_id)
        return new

    async def child_writes(self, case: NewCase, text: str) -> Stored:
        """The child sends a web chat message, through the real router."""
        [stored] = await self.router.route_inbound(
            [
                Inbound(
                    channel=ChannelName("webchat"),
                    address=case.webchat_token,
                    provider_message_id=ProviderMessageId(f"c{next(self._ids)}"),
                    text=text,
                    received_at=utcnow(),
                )
            ]
        )
        assert stored is not None
        return stored

    async def login(
        self, client: aiohttp.ClientSession, username: str, password: str = PASSWORD
    ) -> aiohttp.ClientResponse:
        page = await client.get("/inbox/login")
        token = csrf_from(await page.text())
        return await client.post(
            "/inbox/login",
            data={"username": username, "password": password, "csrf_token": token},
            allow_redirects=False,
        )

    async def logged_in(self, username: str) -> aiohttp.ClientSession:
        client = self.client()
        response = await self.login(client, username)
        assert response.status == 303
        return client

    async def session_csrf(self, client: aiohttp.ClientSession) -> str:
        page = await client.get("/inbox/")
        assert page.status == 200
        return csrf_from(await page.text())

    async def messages(self, case_id: str) -> list[Message]:
        async with self.db.read() as session:
            query = select(Message).where(Message.case_id == case_id).order_by(col(Message.seq))
            return list((await session.exec(query)).all())


def csrf_from(page: str) -> str:
    match = CSRF_FIELD.search(page)
    assert match is not None, "no csrf_token field on the page"
    return match.group(1)


async def start(tmp_path: Path, **overrides: object) -> InboxHarness:
    # Staffed around the clock unless a test says otherwise: no out-of-hours reply lines.
    staffed: dict[str, object] = {
        "office_hours": "00:00-24:00",
        "office_days": "1-7",
        "sandbox_port": 0,  # fake providers on free ports, never the demo's fixed one
    }
    settings = Settings.from_env({}, data_dir=tmp_path, **(staffed | overrides))
    await asyncio.to_thread(upgrade, settings.effective_database_url)
    # No outbox worker: replies stay "queued", which keeps delivery state deterministic.
    app = create_app(settings, keyring=Keyring.generate(), run_outbox=False)
    server = TestServer(app)
    await server.start_server()
    return InboxHarness(app=app, server=server, settings=settings)


@pytest.fixture
async def inbox(db_url: str, tmp_path: Path) -> AsyncIterator[InboxHarness]:
    """The app on SQLite (the embedded default) and on PostgreSQL (``db_url`` runs both)."""
    harness = await start(tmp_path, database_url=db_url)
    try:
        yield harness
    finally:
        await stop(harness)


async def stop(harness: InboxHarness) -> None:
    for client in harness.clients:
        await client.close()
    await harness.server.close()
