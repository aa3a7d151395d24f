"""Master key rotation: add a version, re-wrap every case's data key to it, retire the old one.

``stemme keys rotate`` adds a master key version and makes it current. With a key file, the file
is rewritten (atomically) and every ``case_key`` row is then re-wrapped to the new version in
small transactions, while the service keeps running: each batch holds the write lock for a few
milliseconds, running processes notice the changed file (:meth:`KeyService.refresh`) before they
wrap a new case key or when they meet the new version, and the data keys themselves do not
change, so nothing encrypted with them is touched and every cached key stays valid. With keys in
the environment the new ``STEMME_MASTER_KEY`` value is printed instead; once every process runs
with it, ``stemme keys rewrap`` re-wraps the rows.

``stemme keys retire VERSION`` removes a master version, but only when no live ``case_key`` row
(and no pending enrolment prompt, which uses the service's own key derived from a master
version) still needs it. Shredded rows (``wrapped`` NULL or ``destroyed_at`` set) are skipped:
there is nothing left to unwrap.

The index key (blind indexes of addresses, web chat tokens, enrolment codes) is never rotated
here: those digests are stored instead of the values, so they cannot be recomputed (see
docs/operations.md, "Keys").
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import ColumnElement
from sqlmodel import col, func, select

from bot.crypto import CryptoError, Keyring, data_key_version_of, rewrap_data_key
from bot.keys import key_file_of, load_keyring
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.models import CaseKey, PendingReply

BATCH = 100


class RetireRefused(Exception):
    """The version is current, unknown, or still referenced; the message says which."""


@dataclass(frozen=True, slots=True)
class RewrapResult:
    """What a re-wrap pass did: rows moved to ``version``, rows that failed to unwrap."""

    version: int
    rewrapped: int
    failed: tuple[str, ...] = ()  # case ids (no key material); tampered or unknown version


def _live() -> tuple[ColumnElement[bool], ...]:
    return (col(CaseKey.wrapped).is_not(None), col(CaseKey.destroyed_at).is_(None))


async def rewrap_all(
    db: Database,
    keyring: Keyring,
    *,
    batch: int = BATCH,
    progress: Callable[[int], None] | None = None,
) -> RewrapResult:
    """Re-wraps every live ``case_key`` row not yet under ``keyring.current_version``.

    One short write transaction per ``batch`` rows, so inbound traffic interleaves. On
    PostgreSQL rows locked by another transaction (a case being shredded) are skipped for now
    and taken in a later pass. A row that fails to unwrap is left as it is and reported.
    """
    target = keyring.current_version
    done, failed = 0, set[str]()
    while True:
        query = (
            select(CaseKey)
            .where(col(CaseKey.master_version) != target, *_live())
            .order_by(col(CaseKey.case_id), col(CaseKey.version))
            .limit(batch)
        )
        if failed:
            query = query.where(col(CaseKey.case_id).not_in(sorted(failed)))
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        async with db.write() as session:
            rows = (await session.exec(query)).all()
            for row in rows:
                assert row.wrapped is not None  # the query asked for live rows only
                try:
                    row.wrapped = rewrap_data_key(
                        keyring, row.wrapped, case_id=row.case_id, data_key_version=row.version
                    )
                except CryptoError:
                    failed.add(row.case_id)
                    continue
                row.master_version = target
                done += 1
        if progress is not None:
            progress(done)
        if not rows:
            if not await _remaining(db, target, exclude=failed):
                return RewrapResult(target, done, tuple(sorted(failed)))
            await asyncio.sleep(0.05)  # the rest is locked by another transaction right now


async def _remaining(db: Database, target: int, *, exclude: set[str]) -> int:
    query = (
        select(func.count())
        .select_from(CaseKey)
        .where(col(CaseKey.master_version) != target, *_live())
    )
    if exclude:
        query = query.where(col(CaseKey.case_id).not_in(sorted(exclude)))
    async with db.read() as session:
        return int((await session.exec(query)).one())


async def references(db: Database, version: int) -> tuple[int, int]:
    """(live case keys, pending enrolment prompts) that still need master ``version``."""
    async with db.read() as session:
        keys = (
            await session.exec(
                select(func.count())
                .select_from(CaseKey)
                .where(col(CaseKey.master_version) == version, *_live())
            )
        ).one()
        # Few rows (deleted once sent); the version is in each blob's header, not a column.
        blobs = (await session.exec(select(PendingReply.address_enc))).all()
    prompts = sum(1 for blob in blobs if _version_or_none(blob) == version)
    return int(keys), prompts


def _version_or_none(blob: bytes) -> int | None:
    try:
        return data_key_version_of(blob)
    except CryptoError:
        return None


async def retire(db: Database, keyring: Keyring, version: int) -> Keyring:
    """The keyring without master ``version``, if nothing needs it any more.

    Raises:
        RetireRefused: ``version`` is the current one, not in the keyring, or still referenced.
    """
    if version not in keyring.master_keys:
        raise RetireRefused(f"master key version {version} is not in the keyring")
    if version == keyring.current_version:
        raise RetireRefused(
            f"master key version {version} is the current one: run `stemme keys rotate` first"
        )
    keys, prompts = await references(db, version)
    if keys or prompts:
        raise RetireRefused(
            f"master key version {version} still wraps {keys} case key(s) and {prompts} "
            "pending prompt(s): run `stemme keys rewrap` (and let the outbox send the prompts)"
        )
    remaining = {v: k for v, k in keyring.master_keys.items() if v != version}
    return replace(keyring, master_keys=remaining)


def master_key_env(keyring: Keyring) -> str:
    """The ``STEMME_MASTER_KEY`` value for ``keyring`` (every version; the highest is current)."""
    return ",".join(
        f"{v}:{base64.urlsafe_b64encode(k).decode('ascii')}"
        for v, k in sorted(keyring.master_keys.items())
    )


# -- the commands (bot.cli wires them) -------------------------------------------------------


async def rotate_command(
    settings: Settings,
    *,
    batch: int = BATCH,
    rewrap: bool = True,
    out: Callable[[str], None] = print,
) -> int:
    """``stemme keys rotate``: a new current master version; re-wrap when keys are in a file.

    ``rewrap=False`` only adds the version, for processes that read a copy of the key file
    (systemd ``LoadCredential``, a single-file Docker secret): restart them, then rewrap.
    """
    keyring = load_keyring(settings)
    rotated = keyring.with_new_version()
    key_file = key_file_of(settings)
    if key_file is None:
        out("# Keys come from the environment. Set this everywhere Stemme runs, restart every")
        out("# process, then run `stemme keys rewrap`:")
        out(f"STEMME_MASTER_KEY={master_key_env(rotated)}")
        return 0
    rotated.save(key_file)
    out(f"Master key version {rotated.current_version} added to {key_file} and made current.")
    if not rewrap:
        out("Restart every Stemme process, then run `stemme keys rewrap`.")
        return 0
    return await rewrap_command(settings, batch=batch, out=out)


async def rewrap_command(
    settings: Settings, *, batch: int = BATCH, out: Callable[[str], None] = print
) -> int:
    """``stemme keys rewrap``: every live case key to the current master version."""
    keyring = load_keyring(settings)
    db = Database(settings.effective_database_url)
    try:
        result = await rewrap_all(db, keyring, batch=batch)
    finally:
        await db.dispose()
    out(f"Re-wrapped {result.rewrapped} case key(s) to master key version {result.version}.")
    if result.failed:
        out(
            f"Could not unwrap the keys of {len(result.failed)} case(s): "
            + ", ".join(result.failed)
        )
        return 1
    return 0


async def retire_command(
    settings: Settings, version: int, *, out: Callable[[str], None] = print
) -> int:
    """``stemme keys retire VERSION``: refused (exit 1) while anything still needs it."""
    keyring = load_keyring(settings)
    db = Database(settings.effective_database_url)
    try:
        smaller = await retire(db, keyring, version)
    except RetireRefused as exc:
        out(f"stemme: refused: {exc}")
        return 1
    finally:
        await db.dispose()
    key_file = key_file_of(settings)
    if key_file is None:
        out("# Set this everywhere Stemme runs, then restart every process:")
        out(f"STEMME_MASTER_KEY={master_key_env(smaller)}")
        return 0
    smaller.save(key_file)
    out(f"Master key version {version} removed from {key_file}.")
    return 0
