"""Live updates across processes on one PostgreSQL (LISTEN/NOTIFY), with real apps and sockets.

Two apps built by ``create_app`` share a database and a keyring, each on its own server: what
happens on one must show up live on the other. The relay must also outlive its connection.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import asyncpg  # type: ignore[import-untyped]
import pytest
from aiohttp.test_utils import TestServer

from bot import appkeys
from bot.app import create_app
from bot.crypto import Keyring
from bot.live import Hub
from bot.live_pg import CHANNEL, PgHub, asyncpg_dsn
from bot.settings import Settings
from tests.conftest import TEMPLATE_DB
from tests.inbox.conftest import InboxHarness, stop
from tests.support.pgserver import PgServer, create_database, drop_database

pytestmark = pytest.mark.postgres
TIMEOUT = 10


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A freshly migrated PostgreSQL database of its own (the relay exists only there)."""
    name = f"t_{uuid4().hex[:12]}"
    asyncio.run(create_database(pg_server, name, template=TEMPLATE_DB))
    try:
        yield pg_server.url(name)
    finally:
        asyncio.run(drop_database(pg_server, name))


async def _start(url: str, data_dir: Path, keyring: Keyring) -> InboxHarness:
    settings = Settings.from_env(
        {},
        data_dir=data_dir,
        database_url=url,
        office_hours="00:00-24:00",
        office_days="1-7",
        sandbox_port=0,
    )
    # No outbox worker: replies stay "queued", so nothing but the relay moves events.
    app = create_app(settings, keyring=keyring, run_outbox=False)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return InboxHarness(app=app, server=server, settings=settings)


@pytest.fixture
async def two(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[InboxHarness, InboxHarness]]:
    """Two processes' worth of app ("A" and "B") on one database, with one keyring."""
    keyring = Keyring.generate()
    a = await _start(pg_url, tmp_path / "a", keyring)
    b = await _start(pg_url, tmp_path / "b", keyring)
    try:
        yield a, b
    finally:
        await stop(b)
        await stop(a)


@pytest.fixture
async def hubs(pg_url: str) -> AsyncIterator[tuple[PgHub, PgHub]]:
    a, b = PgHub(asyncpg_dsn(pg_url)), PgHub(asyncpg_dsn(pg_url))
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


async def _get(queue: asyncio.Queue[dict[str, object]]) -> dict[str, object]:
    return await asyncio.wait_for(queue.get(), timeout=TIMEOUT)


async def _reconnected(hub: PgHub, old_pid: int) -> None:
    """Until the hub LISTENs again on a new connection (bounded, not a timing assertion)."""
    async with asyncio.timeout(TIMEOUT):
        while hub.backend_pid in (None, old_pid):
            await asyncio.sleep(0.02)


async def test_postgres_apps_get_the_relay_and_sqlite_keeps_the_plain_hub(
    two: tuple[InboxHarness, InboxHarness], tmp_path: Path
) -> None:
    a, _ = two
    sqlite = create_app(
        Settings.from_env({}, data_dir=tmp_path / "lite", sandbox_port=0),
        keyring=Keyring.generate(),
    )

    assert isinstance(a.app[appkeys.HUB], PgHub)
    assert type(sqlite[appkeys.HUB]) is Hub


async def test_inbox_on_a_sees_the_child_writing_through_b(
    two: tuple[InboxHarness, InboxHarness],
) -> None:
    a, b = two
    await a.caseworker("anna")
    case = await a.case("anna", ref="S-1", child="Mika")
    inbox = await (await a.logged_in("anna")).ws_connect("/inbox/ws")
    await inbox.send_json({"type": "watch", "case_id": case.case_id, "after": 0})
    assert (await inbox.receive_json(timeout=TIMEOUT))["type"] == "watching"

    async with b.client().ws_connect(f"/c/{case.webchat_token}/ws") as chat:
        await chat.send_json({"type": "hello", "after": 0})
        await chat.send_json({"type": "send", "client_id": "client-0001", "text": "hej fra B"})
        ack = await chat.receive_json(timeout=TIMEOUT)
        event = await inbox.receive_json(timeout=TIMEOUT)

    assert ack["type"] == "ack"
    assert (event["type"], event["case_id"], event["seq"]) == ("message", case.case_id, ack["seq"])
    assert (event["direction"], event["text"]) == ("in", "hej fra B")
    await inbox.close()


