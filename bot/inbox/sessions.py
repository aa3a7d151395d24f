"""Server-side inbox sessions: created at login, checked on every request, revoked at logout.

The cookie holds a random token; the ``inbox_session`` row is keyed by its SHA-256, so the
table alone cannot be replayed. A session ends at whichever comes first: logout, the idle
timeout, the absolute lifetime, "log out everywhere", or the caseworker's account being
deactivated.

A row in stage ``password`` is the short step between the password and the TOTP code: it opens
no inbox page (:func:`find_login` ignores it), lives a few minutes, and is revoked when the code
is right, when a brand-new ``full`` session with a new id takes its place.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.inbox.security import new_token, token_id
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.models import Caseworker, InboxSession, Role, utcnow

# Refreshing ``last_seen_at`` on every click would make every page view a write; a minute of
# slack on a 30-minute idle timeout is immaterial.
TOUCH_AFTER = dt.timedelta(minutes=1)
# Time to type a code (or scan a QR code and type one) after the password was right.
SECOND_FACTOR_LIFETIME = dt.timedelta(minutes=10)
FULL = "full"
PASSWORD_DONE = "password"  # noqa: S105  (a stage name, not a password)


@dataclass(frozen=True, slots=True)
class Login:
    """The signed-in caseworker of a request."""

    session_id: str
    caseworker_id: str
    display_name: str
    language: str
    csrf_token: str
    role: str = Role.CASEWORKER.value


@dataclass(frozen=True, slots=True)
class Limits:
    idle: dt.timedelta
    absolute: dt.timedelta

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            idle=dt.timedelta(minutes=settings.session_idle_minutes),
            absolute=dt.timedelta(hours=settings.session_absolute_hours),
        )


async def start_session(
    session: AsyncSession, *, caseworker_id: str, limits: Limits, stage: str = FULL
) -> str:
    """A new session row in the caller's write transaction; returns the cookie token.

    Args:
        session: the caller's write transaction.
        caseworker_id: whose session it is.
        limits: the idle and absolute timeouts of a full session.
        stage: ``full`` after both factors; ``password`` for the short second-factor step.
    """
    token = new_token()
    now = utcnow()
    lifetime = limits.absolute if stage == FULL else SECOND_FACTOR_LIFETIME
    session.add(
        InboxSession(
            id=token_id(token),
            caseworker_id=caseworker_id,
            csrf_token=new_token(),
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetime,
            stage=stage,
        )
    )
    return token


async def revoke_all(session: AsyncSession, caseworker_id: str) -> int:
    """End every session of a caseworker (log out everywhere, disable, 2FA reset)."""
    result = await session.execute(
        update(InboxSession)
        .where(
            col(InboxSession.caseworker_id) == caseworker_id,
            col(InboxSession.revoked_at).is_(None),
        )
        .values(revoked_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def revoke(session: AsyncSession, token: str) -> None:
    await session.execute(
        update(InboxSession)
        .where(col(InboxSession.id) == token_id(token), col(InboxSession.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )


def is_live(row: InboxSession, limits: Limits, now: dt.datetime) -> bool:
    """Not revoked, not idle too long, within its absolute lifetime."""
    if row.revoked_at is not None:
        return False
    if now >= row.expires_at or now >= row.created_at + limits.absolute:
        return False
    return now < row.last_seen_at + limits.idle


async def find_login(session: AsyncSession, session_id: str, limits: Limits) -> Login | None:
    """The login behind a session id, if the session and the account are both still valid."""
    row = await session.get(InboxSession, session_id)
    if row is None or row.stage != FULL or not is_live(row, limits, utcnow()):
        return None
    worker = await session.get(Caseworker, row.caseworker_id)
    if worker is None or not worker.active:
        return None
    return Login(
        session_id=row.id,
        caseworker_id=worker.id,
        display_name=worker.display_name,
        language=worker.language,
        csrf_token=row.csrf_token,
        role=worker.role,
    )


async def authenticate(db: Database, token: str | None, limits: Limits) -> Login | None:
    """The login for a cookie token, refreshing the idle timer (at most once a minute)."""
    if not token:
        return None
    session_id = token_id(token)
    async with db.read() as session:
        login = await find_login(session, session_id, limits)
        row = await session.get(InboxSession, session_id) if login is not None else None
    if login is None or row is None:
        return None
    now = utcnow()
    if now - row.last_seen_at >= TOUCH_AFTER:
        async with db.write() as session:
            await session.execute(
                update(InboxSession)
                .where(col(InboxSession.id) == session_id, col(InboxSession.revoked_at).is_(None))
                .values(last_seen_at=now)
            )
    return login


async def still_valid(db: Database, session_id: str, limits: Limits) -> bool:
    """For long-lived connections: is the session behind them still valid (no refresh)?"""
    async with db.read() as session:
        return await find_login(session, session_id, limits) is not None


async def second_factor_login(
    db: Database, token: str | None, limits: Limits
) -> tuple[InboxSession, Caseworker] | None:
    """The pending second-factor step behind a cookie token, if it is still valid."""
    if not token:
        return None
    async with db.read() as session:
        row = await session.get(InboxSession, token_id(token))
        if row is None or row.stage != PASSWORD_DONE or not is_live(row, limits, utcnow()):
            return None
        worker = await session.get(Caseworker, row.caseworker_id)
    if worker is None or not worker.active:
        return None
    return row, worker
