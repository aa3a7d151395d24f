"""Fixtures for the operations tests: a key file kept apart, data written by the real code, and
a PostgreSQL role that needs its password (so a tool that did not get it fails)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlmodel import col, select

from bot.crypto import Keyring
from bot.keys import KeyService
from bot.live import Hub
from bot.router import BODY, MESSAGE_TABLE, Router
from bot.storage.db import Database
from bot.storage.models import Message
from tests.helpers import CaseFixture, make_case, webchat_inbound
from tests.support.pgserver import PgServer


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """A keyring in its own directory, away from every data directory."""
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o700)
    path = directory / "keyring.json"
    Keyring.generate().save(path)
    return path


async def write_messages(
    url: str, keyring: Keyring, texts: list[str], *, case_ref: str = "SAG-1"
) -> CaseFixture:
    """A case (caseworker, data key, web chat link) and the child's messages, via the router."""
    db = Database(url)
    keys = KeyService(keyring)
    try:
        new = await make_case(db, keys, username=f"rita-{case_ref.lower()}", case_ref=case_ref)
        router = Router(db=db, keys=keys, hub=Hub())
        for number, text in enumerate(texts):
            inbound = webchat_inbound(new.webchat_token, f"{case_ref}-{number:06d}", text)
            [stored] = await router.route_inbound([inbound])
            assert stored is not None
        return new
    finally:
        await db.dispose()


async def read_messages(url: str, keyring: Keyring) -> list[str]:
    """Every message body, decrypted, in case and sequence order."""
    db = Database(url)
    keys = KeyService(keyring)
    try:
        async with db.read() as session:
            rows = (
                await session.exec(
                    select(Message).order_by(col(Message.case_id), col(Message.seq))
                )
            ).all()
            return [
                await keys.decrypt_text(
                    session, m.case_id, m.body_enc, table=MESSAGE_TABLE, row_id=m.id, field=BODY
                )
                for m in rows
            ]
    finally:
        await db.dispose()


@dataclass(frozen=True)
class PgApp:
    """A login role with a password (scram) and two empty databases it owns."""

    server: PgServer
    role: str
    password: str
    databases: tuple[str, str]

    def url(self, which: int = 0) -> str:
        host = f"{self.server.host}:{self.server.port}"
        return f"postgresql+asyncpg://{self.role}:{self.password}@{host}/{self.databases[which]}"


@pytest.fixture
async def pg_app(pg_server: PgServer) -> AsyncIterator[PgApp]:
    role = f"stemme_{uuid4().hex[:10]}"
    password = f"fake-pw-{uuid4().hex[:12]}"
    hba = pg_server.datadir / "pg_hba.conf"
    original = hba.read_text()
    admin = await asyncpg.connect(pg_server.dsn())
    databases = (f"app_{uuid4().hex[:12]}", f"app_{uuid4().hex[:12]}")
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        # Before the cluster's trust rule: this role must prove its password.
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n{original}")
        await admin.fetchval("SELECT pg_reload_conf()")
        await _wait_until_password_needed(pg_server, role)

        for name in databases:
            await admin.execute(f'CREATE DATABASE "{name}" OWNER {role}')
        yield PgApp(pg_server, role, password, databases)
    finally:
        hba.write_text(original)
        await admin.fetchval("SELECT pg_reload_conf()")
        for name in databases:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def _wait_until_password_needed(server: PgServer, role: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            conn = await asyncpg.connect(
                host=server.host, port=server.port, user=role, database="postgres"
            )
        except Exception:  # refused for want of a password: the rule is in force
            return
        await conn.close()
        await asyncio.sleep(0.05)
    raise AssertionError("pg_hba.conf reload did not take effect")
