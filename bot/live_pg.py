"""Live updates across processes: a :class:`~bot.live.Hub` relayed through PostgreSQL NOTIFY.

With several ``stemme serve`` processes on one PostgreSQL, a caseworker's inbox socket may sit
on process A while the child writes through process B. :class:`PgHub` publishes every event
locally as before and also sends it with ``pg_notify('stemme_live', …)``; it LISTENs on one
dedicated asyncpg connection and re-publishes what other processes sent. Each process tags its
notifications with a random id, so it skips its own (it already delivered them locally).

Callers publish after their transaction committed, so a notification never announces a row a
reader in another process cannot see yet. Events carry ids only, never text; the payload is
still never logged. NOTIFY is not durable: while the connection is down, other processes'
events are missed (the inbox and web chat re-read on reconnect and on the next event), and our
own wait in a bounded queue until the connection is back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import secrets
from collections.abc import Coroutine
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from bot.live import Event, Hub

log = logging.getLogger(__name__)

CHANNEL = "stemme_live"
# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more.
MAX_PAYLOAD = 7999
_NOTIFY = "SELECT pg_notify($1, $2)"
_JITTER = secrets.SystemRandom()
SEND_TIMEOUT = 10.0
KEEPALIVE = 30.0  # seconds idle before the connection is checked


def asyncpg_dsn(url: str) -> str:
    """The plain ``postgresql://`` DSN asyncpg takes, from our SQLAlchemy database URL."""
    parts = make_url(url).set(drivername="postgresql")
    return parts.render_as_string(hide_password=False)


class PgHub(Hub):
    """A hub whose events also reach the hubs of other processes on the same database.

    Args:
        dsn: asyncpg DSN of the database (see :func:`asyncpg_dsn`).
        queue_size: Bound of each subscriber's queue, as for :class:`~bot.live.Hub`.
        backlog: How many outgoing events may wait while the connection is down.
        min_backoff: First reconnect delay in seconds; doubles up to ``max_backoff``.
        max_backoff: Longest reconnect delay in seconds.
    """

    def __init__(
        self,
        dsn: str,
        *,
        queue_size: int = 1000,
        backlog: int = 10_000,
        min_backoff: float = 0.2,
        max_backoff: float = 10.0,
    ) -> None:
        super().__init__(queue_size=queue_size)
        self._dsn = dsn
        self.origin = secrets.token_hex(8)
        self._outgoing: collections.deque[str] = collections.deque()
        self._backlog = backlog
        self._wake = asyncio.Event()
        self._listening = asyncio.Event()
        self._min_backoff, self._max_backoff = min_backoff, max_backoff
        self._task: asyncio.Task[None] | None = None
        self.backend_pid: int | None = None
        """Server process id of the LISTEN connection while it is up (for operators, tests)."""

    def publish(self, topic: str, event: Event) -> None:
        """Deliver ``event`` to this process's subscribers, then queue it for the others."""
        super().publish(topic, event)
        payload = json.dumps({"o": self.origin, "t": topic, "e": event}, separators=(",", ":"))
        if len(payload.encode()) > MAX_PAYLOAD:
            log.error("live event too large to relay; dropped (topic %s)", topic.split(":")[0])
            return
        if len(self._outgoing) >= self._backlog:
            self._outgoing.popleft()
            log.warning("live relay backlog full; dropped the oldest event")
        self._outgoing.append(payload)
        self._wake.set()

    async def start(self, *, wait: float = 5.0) -> None:
        """Start relaying; wait up to ``wait`` seconds for the first LISTEN (not an error)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="live-relay")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout=wait)
        if not self._listening.is_set():
            log.warning("live relay is not connected yet; retrying in the background")

    async def stop(self) -> None:
        """Stop relaying and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = self._min_backoff
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
                delay = self._min_backoff  # connected: the next loss starts over
                await self._serve(conn)
            except Exception as exc:
                # Whatever went wrong, the relay must go on. The type only: messages can quote
                # the DSN's host and user.
                log.warning("live relay connection lost (%s); reconnecting", type(exc).__name__)
            finally:
                self._listening.clear()
                self.backend_pid = None
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(delay * _JITTER.uniform(0.8, 1.2))  # jitter: not all at once
            delay = min(delay * 2, self._max_backoff)

    async def _serve(self, conn: Any) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, self._on_notify)
        self.backend_pid = conn.get_server_pid()
        self._listening.set()
        log.info("live relay listening")
        while True:
            if not self._outgoing:
                self._wake.clear()
                waiters = [
                    asyncio.ensure_future(self._wake.wait()),
                    asyncio.ensure_future(lost.wait()),
                ]
                try:
                    done, _ = await asyncio.wait(
                        waiters, timeout=KEEPALIVE, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    for waiter in waiters:
                        waiter.cancel()
                if not done:
                    # Idle: a silently dead peer (no FIN) is only noticed by asking.
                    await _unless_lost(conn.fetchval("SELECT 1"), lost)
                    continue
            if lost.is_set() or conn.is_closed():
                raise ConnectionError("LISTEN connection closed")
            batch = [self._outgoing.popleft() for _ in range(len(self._outgoing))]
            try:
                await _unless_lost(
                    conn.executemany(_NOTIFY, [(CHANNEL, payload) for payload in batch]), lost
                )
            except BaseException:
                # A batch cut short by a lost connection goes again (an event twice is
                # harmless: subscribers re-read by id).
                self._outgoing.extendleft(reversed(batch))
                raise

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            data = json.loads(payload)
            origin, topic, event = data["o"], data["t"], data["e"]
        except (ValueError, TypeError, KeyError):
            log.warning("live relay ignored a malformed notification")
            return
        if not (isinstance(topic, str) and isinstance(event, dict) and isinstance(origin, str)):
            log.warning("live relay ignored a malformed notification")
            return
        if origin != self.origin:
            Hub.publish(self, topic, event)  # local only: never sent on again


async def _unless_lost(work: Coroutine[Any, Any, object], lost: asyncio.Event) -> None:
    """Run ``work``; give up when the connection is reported lost or after SEND_TIMEOUT.

    A query on a connection the server has just terminated can wait forever in asyncpg: the
    termination listener is what tells us, so the query races it.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(lost.wait())
    try:
        done, _ = await asyncio.wait(
            {task, watcher}, timeout=SEND_TIMEOUT, return_when="FIRST_COMPLETED"
        )
    except BaseException:  # cancelled (stop): the query must not outlive us
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task not in done:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise ConnectionError("LISTEN connection lost while sending")
    task.result()