async def test_child_on_a_sees_the_reply_sent_through_b(
    two: tuple[InboxHarness, InboxHarness],
) -> None:
    a, b = two
    anna = await a.caseworker("anna")
    case = await a.case("anna", ref="S-1")

    async with a.client().ws_connect(f"/c/{case.webchat_token}/ws") as chat:
        await chat.send_json({"type": "hello", "after": 0})
        stored = await b.router.reply(case_id=case.case_id, caseworker_id=anna, text="Hej Mika")
        line = await chat.receive_json(timeout=TIMEOUT)

    assert (line["type"], line["seq"], line["direction"]) == ("line", stored.seq, "out")
    assert line["text"] == "Hej Mika"


async def test_own_events_are_delivered_once_and_others_relayed(
    hubs: tuple[PgHub, PgHub],
) -> None:
    a, b = hubs
    async with a.subscribe(["case:x"]) as on_a, b.subscribe(["case:x"]) as on_b:
        b.publish("case:x", {"type": "message", "case_id": "x", "seq": 1})
        assert (await _get(on_a))["seq"] == 1
        a.publish("case:x", {"type": "message", "case_id": "x", "seq": 2})
        # B's own NOTIFY (seq 1) reached B before A's: it was skipped, not delivered twice.
        assert [(await _get(on_b))["seq"], (await _get(on_b))["seq"]] == [1, 2]
        assert (await _get(on_a))["seq"] == 2
        assert on_a.empty() and on_b.empty()


async def test_oversized_and_malformed_notifications_are_dropped(
    hubs: tuple[PgHub, PgHub], pg_url: str
) -> None:
    a, b = hubs
    admin = await asyncpg.connect(asyncpg_dsn(pg_url))
    try:
        async with a.subscribe(["case:x"]) as on_a, b.subscribe(["case:x"]) as on_b:
            b.publish("case:x", {"type": "flag", "case_id": "x", "pad": "0" * 9000})
            await admin.execute("SELECT pg_notify($1, $2)", CHANNEL, "not json")
            await admin.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps({"o": "z"}))
            b.publish("case:x", {"type": "flag", "case_id": "x", "seq": 2})
            first_on_a = await _get(on_a)
            local = await _get(on_b)
    finally:
        await admin.close()

    assert first_on_a == {"type": "flag", "case_id": "x", "seq": 2}
    assert len(str(local["pad"])) == 9000  # still delivered inside its own process
    assert a.backend_pid is not None  # and the listener lived through the bad payloads


async def test_relay_survives_its_listen_connection_being_terminated(
    hubs: tuple[PgHub, PgHub], pg_url: str
) -> None:
    a, b = hubs
    admin = await asyncpg.connect(asyncpg_dsn(pg_url))
    try:
        async with a.subscribe(["case:x"]) as on_a:
            old_a = a.backend_pid
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", old_a)
            assert old_a is not None
            await _reconnected(a, old_a)
            b.publish("case:x", {"type": "message", "case_id": "x", "seq": 1})
            after_a = await _get(on_a)

            # The sender dropping: what it publishes meanwhile waits and goes out on reconnect.
            old_b = b.backend_pid
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", old_b)
            b.publish("case:x", {"type": "message", "case_id": "x", "seq": 2})
            after_b = await _get(on_a)
    finally:
        await admin.close()

    assert after_a["seq"] == 1
    assert after_b["seq"] == 2
    assert b.backend_pid not in (None, old_b)
