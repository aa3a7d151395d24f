"""Shared fixtures: a clean environment, and one storage fixture over SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.crypto import Keyring
from bot.keys import KeyService
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.migrate import upgrade
from tests.support.pgserver import PgServer, create_database, drop_database, start_pg, stop_pg

TEMPLATE_DB = "stemme_template"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test an id of its own and, under ``--dist loadgroup``, its xdist group.

    pytest-xdist hands out tests by node id. Two things go wrong with pytest 9 otherwise:
    schemathesis names each operation's test ``test_x[GET /path]`` but its node id lacks the
    ``[...]``, so xdist would run only the first of them; and xdist appends ``@group`` to the
    old ``_nodeid`` attribute, which pytest 9 no longer reads, so groups would be ignored.
    """
    seen: set[str] = set()
    for item in items:
        nodeid = item.nodeid
        if nodeid in seen and item.parent is not None:
            nodeid = f"{item.parent.nodeid}::{item.name}"
        seen.add(nodeid)
        group = item.get_closest_marker("xdist_group")
        # xdist's own flag: workers see `loadgroup`, while their `dist` option reads "no".
        if group is not None and getattr(config.option, "loadgroup", False):
            nodeid = f"{nodeid}@{group.args[0]}"
        if nodeid != item.nodeid:
            _set_nodeid(item, nodeid)


def _set_nodeid(item: pytest.Item, nodeid: str) -> None:
    # pytest 9 keeps a structured id in `_id`; pytest 8 the string in `_nodeid`.
    if hasattr(item, "_id"):
        item._id = type(item._id).parse(nodeid)
    else:
        item._nodeid = nodeid  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from an environment without STEMME_* settings."""
    for name in list(os.environ):
        if name.startswith("STEMME_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One throwaway PostgreSQL for the run, with a migrated template database."""
    server = start_pg()
    try:
        asyncio.run(create_database(server, TEMPLATE_DB))
        upgrade(server.url(TEMPLATE_DB))
        yield server
    finally:
        stop_pg(server)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "stemme.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated database URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "stemme.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name = f"t_{uuid4().hex[:12]}"
    asyncio.run(create_database(server, name, template=TEMPLATE_DB))
    try:
        yield server.url(name)
    finally:
        asyncio.run(drop_database(server, name))


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate()


@pytest.fixture
def keys(keyring: Keyring) -> KeyService:
    return KeyService(keyring)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    # A line staffed around the clock: no out-of-hours reply that depends on when tests run.
    # The bot's own tests set office hours and move the clock themselves.
    return Settings.from_env(
        {},
        data_dir=tmp_path,
        database_url=db_url,
        office_hours="00:00-24:00",
        office_days="1-7",
        sandbox_port=0,  # the demo's fake providers on free ports, never a fixed one
    )


@pytest.fixture
async def client(settings: Settings, keyring: Keyring) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The whole app on a real socket on 127.0.0.1, with the outbox worker running."""
    app = create_app(settings, keyring=keyring)
    async with TestClient(TestServer(app, host="127.0.0.1")) as test_client:
        yield test_client
