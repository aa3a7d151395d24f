"""``stemme case close | shred`` and ``stemme caselog retention``: what they do and print.

Only metadata is printed: counts, case references, reason codes. Nothing is decrypted for
printing, and a dry run decrypts nothing at all.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.case_close import case_id_of, close_case
from bot.caselog.retention import RetentionCounts, plan, sweep
from bot.caselog.retention_shred import ShredRefused, shred_case, shred_due
from bot.keys import KeyService, load_keyring
from bot.settings import Settings
from bot.storage.db import Database

T = TypeVar("T")

REASONS = {
    "shredded": "already shredded",
    "open": "the case is not closed (stemme case close)",
    "unfiled": "participation entries are not yet confirmed filed (stemme caselog status)",
    "pending": "work for the case is still queued",
    "checkin_running": "a check-in is still running (it closes when it expires)",
    "retention": "the retention period since the last filing has not passed",
}


def cmd_case_close(settings: Settings, args: argparse.Namespace) -> int:
    """``stemme case close CASE_REF``."""

    async def run(db: Database) -> str:
        closed = await close_case(db, case_id=await case_id_of(db, args.case_ref), actor="cli")
        if closed.already_closed:
            return f"case {closed.case_ref} was already closed on {closed.closed_at:%Y-%m-%d}"
        return (
            f"case {closed.case_ref} closed; {closed.schedules_stopped} schedules stopped. "
            f"Its data is shredded once every entry is filed and {settings.retention_days} "
            "days have passed."
        )

    print(asyncio.run(_with_db(settings, run)))
    return 0


def cmd_case_shred(settings: Settings, args: argparse.Namespace) -> int:
    """``stemme case shred CASE_REF``: refuses, with reasons, unless the case is ready."""
    keys = KeyService(load_keyring(settings))

    async def run(db: Database) -> str:
        done = await shred_case(
            db,
            keys,
            case_id=await case_id_of(db, args.case_ref),
            actor="cli",
            retention=dt.timedelta(days=settings.retention_days),
        )
        return (
            f"case {done.case_ref} shredded: {done.keys_destroyed} data keys destroyed, "
            f"{done.messages} messages, {done.entries} entries, {done.checkins} check-ins and "
            f"{done.identities} channel identities erased; entry {done.entry_id} (data_erased) "
            "is queued for filing."
        )

    try:
        print(asyncio.run(_with_db(settings, run)))
    except ShredRefused as exc:
        print(f"stemme: case {exc.case_ref} cannot be shredded now:", file=sys.stderr)
        for reason in exc.reasons:
            print(f"  - {REASONS.get(reason, reason)}", file=sys.stderr)
        return 1
    return 0


def cmd_caselog_retention(settings: Settings, args: argparse.Namespace) -> int:
    """``stemme caselog retention [--dry-run]``: what the scheduler's sweep does, now."""
    retention = dt.timedelta(days=settings.retention_days)

    async def run(db: Database) -> list[str]:
        if args.dry_run:
            return _describe(await plan(db, retention=retention), dry_run=True)
        keys = KeyService(load_keyring(settings))
        lines = _describe(await sweep(db, keys, retention=retention), dry_run=False)
        shredded = await shred_due(db, keys, retention=retention)
        lines.append(f"closed cases shredded: {len(shredded)}")
        return lines

    for line in asyncio.run(_with_db(settings, run)):
        print(line)
    return 0


def _describe(counts: RetentionCounts, *, dry_run: bool) -> list[str]:
    verb = "would remove" if dry_run else "removed"
    lines = [
        f"retention: {verb} the local copy of {counts.entries} filed entries "
        f"in {counts.cases} cases",
        f"  messages: {counts.messages}",
        f"  check-ins: {counts.checkins}",
    ]
    lines += [f"  kind {kind}: {n}" for kind, n in sorted(counts.by_kind.items())]
    if dry_run:
        lines.append(f"kept, not yet confirmed filed: {counts.kept_unfiled}")
        lines.append(f"kept, filed within the retention period: {counts.kept_in_period}")
    return lines


async def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    db = Database(settings.effective_database_url)
    try:
        return await work(db)
    finally:
        await db.dispose()
