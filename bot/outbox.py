"""The outbox worker: delivers messages and files participation entries after commit.

Jobs are claimed with a lease (``claimed_until``) so a crashed worker's jobs come back; on
PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED`` so several processes never take the same
job. Within a case, jobs of one kind run strictly in ``seq`` order: a job is claimable only when
no earlier job of its case and kind is still pending. Failures back off exponentially with
jitter, capped, for up to 72 hours; then the job is dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import random
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence

from bot.caselog.entries import EntryDraft, add_entry
from bot.caselog.sinks import Sink
from bot.crypto import data_key_version_of
from bot.keys import KeyService
from bot.live import Hub
from bot.ops.metrics import Metrics
from bot.outbox_claim import LEASE, Job, claim, release, release_stale
from bot.outbox_deliver import (
    BLOCKING_CODES,
    OPTED_OUT_REASON,
    PAUSED_REASON,
    read_run,
    send,
)
from bot.outbox_file import file_runs
from bot.storage.db import Database
from bot.storage.models import (
    Case,
    ConversationState,
    Outbox,
    OutboxStatus,
    PendingReply,
    utcnow,
)
from channels.base import Channel, ChannelName, Outbound
from channels.errors import DeliveryError, PermanentFailure, RateLimited

__all__ = [
    "BLOCKING_CODES",
    "GIVE_UP_AFTER",
    "LEASE",
    "OPTED_OUT_REASON",
    "PAUSED_REASON",
    "OutboxWorker",
    "backoff",
]

log = logging.getLogger(__name__)

GIVE_UP_AFTER = dt.timedelta(hours=72)
BACKOFF_BASE = 2.0
BACKOFF_CAP = 15 * 60.0


def backoff(attempts: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``attempts`` failures: capped exponential with full jitter."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** min(attempts, 30)))
    return (rng or random).uniform(ceiling / 2, ceiling)


class OutboxWorker:
    def __init__(
        self,
        *,
        db: Database,
        keys: KeyService,
        hub: Hub,
        channels: Mapping[str, Channel],
        sinks: Sequence[Sink],
        poll_seconds: float = 1.0,
        batch: int = 50,
        follow: int = 16,
        file_follow: int = 64,
        file_gather: float = 0.1,
        render: Callable[[str, str, Mapping[str, object]], str] | None = None,
        alert: Callable[[Mapping[str, object]], Awaitable[bool]] | None = None,
    ) -> None:
        self.render = render
        self.alert = alert
        self.db = db
        self.keys = keys
        self.hub = hub
        self.channels = channels
        self.sinks = sinks
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.follow = follow
        self.file_follow = file_follow
        self.file_gather = file_gather
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = {True: asyncio.Event(), False: asyncio.Event()}  # case log; the rest
        self._retrying: set[str] = set()  # jobs put back this round; later ones of the case wait
        self.metrics = Metrics()  # create_app shares one registry with the router

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    def wake_filing(self) -> None:
        """Only case-log entries are waiting (messages stored without a turn queue no sends)."""
        self._wake[True].set()

    async def recover(self) -> int:
        """Release the leases of workers that died on this host; return how many."""
        return await release_stale(self.db)

    async def run(self) -> None:
        """Work until cancelled: on wake-up, or every ``poll_seconds`` for retries and leases.

        Filing and the rest (deliveries, prompts, alerts) go in rounds of their own, so a round
        of slow sends never holds up the case log, nor the other way round. While entries keep
        coming, a filing round starts ``file_gather`` seconds after the last one: the case log
        is not in a hurry (no child's message waits for it), and a round's fixed costs are
        then shared by more entries.
        """
        await self.recover()
        await asyncio.gather(self._rounds(caselog=True), self._rounds(caselog=False))

    async def _rounds(self, *, caselog: bool) -> None:
        wake = self._wake[caselog]
        while True:
            wake.clear()
            try:
                done = await self.run_once(caselog=caselog)
            except Exception:
                log.exception("outbox round failed")
                done = 0
            if done:
                if caselog:
                    # More entries are likely coming: gather them into the next round, whose
                    # claim, read, fsync and update are then shared by more of them.
                    await asyncio.sleep(self.file_gather)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.poll_seconds)

    async def run_once(self, *, caselog: bool | None = None) -> int:
        """Claim and process the jobs that are due now; return how many were processed.

        Args:
            caselog: only case-log jobs (True), only the others (False), or all (None).
        """
        jobs = await self._claim(caselog=caselog)
        runs: defaultdict[tuple[str, str], list[Job]] = defaultdict(list)
        for job in jobs:  # claimed in order per case and kind
            runs[(job.case_id or job.id, job.kind)].append(job)
        filing = [run for run in runs.values() if run[0].kind == "caselog"]
        others = [run for run in runs.values() if run[0].kind != "caselog"]
        # Cases, and a case's kinds (its replies and its case log), are independent queues.
        await asyncio.gather(self._file(filing), *(self._run(run) for run in others))
        return len(jobs)

    async def _file(self, runs: list[list[Job]]) -> None:
        """File the case-log runs of all cases together; a refusal holds the rest of its case."""
        if not runs:
            return
        try:
            filed = await file_runs(self.db, self.keys, self.sinks, runs)
        except Exception as exc:
            log.warning("outbox caselog runs failed: %s", type(exc).__name__)
            for run in runs:
                await self._give_back(run, error=type(exc).__name__)
            return
        for run, outcome in zip(runs, filed, strict=True):
            if outcome.done < len(run):
                await self._give_back(run[outcome.done :], error=outcome.error or "not filed")

    async def _claim(self, *, caselog: bool | None = None) -> list[Job]:
        return await claim(
            self.db,
            self.worker_id,
            batch=self.batch,
            follow=self.follow,
            file_follow=self.file_follow,
            caselog=caselog,
        )

    async def _run(self, jobs: list[Job]) -> None:
        """One case's claimed jobs of one kind, strictly in order; a retry holds the rest."""
        kind = jobs[0].kind
        try:
            if kind == "deliver":
                await self._deliver_run(jobs)
                return
        except Exception as exc:
            log.warning("outbox %s run failed: %s", kind, type(exc).__name__)
            await self._give_back(jobs, error=type(exc).__name__)
            return
        for n, job in enumerate(jobs):
            try:
                if job.kind == "prompt":
                    await self._prompt(job)
                elif job.kind == "escalate":
                    await self._escalate(job)
                else:
                    await self._finish(job, OutboxStatus.DEAD, error=f"unknown kind {job.kind}")
            except Exception as exc:
                log.warning("outbox job %s (%s) failed: %s", job.id, job.kind, type(exc).__name__)
                await self.retry(job, error=type(exc).__name__)
            if job.id in self._retrying:
                self._retrying.discard(job.id)
                await release(self.db, [j.id for j in jobs[n + 1 :]])
                return

    async def _deliver_run(self, jobs: list[Job]) -> None:
        messages, unreadable = await read_run(self.db, self.keys, jobs)
        blocked: set[str] = set()  # identities a send in this run found blocked
        for n, (job, message) in enumerate(zip(jobs, messages, strict=False)):
            try:
                await send(self, job, message, blocked)
            except Exception as exc:
                log.warning("outbox job %s (deliver) failed: %s", job.id, type(exc).__name__)
                await self.retry(job, error=type(exc).__name__)
            if job.id in self._retrying:
                self._retrying.discard(job.id)
                await release(self.db, [j.id for j in jobs[n + 1 :]])
                return
        # Messages that could not be read: the first is retried, the rest wait behind it.
        if len(messages) < len(jobs):
            await self._give_back(jobs[len(messages) :], error=unreadable or "unreadable")

    async def _give_back(self, jobs: Sequence[Job], *, error: str) -> None:
        """The first job failed for ``error``: retry it, and release the ones behind it."""
        await self.retry(jobs[0], error=error)
        self._retrying.discard(jobs[0].id)
        await release(self.db, [j.id for j in jobs[1:]])

    async def _prompt(self, job: Job) -> None:
        """A standard text to someone not (yet) enrolled; the address is forgotten once sent."""
        async with self.db.read() as session:
            pending = await session.get(PendingReply, job.ref_id)
        if pending is None or self.render is None:
            await self._finish(job, OutboxStatus.DEAD, error="prompt cannot be sent")
            return
        # The master version the address was written under: a rotation may have come since.
        system = self.keys.system_key(version=data_key_version_of(pending.address_enc))
        address = system.decrypt_text(
            pending.address_enc, table="pending_reply", row_id=pending.id, field="address"
        )
        text = self.render(pending.language, pending.text_key, json.loads(pending.values))
        channel = self.channels.get(pending.channel)
        error: str | None = None
        if channel is None:
            error = "channel off"
        else:
            outbound = Outbound(ChannelName(pending.channel), address, pending.id, text)
            try:
                await channel.send(outbound)
            except RateLimited as exc:
                await self.retry(job, error=exc.code or "rate limited", delay=exc.retry_after)
                return
            except PermanentFailure as exc:
                error = exc.code or "permanent failure"
            except DeliveryError as exc:
                await self.retry(job, error=exc.code or "temporary failure")
                return
        async with self.db.write() as session:
            row = await session.get(PendingReply, pending.id)
            if row is not None:
                await session.delete(row)
            done = await session.get(Outbox, job.id)
            assert done is not None
            done.status = OutboxStatus.DONE.value if error is None else OutboxStatus.DEAD.value
            done.done_at, done.claimed_until, done.last_error = utcnow(), None, error

    async def _escalate(self, job: Job) -> None:
        """Nobody acknowledged an urgent flag in time: alert the on-call contact (no words).

        The alert goes out before the transaction that records it (no network call holds the
        write lock). An alert that reached nobody is retried like any job; one that got through
        but whose commit was lost is sent again: on-call hears at least once.
        """
        assert job.case_id is not None
        async with self.db.read() as session:
            state = await session.get(ConversationState, job.case_id)
            case = await session.get(Case, job.case_id)
            assert state is not None and case is not None
            pending = state.urgent_since is not None and state.acknowledged_at is None
            due = pending and state.escalated_at is None
            alert = {
                "case_ref": case.case_ref,
                "reasons": (state.urgent_reasons or "").split(","),
                "urgent_since": state.urgent_since.isoformat() if state.urgent_since else None,
            }
        if due and self.alert is not None and not await self.alert(alert):
            await self.retry(job, error="on-call could not be reached")
            return
        async with self.db.write() as session:
            state = await session.get(ConversationState, job.case_id)
            assert state is not None
            if due and state.acknowledged_at is None and state.escalated_at is None:
                state.escalated_at = utcnow()
                key = await self.keys.case_key(session, job.case_id)
                await add_entry(
                    session,
                    case_id=job.case_id,
                    key=key,
                    verbatim=False,
                    draft=EntryDraft(
                        kind="safety_escalation",
                        occurred_at=state.escalated_at,
                        case_ref=str(alert["case_ref"]),
                        channel=None,
                        direction=None,
                        actor="system",
                        summary="Akut markering ikke kvitteret i tide; døgnvagten er underrettet.",
                        legal_signals=("risk",),
                    ),
                )
                log.warning("urgent flag on case %s escalated to on-call", job.case_id)
            done = await session.get(Outbox, job.id)
            assert done is not None
            done.status, done.done_at, done.claimed_until = OutboxStatus.DONE.value, utcnow(), None
        self.hub.publish(f"case:{job.case_id}", {"type": "flag", "case_id": job.case_id})

    async def retry(self, job: Job, *, error: str, delay: float | None = None) -> None:
        """Put ``job`` back for a later attempt (backoff), or dead-letter it after 72 hours."""
        self._retrying.add(job.id)
        async with self.db.write() as session:
            row = await session.get(Outbox, job.id)
            assert row is not None
            row.attempts += 1
            row.last_error = error[:200]
            row.claimed_until = None
            now = utcnow()
            if now - row.created_at > GIVE_UP_AFTER:
                row.status = OutboxStatus.DEAD.value
                log.error(
                    "outbox job %s (%s) dead-lettered after %d attempts",
                    row.id,
                    row.kind,
                    row.attempts,
                )
                return
            wait = delay if delay is not None else backoff(row.attempts)
            row.next_attempt_at = now + dt.timedelta(seconds=wait)

    async def _finish(self, job: Job, status: OutboxStatus, *, error: str) -> None:
        async with self.db.write() as session:
            row = await session.get(Outbox, job.id)
            assert row is not None
            row.status, row.done_at, row.last_error = status.value, utcnow(), error[:200]

    def publish_status(self, case_id: str, message_id: str, seq: int) -> None:
        self.hub.publish(
            f"case:{case_id}",
            {"type": "status", "case_id": case_id, "message_id": message_id, "seq": seq},
        )
