"""Login throttling in the database: at most 5 tries per key within 15 minutes, in every process.

A try is written as a ``login_attempt`` row *before* the password (or TOTP code) is checked and
the rows of a key are deleted when it succeeds, so the rows in the window are exactly the recent
failures plus tries still running. Counting and writing happen in one write transaction, which
SQLite serialises and PostgreSQL orders with a per-key advisory lock, so parallel guesses from
several processes cannot all slip under the limit. The lock-out ends when the oldest of those
tries leaves the window.

Keys are a SHA-256 of the case-folded username, whether or not the account exists, so neither
the lock-out nor the table says which usernames are real; the TOTP step has a key per account.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import delete, func, text
from sqlmodel import col, select

from bot.ids import uuid7
from bot.storage.db import Database
from bot.storage.models import LoginAttempt, utcnow

MAX_FAILURES = 5
WINDOW = dt.timedelta(minutes=15)


def login_key(username: str) -> str:
    """The throttle key of a username as typed (spaces and case do not get around it)."""
    return _hash("login", username.strip().casefold())


def totp_key(caseworker_id: str) -> str:
    """The throttle key of an account's second-factor step."""
    return _hash("totp", caseworker_id)


def _hash(kind: str, value: str) -> str:
    return hashlib.sha256(f"stemme/throttle/{kind}\0{value}".encode()).hexdigest()


async def begin_attempt(db: Database, key: str, *, now: dt.datetime | None = None) -> bool:
    """Record a try for ``key``; False (and nothing recorded) while the key is locked out.

    Args:
        db: the database.
        key: from :func:`login_key` or :func:`totp_key`.
        now: the time of the try (tests pass it; defaults to the clock).
    """
    now = now or utcnow()
    since = now - WINDOW
    async with db.write() as session:
        if not db.is_sqlite:
            # Two processes counting the same key wait for each other; other keys do not.
            lock_id = int(key[:15], 16)
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id})
        # Forget what left the window, for every key: the table stays as small as the traffic.
        await session.execute(delete(LoginAttempt).where(col(LoginAttempt.at) <= since))
        recent = await session.exec(
            select(func.count())
            .select_from(LoginAttempt)
            .where(col(LoginAttempt.key_hash) == key, col(LoginAttempt.at) > since)
        )
        if recent.one() >= MAX_FAILURES:
            return False
        session.add(LoginAttempt(id=uuid7(), key_hash=key, at=now))
    return True


async def is_locked(db: Database, key: str, *, now: dt.datetime | None = None) -> bool:
    """Whether ``key`` has used up its tries (without recording one)."""
    since = (now or utcnow()) - WINDOW
    async with db.read() as session:
        recent = await session.exec(
            select(func.count())
            .select_from(LoginAttempt)
            .where(col(LoginAttempt.key_hash) == key, col(LoginAttempt.at) > since)
        )
        return recent.one() >= MAX_FAILURES


async def succeeded(db: Database, key: str) -> None:
    """The try was right: forget the key's failures."""
    async with db.write() as session:
        await session.execute(delete(LoginAttempt).where(col(LoginAttempt.key_hash) == key))
