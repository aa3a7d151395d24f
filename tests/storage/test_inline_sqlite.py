"""The inline SQLite dialect: the stock dialect's results, and lock waits off the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import CursorResult

from bot.storage.db import Database
from bot.storage.inline_sqlite import DRIVER, inline_url


def test_only_aiosqlite_urls_change() -> None:
    assert str(inline_url("sqlite+aiosqlite:///x.db")) == f"sqlite+{DRIVER}:///x.db"
    assert inline_url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"


async def test_statements_return_rows_counts_and_ids(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        assert db.engine.dialect.driver == DRIVER
        assert db.engine.dialect.supports_statement_cache  # else every statement recompiles
        async with db.write() as session:
            await session.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
            inserted = await session.execute(text("INSERT INTO t (v) VALUES ('a')"))
            assert isinstance(inserted, CursorResult) and inserted.lastrowid == 1
            await session.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": "b"}, {"v": "c"}])
            updated = await session.execute(text("UPDATE t SET v = 'z' WHERE id > 1"))
            assert isinstance(updated, CursorResult) and updated.rowcount == 2
            empty = await session.execute(text("SELECT id, v FROM t WHERE id > 100"))
            assert list(empty.keys()) == ["id", "v"] and empty.all() == []
        async with db.read() as session:
            rows = (await session.execute(text("SELECT id, v FROM t ORDER BY id"))).all()
        assert [tuple(r) for r in rows] == [(1, "a"), (2, "z"), (3, "z")]
    finally:
        await db.dispose()


async def test_waiting_for_another_process_lock_does_not_stall_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.write() as session:
            await session.execute(text("CREATE TABLE t (v TEXT)"))
        other = sqlite3.connect(path, isolation_level=None)  # another process, as far as locks go
        other.execute("BEGIN IMMEDIATE")
        ticks = 0
        written = asyncio.Event()

        async def write() -> None:
            async with db.write() as s:
                await s.execute(text("INSERT INTO t VALUES ('ours')"))
            written.set()

        task = asyncio.ensure_future(write())
        # The writer waits in BEGIN IMMEDIATE (busy timeout) on its own thread; the loop runs.
        while ticks < 20:
            await asyncio.sleep(0.01)
            ticks += 1
        assert not written.is_set()
        other.execute("INSERT INTO t VALUES ('theirs')")
        other.execute("COMMIT")
        other.close()
        await task
        async with db.read() as session:
            values = (await session.execute(text("SELECT v FROM t ORDER BY rowid"))).scalars()
            assert list(values) == ["theirs", "ours"]
    finally:
        await db.dispose()
