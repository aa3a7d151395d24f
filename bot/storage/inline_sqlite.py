"""SQLAlchemy's aiosqlite dialect, with statements run on the event loop instead of a thread.

aiosqlite runs every sqlite3 call on the connection's own thread, and SQLAlchemy's adapter
makes one call for each step of a statement (open a cursor, execute, fetch, close). Each call
is a round trip between the event loop and that thread, and on a busy 2-core machine every
round trip waits for the scheduler: those waits, not SQLite, were most of the time an inbound
message took (``bench/RESULTS.md``). A SQLite statement on a local file takes microseconds,
so this dialect runs it directly, in one step, where the caller is.

What can wait stays on the connection's thread: ``BEGIN IMMEDIATE`` (may wait for another
process's write lock, up to the busy timeout), the ``COMMIT`` of a write transaction (the
fsync, and a WAL checkpoint now and then), opening and closing. WAL readers never wait for
writers, and writers take the lock up front with ``BEGIN IMMEDIATE``, so no other statement
waits on a lock. A read transaction's ``BEGIN`` and ``COMMIT`` and any ``ROLLBACK`` (in WAL
mode it only drops pages from memory) run inline too: a web chat POST's token lookup was two
thread round trips for one indexed read.

The sqlite3 connection is used from two threads, never at once: every use is awaited in turn
under the adapter's per-connection mutex (and sqlite3 is built serialised anyway).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.util.concurrency import await_

DRIVER = "aiosqlite_inline"

_Outcome = tuple[Any, list[Any], int, int | None]
_EMPTY: _Outcome = (None, [], -1, None)


def _run(conn: Any, operation: str, parameters: Any, many: bool) -> _Outcome:
    """Execute, fetch and close in one go."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _may_wait(operation: str) -> bool:
    # BEGIN IMMEDIATE can wait for another process's write lock (busy timeout): off the loop.
    # A plain (deferred) BEGIN takes no lock.
    head = operation.lstrip()[:15].upper()
    return head.startswith("BEGIN") and head.split()[1:2] in (["IMMEDIATE"], ["EXCLUSIVE"])


class InlineCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor that exists only as the outcome of its last statement."""

    __slots__ = ("_outcome",)

    def _make_new_cursor(self, connection: Any) -> Any:
        self._outcome: _Outcome = _EMPTY
        return None

    def _aenter_cursor(self, cursor: Any) -> Any:
        return None

    @property
    def description(self) -> Any:
        return self._outcome[0]

    @property
    def rowcount(self) -> int:
        return self._outcome[2]

    @property
    def lastrowid(self) -> Any:
        return self._outcome[3]

    async def _async_soft_close(self) -> None:
        # The driver cursor is already closed; rows and description stay readable.
        return None

    def close(self) -> None:
        self._rows.clear()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        async with self._adapt_connection._execute_mutex:
            driver = self._connection
            if _may_wait(operation):
                outcome: _Outcome = await driver._execute(
                    _run, driver._conn, operation, parameters, False
                )
                adapted = self._adapt_connection
                assert isinstance(adapted, InlineConnection)
                adapted.writing = True
            else:
                outcome = _run(driver._conn, operation, parameters, False)
            self._outcome = outcome
            self._rows = deque(outcome[1])
            return None

    async def _executemany_async(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        async with self._adapt_connection._execute_mutex:
            driver = self._connection
            self._outcome = _run(driver._conn, operation, seq_of_parameters, True)
            self._rows = deque()
            return None


class InlineConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("writing",)
    _cursor_cls = InlineCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.writing = False  # inside a transaction begun with BEGIN IMMEDIATE

    def commit(self) -> None:
        if self.writing:
            self.writing = False
            super().commit()  # the fsync: on the connection's thread
        else:
            await_(self._inline(self._connection._conn.commit))

    def rollback(self) -> None:
        self.writing = False
        await_(self._inline(self._connection._conn.rollback))

    async def _inline(self, step: Any) -> None:
        if not self._connection._connection:  # closed: as the stock adapter, nothing to do
            return
        async with self._execute_mutex:
            try:
                step()
            except Exception as error:
                self._handle_exception(error)


class InlineDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> InlineConnection:
        kw.pop("async_creator_fn", None)
        # Used from the loop thread too (see the module docstring).
        kw["check_same_thread"] = False
        connection = self.aiosqlite.connect(*arg, **kw)
        connection._thread.daemon = True  # like the stock dialect: never block exit
        return InlineConnection(self, await_(connection))


class InlineDialect(SQLiteDialect_aiosqlite):
    driver = DRIVER
    supports_statement_cache = True  # SQLAlchemy asks each dialect subclass to say so

    @classmethod
    def import_dbapi(cls) -> InlineDBAPI:
        import sqlite3

        import aiosqlite

        return InlineDBAPI(aiosqlite, sqlite3)


registry.register(f"sqlite.{DRIVER}", __name__, "InlineDialect")


def inline_url(url: str) -> URL | str:
    """``sqlite+aiosqlite://…`` with this dialect; other URLs unchanged."""
    parsed = make_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        return parsed.set(drivername=f"sqlite+{DRIVER}")
    return url
