"""``/readyz``: may a load balancer send this process traffic?

Ready means: the database answers, its schema is at the migrations' head (a process started
against an older schema would fail on its first write), and the outbox keeps up — the oldest job
that is due has waited less than ``STEMME_READY_MAX_OUTBOX_LAG_SECONDS``. The answer names the
check that failed, never a database URL, host, user or exception text (``/readyz`` is public).

``/healthz`` (in :mod:`bot.app`) stays the liveness check: it answers while the process runs, so
an orchestrator does not restart a process only because the database is away.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field
from functools import cache

from aiohttp import web
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import appkeys
from bot.storage.db import Database
from bot.storage.migrate import alembic_config
from bot.storage.models import Outbox, OutboxStatus, utcnow

log = logging.getLogger(__name__)

DB_TIMEOUT = 3.0  # seconds; a database slower than this is as good as away for a probe


@cache
def migrations_head() -> str | None:
    """The newest revision the code ships (read once: the files do not change while running)."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def outbox_lag(session: AsyncSession, now: dt.datetime) -> float:
    """Seconds the oldest due, pending outbox job has waited (0 when none is due).

    Due means ``next_attempt_at <= now``: a job backing off after a failure is not late, so a
    receiver that is down does not make every process unready (dead letters alert instead).
    """
    oldest = (
        await session.exec(
            select(func.min(Outbox.next_attempt_at)).where(
                Outbox.status == OutboxStatus.PENDING.value, col(Outbox.next_attempt_at) <= now
            )
        )
    ).one()
    if oldest is None:
        return 0.0
    return max(0.0, (now - _aware(oldest)).total_seconds())


def _aware(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Readiness:
    """The outcome of the checks; ``reason`` says which failed first (None when ready)."""

    ready: bool
    reason: str | None = None
    checks: dict[str, object] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        body: dict[str, object] = {"status": "ready" if self.ready else "not ready"}
        if self.reason is not None:
            body["reason"] = self.reason
        body["checks"] = self.checks
        return body


async def check_readiness(db: Database, *, max_outbox_lag: float) -> Readiness:
    """Runs the three checks in one short read; never raises for a database problem."""
    checks: dict[str, object] = {}
    try:
        async with asyncio.timeout(DB_TIMEOUT), db.read() as session:
            await session.execute(text("SELECT 1"))
            checks["database"] = "ok"
            current = (
                await session.execute(text("SELECT version_num FROM alembic_version"))
            ).scalar_one_or_none()
            head = migrations_head()
            checks["schema"] = "ok" if current == head else "behind"
            lag = await outbox_lag(session, utcnow())
    except Exception as exc:  # a probe answers, whatever the database did
        # The exception text can hold the host and user name: only its type is logged.
        log.warning("readiness: database check failed (%s)", type(exc).__name__)
        if checks.get("database") == "ok":
            return Readiness(False, "database query failed", checks)
        checks["database"] = "unreachable"
        return Readiness(False, "database unreachable", checks)
    checks["outbox_lag_seconds"] = round(lag, 1)
    if checks["schema"] != "ok":
        return Readiness(False, "database schema is not at the migrations' head", checks)
    if lag > max_outbox_lag:
        return Readiness(False, "outbox lag over the threshold", checks)
    return Readiness(True, None, checks)


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 when ready, else 503 with the reason (JSON, no secrets)."""
    settings = request.config_dict[appkeys.SETTINGS]
    result = await check_readiness(
        request.config_dict[appkeys.DB], max_outbox_lag=settings.ready_max_outbox_lag_seconds
    )
    return web.json_response(
        result.as_json(),
        status=200 if result.ready else 503,
        headers={"Cache-Control": "no-store"},
    )
