"""Tests for the throwaway PostgreSQL server helper, against a real server."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import asyncpg  # type: ignore[import-untyped]
import pytest

# Relative import: works whether pytest names this package `support` or `tests.support`.
from .pgserver import PgServer, create_database, drop_database, find_pg_bindir, start_pg, stop_pg

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    server = start_pg()
    yield server
    stop_pg(server)


def test_binaries_are_installed() -> None:
    # No skip when missing: CI must install postgresql (scripts/install-system-deps.sh).
    assert find_pg_bindir() is not None


def test_urls(pg: PgServer) -> None:
    assert pg.url("app") == f"postgresql+asyncpg://postgres@127.0.0.1:{pg.port}/app"
    assert pg.dsn() == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"


@pytest.mark.asyncio
async def test_connects_to_real_postgres(pg: PgServer) -> None:
    conn = await asyncpg.connect(pg.dsn())
    try:
        assert "PostgreSQL" in await conn.fetchval("SELECT version()")
        assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
        assert await conn.fetchval("SHOW fsync") == "off"
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_clone_from_template_then_drop(pg: PgServer) -> None:
    template, clone = "tpl", 'clone "with" quotes'  # The clone name exercises quoting.
    await create_database(pg, template)
    conn = await asyncpg.connect(pg.dsn(template))
    try:
        await conn.execute("CREATE TABLE item (id int PRIMARY KEY, name text)")
        await conn.execute("INSERT INTO item VALUES (1, 'seed')")
    finally:
        await conn.close()  # CREATE DATABASE ... TEMPLATE fails while the template is in use.

    await create_database(pg, clone, template=template)
    conn = await asyncpg.connect(pg.dsn(clone))
    try:
        assert await conn.fetch("SELECT id, name FROM item") == [(1, "seed")]
    finally:
        await conn.close()

    await drop_database(pg, clone)
    await drop_database(pg, clone)  # Already gone: still fine.
    admin = await asyncpg.connect(pg.dsn())
    try:
        names = {r["datname"] for r in await admin.fetch("SELECT datname FROM pg_database")}
    finally:
        await admin.close()
    assert template in names
    assert clone not in names


def test_stop_closes_port_and_removes_tempdir() -> None:
    server = start_pg()
    try:
        socket.create_connection((server.host, server.port), timeout=5).close()
    finally:
        stop_pg(server)
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=5).close()
    assert not server.tempdir.exists()
    stop_pg(server)  # Stopping again must not raise.
