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
from sqlalchemy import update
from sqlmodel import col, select

from bot import appkeys
from bot.app import create_app
from bot.cases import NewCase, add_case, add_caseworker
from bot.crypto import Keyring
from bot.inbox import totp
from bot.keys import KeyService
from bot.messages import Stored
from bot.router import Router
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.migrate import upgrade
from bot.storage.models import Caseworker, Message, utcnow
from channels.base import ChannelName, Inbound, ProviderMessageId
from tests.helpers import mark_consented

PASSWORD = "korrekt hest batteri hæfteklamme"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
TOTP_SECRET = re.compile(r'id="totp-secret"[^>]*>([A-Z2-7 ]+)<')
CODE_PATH = "/inbox/login/code"
SETUP_PATH = "/inbox/login/setup"


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
        """Both factors, as a browser does them; the first answer that is not a step on.

        After a right password comes the TOTP step: the code page, or on a first login the setup
        page (its secret is read off the page, as a person would scan it). Returns the password
        step's answer if that fails, else the code step's (303 to the queue when all is well).
        """
        response = await self.password_step(client, username, password)
        return await self.second_step(client, username, response)

    async def second_step(
        self, client: aiohttp.ClientSession, username: str, response: aiohttp.ClientResponse
    ) -> aiohttp.ClientResponse:
        """The TOTP step after the password step's ``response`` (returned if it failed)."""
        location = response.headers.get("Location", "")
        if response.status != 303 or location not in (CODE_PATH, SETUP_PATH):
            return response
        if location == SETUP_PATH:
            page = await client.get(SETUP_PATH)
            assert page.status == 200, await page.text()
            text = await page.text()
            return await client.post(
                SETUP_PATH,
                data={
                    "csrf_token": csrf_from(text),
                    "code": totp.code_at(totp_secret_from(text), totp.current_step()),
                },
                allow_redirects=False,
            )
        page = await client.get(CODE_PATH)
        assert page.status == 200, await page.text()
        return await client.post(
            CODE_PATH,
            data={
                "csrf_token": csrf_from(await page.text()),
                "code": await self.totp_code(username),
            },
            allow_redirects=False,
        )

    async def password_step(
        self, client: aiohttp.ClientSession, username: str, password: str = PASSWORD
    ) -> aiohttp.ClientResponse:
        """Only the first factor: the login form with username and password."""
        page = await client.get("/inbox/login")
        token = csrf_from(await page.text())
        return await client.post(
            "/inbox/login",
            data={"username": username, "password": password, "csrf_token": token},
            allow_redirects=False,
        )

    async def totp_secret(self, username: str) -> str:
        """The account's TOTP secret (what its authenticator app holds)."""
        async with self.db.read() as session:
            worker = (
                await session.exec(select(Caseworker).where(Caseworker.username == username))
            ).one()
        assert worker.totp_secret_enc is not None, f"{username} has no TOTP secret yet"
        return totp.unseal(self.keys, worker.id, worker.totp_secret_enc)

    async def totp_code(self, username: str) -> str:
        """A code the server has not seen used yet for this account.

        The current step's code, or the next step's (still accepted) if this one was used. If
        both were used (a test logging the same person in a third time within half a minute),
        the record of the last used step is moved back, as if that login was a minute ago,
        like the tests that age a session.
        """
        secret = await self.totp_secret(username)
        now = totp.current_step()
        async with self.db.read() as session:
            worker = (
                await session.exec(select(Caseworker).where(Caseworker.username == username))
            ).one()
        last = worker.totp_last_step if worker.totp_last_step is not None else now - 2
        step = max(now, last + 1)
        if step > now + totp.DRIFT_STEPS:
            async with self.db.write() as session:
                await session.execute(
                    update(Caseworker)
                    .where(col(Caseworker.id) == worker.id)
                    .values(totp_last_step=now - 2)
                )
            step = now
        return totp.code_at(secret, step)

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


def totp_secret_from(page: str) -> str:
    """The secret the setup page shows for typing into an app by hand."""
    match = TOTP_SECRET.search(page)
    assert match is not None, "no TOTP secret on the page"
    return match.group(1).replace(" ", "")


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
