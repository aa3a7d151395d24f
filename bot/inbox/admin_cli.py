"""``stemme user reset-2fa|disable``, ``stemme audit verify`` and the demo caseworker's TOTP.

``stemme user add`` leaves TOTP to the first login: the secret is then made and shown only on
the caseworker's own screen, so it never passes through an admin's terminal, shell history or
a mail. The demo is the exception: it has no phone to hand, so it prints its secret.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlmodel import select

from bot import audit
from bot.errors import NotFound
from bot.inbox import totp
from bot.inbox.admin_accounts import CLI_ACTOR, AccountError, disable_user, reset_totp
from bot.keys import KeyService, load_keyring
from bot.settings import ConfigError, Settings
from bot.storage.db import Database
from bot.storage.models import Caseworker

T = TypeVar("T")


async def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    db = Database(settings.effective_database_url)
    try:
        return await work(db)
    finally:
        await db.dispose()


def cmd_user_reset_2fa(settings: Settings, args: argparse.Namespace) -> int:
    try:
        ended = asyncio.run(
            _with_db(settings, lambda db: reset_totp(db, args.username, actor=CLI_ACTOR))
        )
    except NotFound:
        print(f"stemme: no user {args.username!r}", file=sys.stderr)
        return 1
    print(
        f"Two-step verification of {args.username} reset; {ended} session(s) ended. "
        "They set it up again at their next login."
    )
    return 0


def cmd_user_disable(settings: Settings, args: argparse.Namespace) -> int:
    try:
        ended = asyncio.run(
            _with_db(settings, lambda db: disable_user(db, args.username, actor=CLI_ACTOR))
        )
    except NotFound:
        print(f"stemme: no user {args.username!r}", file=sys.stderr)
        return 1
    except AccountError as exc:
        print(f"stemme: {exc.reason}", file=sys.stderr)
        return 1
    print(f"Disabled {args.username}; {ended} session(s) ended.")
    return 0


def cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    status = asyncio.run(_with_db(settings, audit.verify_log))
    if status.broken is not None:
        print(f"stemme: audit log BROKEN: {status.broken.describe()}", file=sys.stderr)
        print(f"intact before it: {status.count} event(s)", file=sys.stderr)
        return 1
    print(f"audit log intact: {status.count} event(s)")
    if status.head_seq is not None:
        # Deleting the newest rows leaves no trace in the chain; keep this line to compare.
        print(f"head: seq {status.head_seq} {status.head_hash}")
    return 0


async def demo_totp(settings: Settings, username: str) -> tuple[str, str]:
    """A fresh, confirmed TOTP secret for the demo caseworker: (secret, otpauth URI)."""
    if settings.production:
        raise ConfigError("the demo caseworker's TOTP secret is never printed in production")
    keys = KeyService(load_keyring(settings))
    secret = totp.new_secret()

    async def work(db: Database) -> None:
        async with db.write() as session:
            worker = (
                await session.exec(select(Caseworker).where(Caseworker.username == username))
            ).one()
            await totp.install(session, keys, worker.id, secret)

    await _with_db(settings, work)
    return secret, totp.provisioning_uri(secret, username)


def demo_code(settings: Settings, username: str) -> str:
    """The demo caseworker's current code (demo only: an authenticator app for a laptop)."""
    if settings.production:
        raise ConfigError("`stemme demo --code` is refused in production")
    keys = KeyService(load_keyring(settings))

    async def work(db: Database) -> str:
        async with db.read() as session:
            worker = (
                await session.exec(select(Caseworker).where(Caseworker.username == username))
            ).first()
        if worker is None or worker.totp_secret_enc is None:
            raise NotFound("demo caseworker (run `stemme demo` first)")
        secret = totp.unseal(keys, worker.id, worker.totp_secret_enc)
        return totp.code_at(secret, totp.current_step())

    return asyncio.run(_with_db(settings, work))
