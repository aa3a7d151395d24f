"""Account operations shared by the admin pages and ``stemme user``: add, disable, reset 2FA.

Each is one write transaction with its audit event, and ends the account's sessions where the
change must take effect at once (a disabled account, a lost phone).
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import audit
from bot.errors import NotFound
from bot.ids import uuid7
from bot.inbox import totp
from bot.inbox.sessions import revoke_all
from bot.passwords import hash_password
from bot.storage.db import Database
from bot.storage.models import Caseworker, Role

MIN_PASSWORD = 12
MAX_USERNAME = 64
# Who did it, when no caseworker did (the command line on the server).
CLI_ACTOR = "cli"
USER_ADDED = "user_added"
USER_DISABLED = "user_disabled"
TOTP_RESET = "totp_reset"


class AccountError(ValueError):
    """The request cannot be carried out; ``reason`` is a short key the pages translate."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def add_user(
    db: Database,
    *,
    username: str,
    display_name: str,
    password: str,
    actor: str,
    role: Role = Role.CASEWORKER,
    language: str = "da",
) -> str:
    """A new active account without TOTP (set up at its first login); returns its id.

    Raises:
        AccountError: ``invalid`` (empty or over-long fields, short password) or ``exists``.
    """
    username = username.strip()
    display_name = display_name.strip()
    if (
        not username
        or len(username) > MAX_USERNAME
        or not display_name
        or len(display_name) > 200
        or len(password) < MIN_PASSWORD
        or language not in ("da", "en")
    ):
        raise AccountError("invalid")
    password_hash = hash_password(password)
    worker_id = uuid7()
    try:
        async with db.write() as session:
            session.add(
                Caseworker(
                    id=worker_id,
                    username=username,
                    display_name=display_name,
                    password_hash=password_hash,
                    role=role.value,
                    language=language,
                )
            )
            await session.flush()
            await audit.record(
                session, actor=actor, action=USER_ADDED, detail={"caseworker": worker_id}
            )
    except IntegrityError as exc:
        raise AccountError("exists") from exc
    return worker_id


async def disable_user(db: Database, username: str, *, actor: str) -> int:
    """Deactivate an account and end all its sessions at once; returns how many ended.

    Raises:
        NotFound: no such username.
        AccountError: ``self`` when an admin tries to disable their own account.
    """
    async with db.write() as session:
        worker = await _by_username(session, username)
        if worker.id == actor:
            raise AccountError("self")
        await session.execute(
            update(Caseworker).where(col(Caseworker.id) == worker.id).values(active=False)
        )
        ended = await revoke_all(session, worker.id)
        await audit.record(
            session, actor=actor, action=USER_DISABLED, detail={"caseworker": worker.id}
        )
    return ended


async def reset_totp(db: Database, username: str, *, actor: str) -> int:
    """Forget the account's TOTP secret and end its sessions; setup runs at the next login.

    Raises:
        NotFound: no such username.
    """
    async with db.write() as session:
        worker = await _by_username(session, username)
        await totp.reset(session, worker.id)
        ended = await revoke_all(session, worker.id)
        await audit.record(
            session, actor=actor, action=TOTP_RESET, detail={"caseworker": worker.id}
        )
    return ended


async def _by_username(session: AsyncSession, username: str) -> Caseworker:
    worker = (
        await session.exec(select(Caseworker).where(Caseworker.username == username.strip()))
    ).first()
    if worker is None:
        raise NotFound("caseworker")
    return worker
