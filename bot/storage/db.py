"""The async engine and the two ways to use it: a read, or a write transaction.

SQLite is the embedded default: WAL journal, ``synchronous=FULL`` (a commit survives power loss),
and every write transaction starts with ``BEGIN IMMEDIATE`` so two writers never deadlock on a
lock upgrade. Inside one process, writers also queue on an asyncio lock instead of spinning on
SQLite's busy timeout. PostgreSQL (asyncpg) is chosen by the URL and needs neither.

The hot path (inbound messages) writes through :attr:`Database.group`, which lets concurrent
requests share one durable transaction (``bot/storage/group.py``). On SQLite, statements go
run on the event loop, not a thread per hop (``bot/storage/inline_sqlite.py``), and the pool is
fixed-size: connections are opened once, not per burst (each new one is a thread, four PRAGMAs
and a schema read).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.storage.group import BulkWork, GroupWriter, Work
from bot.storage.inline_sqlite import inline_url

_WRITE = "stemme_write"
T = TypeVar("T")
# SQLite: enough connections for the concurrent readers of a busy server, never more (overflow
# connections were opened and closed per burst). PostgreSQL: a busy web chat reads its link on
# every POST, and connections opened beyond the pool are closed again at once (10 kept made 32
# senders open and close ~20 per burst: 237 → 343 msgs/s); 40 per process leaves two processes
# within PostgreSQL's default max_connections (docs/operations.md).
SQLITE_POOL = 24
PG_POOL, PG_OVERFLOW = 24, 16


class Database:
    """Owns the engine. ``async with db.write() as s`` is one durable transaction."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        engine_url: Any = url
        if self.is_sqlite:
            path = url.split(":///", 1)[1] if ":///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                # SQLite gives -wal and -shm the main file's mode: owner only, like the keys.
                Path(path).touch(mode=0o600, exist_ok=True)
                kwargs.update(pool_size=SQLITE_POOL, max_overflow=0)
            kwargs["connect_args"] = {"timeout": 30}
            engine_url = inline_url(url)
        else:
            kwargs.update(pool_size=PG_POOL, max_overflow=PG_OVERFLOW, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(engine_url, **kwargs)
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self.group = GroupWriter(self.write)

    async def grouped(self, work: Work[T]) -> T:
        """Run ``work(session)`` in a transaction shared with concurrent callers (group commit).

        Returns only after that transaction has committed. ``work`` may run twice (alone, after
        a shared transaction failed), so its effects must stay inside the session.
        """
        return await self.group.run(work)

    async def grouped_bulk(self, bulk: BulkWork, item: Any) -> Any:
        """Like :meth:`grouped`, for an item that ``bulk`` stores together with its neighbours.

        ``bulk(session, items)`` gets every such item of the shared transaction at once and
        returns one result per item; alone (after a failed batch) it gets a list of one.
        """
        return await self.group.run_bulk(bulk, item)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        lock = self._write_lock if self._write_lock is not None else nullcontext()
        async with lock, self.engine.connect() as conn:
            conn = await conn.execution_options(**{_WRITE: True})
            async with AsyncSession(bind=conn, expire_on_commit=False) as session, session.begin():
                yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only snapshot (deferred transaction on SQLite)."""
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            yield session

    async def dispose(self) -> None:
        await self.group.aclose()
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions are off).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_WRITE):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")
