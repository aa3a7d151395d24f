"""Filing a case's participation entries from the outbox, as one batch.

The claimed runs of ``caselog`` jobs (each one case's, in ``seq`` order) are filed together:
one read of all their entries, decrypted in one session (one key check per case), each case's
handed to each sink in order (:func:`bot.caselog.sinks.deliver_many`; the JSONL sink writes
what the cases hand it at the same time with one fsync), then one update marks the filed ones
filed and their jobs done.

A failure keeps the guarantees of filing one by one: the entries before the first one that some
sink did not confirm are done; that entry is retried (with backoff), and the ones after it are
given back, held behind it. Each sink sees a case's entries in order, at least once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.caselog.entries import FIELD as ENTRY_FIELD
from bot.caselog.entries import TABLE as ENTRY_TABLE
from bot.caselog.sinks import Sink, SinkError, deliver_many
from bot.keys import KeyService
from bot.outbox_claim import Job, finish
from bot.storage.db import Database
from bot.storage.models import ParticipationEntry, utcnow

log = logging.getLogger(__name__)

_E = ParticipationEntry.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Filed:
    """The outcome of filing a run: ``done`` jobs, and the first one that failed, if any."""

    done: int
    error: str | None = None


async def file_runs(
    db: Database, keys: KeyService, sinks: Sequence[Sink], runs: Sequence[Sequence[Job]]
) -> list[Filed]:
    """File the entries of each run (one case's jobs, in order) with every sink.

    The entries of all runs are read in one query and session; the cases go to the sinks side
    by side; the filed ones of all runs are recorded in one update.

    Returns, per run, how many jobs at its start are done; if fewer than all, ``error`` is the
    (storable, content-free) reason the next one failed.
    """
    read = await _read(db, keys, runs)
    counts = await asyncio.gather(
        *(_deliver(sinks, jobs, entries) for jobs, (entries, _) in zip(runs, read, strict=True))
    )
    done = [job for jobs, (count, _) in zip(runs, counts, strict=True) for job in jobs[:count]]
    if done:
        await _record(db, done)
    outcome: list[Filed] = []
    for jobs, (_entries, read_error), (count, sink_error) in zip(runs, read, counts, strict=True):
        error = sink_error or read_error
        outcome.append(Filed(count, error if count < len(jobs) else None))
    return outcome


async def _deliver(
    sinks: Sequence[Sink], jobs: Sequence[Job], entries: list[dict[str, Any]]
) -> tuple[int, str | None]:
    """Hand one case's entries to each sink in turn; how many were filed by all, and why not."""
    count, error = len(entries), None
    for sink in sinks:
        if count == 0:
            break
        try:
            await deliver_many(sink, entries[:count])
        except SinkError as exc:
            count = max(0, min(count - 1, exc.filed))  # at least the failed one is out
            error = exc.reason
            log.info("participation entry %s not filed yet: %s", jobs[count].ref_id, exc.reason)
    return count, error


async def _read(
    db: Database, keys: KeyService, runs: Sequence[Sequence[Job]]
) -> list[tuple[list[dict[str, Any]], str | None]]:
    """Per run, the payloads in order up to the first that cannot be read (and why)."""
    ids = [job.ref_id for jobs in runs for job in jobs]
    out: list[tuple[list[dict[str, Any]], str | None]] = []
    async with db.read() as session:
        query = select(_E.c.id, _E.c.case_id, _E.c.payload_enc, _E.c.payload_json).where(
            _E.c.id.in_(ids)
        )
        rows = {row.id: row for row in (await session.execute(query)).all()}
        # Every case's key checked in one query (not one per case, per round).
        await keys.preload(session, [row.case_id for row in rows.values()])
        for jobs in runs:
            payloads: list[dict[str, Any]] = []
            error: str | None = None
            for job in jobs:
                row = rows.get(job.ref_id)
                if row is None:
                    error = "LookupError"
                    break
                try:
                    # Metadata-only entries (data_erased) are plain JSON: no key needed.
                    body = row.payload_json or await keys.decrypt_text(
                        session,
                        row.case_id,
                        row.payload_enc,
                        table=ENTRY_TABLE,
                        row_id=row.id,
                        field=ENTRY_FIELD,
                    )
                    payloads.append(json.loads(body))
                except Exception as exc:
                    error = type(exc).__name__
                    log.warning("participation entry %s cannot be read: %s", row.id, error)
                    break
            out.append((payloads, error))
    return out


async def _record(db: Database, jobs: Sequence[Job]) -> None:
    refs = [job.ref_id for job in jobs]
    ids = [job.id for job in jobs]

    async def record(session: AsyncSession) -> None:
        await session.execute(update(_E).where(_E.c.id.in_(refs)).values(filed_at=utcnow()))
        await finish(session, ids)

    # One statement each for every case's filed entries; shares a commit with deliveries.
    await db.grouped(record)
