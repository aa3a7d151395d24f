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

from sqlalchemy import and_, exists, or_
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.caselog.entries import FIELD as ENTRY_FIELD
from bot.caselog.entries import TABLE as ENTRY_TABLE
from bot.caselog.entries import EntryDraft, add_entry
from bot.caselog.sinks import Sink, SinkError
from bot.crypto import data_key_version_of
from bot.keys import KeyService
from bot.live import Hub
from bot.ops.metrics import Metrics, reason_label
from bot.router import BODY, MESSAGE_TABLE, apply_delivery_state, apply_early_statuses
from bot.storage.db import Database
from bot.storage.models import (
    Case,
    ChannelIdentity,
    ConversationState,
    Message,
    Outbox,
    OutboxStatus,
    ParticipationEntry,
    PendingReply,
    SecureLink,
    utcnow,
)
from channels.base import Button, Channel, ChannelName, DeliveryState, Outbound
from channels.errors import DeliveryError, PermanentFailure, RateLimited

log = logging.getLogger(__name__)

LEASE = dt.timedelta(seconds=60)
# Provider codes after which nothing more can be sent on that identity until the child says
# START: Twilio 21610 (the child answered STOP to the carrier) and a blocked Telegram bot.
BLOCKING_CODES = frozenset({"21610", "blocked"})
OPTED_OUT_REASON = "Barnet har stoppet beskeder fra dette nummer. Der kan sendes igen efter START."
PAUSED_REASON = "Rådgiveren har sat kanalen på pause."
GIVE_UP_AFTER = dt.timedelta(hours=72)
BACKOFF_BASE = 2.0
BACKOFF_CAP = 15 * 60.0


def _dead_here(claimed_by: str | None, host: str) -> bool:
    owner, _, pid_text = (claimed_by or "").rpartition(":")
    if owner != host or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True  # we are starting up: that was an earlier process with our pid (containers)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


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
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = asyncio.Event()
        self._retrying: set[str] = set()  # jobs put back this round; later ones of the case wait
        self.metrics = Metrics()  # create_app shares one registry with the router

    def wake(self) -> None:
        self._wake.set()

    async def recover(self) -> int:
        """Release the leases of workers that died on this host; return how many.

        A killed process leaves its claimed jobs leased, and a leased job holds back every later
        job of its case. With SQLite there is only one process, so every lease is stale at
        start-up; elsewhere a lease is stale if its process on this host no longer runs.
        """
        host = socket.gethostname()
        async with self.db.write() as session:
            rows = (
                await session.exec(
                    select(Outbox).where(
                        Outbox.status == OutboxStatus.PENDING.value,
                        col(Outbox.claimed_until).is_not(None),
                    )
                )
            ).all()
            stale = [r for r in rows if self.db.is_sqlite or _dead_here(r.claimed_by, host)]
            for row in stale:
                row.claimed_by, row.claimed_until = None, None
        if stale:
            log.info("released %d outbox jobs left by a stopped process", len(stale))
        return len(stale)

    async def run(self) -> None:
        """Work until cancelled: on wake-up, or every ``poll_seconds`` for retries and leases."""
        await self.recover()
        while True:
            self._wake.clear()
            try:
                done = await self.run_once()
            except Exception:
                log.exception("outbox round failed")
                done = 0
            if done:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def run_once(self) -> int:
        """Claim and process the jobs that are due now; return how many were processed."""
        jobs = await self._claim()
        by_case: defaultdict[str | None, list[Outbox]] = defaultdict(list)
        for job in jobs:
            by_case[job.case_id].append(job)
        await asyncio.gather(*(self._run_case(case_jobs) for case_jobs in by_case.values()))
        return len(jobs)

    async def _claim(self) -> list[Outbox]:
        now = utcnow()
        earlier = aliased(Outbox)
        query = (
            select(Outbox)
            .where(
                Outbox.status == OutboxStatus.PENDING.value,
                col(Outbox.next_attempt_at) <= now,
                or_(col(Outbox.claimed_until).is_(None), col(Outbox.claimed_until) < now),
                ~exists().where(
                    and_(
                        col(earlier.case_id) == col(Outbox.case_id),
                        col(earlier.kind) == col(Outbox.kind),
                        col(earlier.status) == OutboxStatus.PENDING.value,
                        col(earlier.seq) < col(Outbox.seq),
                    )
                ),
            )
            .order_by(col(Outbox.next_attempt_at), col(Outbox.seq))
            .limit(self.batch)
        )
        if not self.db.is_sqlite:
            query = query.with_for_update(skip_locked=True, of=Outbox)
        async with self.db.write() as session:
            jobs = list((await session.exec(query)).all())
            for head in list(jobs):
                jobs += await self._followers(session, head, now)
            for job in jobs:
                job.claimed_by = self.worker_id
                job.claimed_until = now + LEASE
        return jobs

    async def _followers(
        self, session: AsyncSession, head: Outbox, now: dt.datetime
    ) -> list[Outbox]:
        """The jobs right after ``head`` in its case, claimable with it (run after it, in order).

        One job per case per round made a backlog of one busy case drain at one job per round;
        a run of consecutive due jobs is taken at once instead. The run stops at the first job
        that is not due or is leased, so no job is ever claimed ahead of an earlier one.
        """
        if head.case_id is None or self.follow <= 1:
            return []
        query = (
            select(Outbox)
            .where(
                Outbox.case_id == head.case_id,
                Outbox.kind == head.kind,
                Outbox.status == OutboxStatus.PENDING.value,
                col(Outbox.seq) > head.seq,
            )
            .order_by(col(Outbox.seq))
            .limit(self.follow - 1)
        )
        if not self.db.is_sqlite:
            # No SKIP LOCKED: a locked follower must not be jumped over. Only the holder of the
            # head can hold them, and we hold the head.
            query = query.with_for_update(of=Outbox)
        run: list[Outbox] = []
        for job in (await session.exec(query)).all():
            leased = job.claimed_until is not None and job.claimed_until >= now
            if job.next_attempt_at > now or leased:
                break
            run.append(job)
        return run

    async def _run_case(self, jobs: list[Outbox]) -> None:
        held: set[str] = set()  # kinds whose earlier job is waiting for a retry
        for job in sorted(jobs, key=lambda j: (j.kind, j.seq)):
            if job.kind in held:
                await self._release(job)  # claimed behind a job that must go first
                continue
            try:
                if job.kind == "deliver":
                    await self._deliver(job)
                elif job.kind == "caselog":
                    await self._file(job)
                elif job.kind == "prompt":
                    await self._prompt(job)
                elif job.kind == "escalate":
                    await self._escalate(job)
                else:
                    await self._finish(job, OutboxStatus.DEAD, error=f"unknown kind {job.kind}")
            except Exception as exc:
                log.warning("outbox job %s (%s) failed: %s", job.id, job.kind, type(exc).__name__)
                await self._retry(job, error=type(exc).__name__)
            if job.id in self._retrying:
                self._retrying.discard(job.id)
                held.add(job.kind)

    async def _release(self, job: Outbox) -> None:
        async def release(session: AsyncSession) -> None:
            row = await session.get(Outbox, job.id)
            assert row is not None
            row.claimed_by, row.claimed_until = None, None

        await self.db.grouped(release)

    async def _deliver(self, job: Outbox) -> None:
        async with self.db.read() as session:
            message = await session.get(Message, job.ref_id)
            assert message is not None and message.identity_id is not None
            identity = await session.get(ChannelIdentity, message.identity_id)
            assert identity is not None
            text = await self.keys.decrypt_text(
                session,
                message.case_id,
                message.body_enc,
                table=MESSAGE_TABLE,
                row_id=message.id,
                field=BODY,
            )
            address = await self.keys.decrypt_text(
                session,
                message.case_id,
                identity.address_enc,
                table="channel_identity",
                row_id=identity.id,
                field="address",
            )
            # A reply sent as a secure link: the channel carries only the notice with the link;
            # the caseworker's words are read in the web chat (bot.inbox.securelink).
            link = await session.get(SecureLink, message.id)
            if link is not None:
                text = await self.keys.decrypt_text(
                    session,
                    message.case_id,
                    link.notice_enc,
                    table="secure_link",
                    row_id=message.id,
                    field="notice",
                )
        channel = self.channels.get(message.channel)
        if channel is None:
            self.metrics.delivery_failure(message.channel, "channel_off")
            await self._fail_message(job, message.id, "Kanalen er ikke slået til.")
            return
        if identity.status == "opted_out":
            # The provider refuses (the child answered STOP to the carrier) until START.
            self.metrics.delivery_failure(message.channel, "opted_out")
            await self._fail_message(job, message.id, identity.status_reason or OPTED_OUT_REASON)
            return
        if identity.status == "paused":
            await self._fail_message(job, message.id, PAUSED_REASON)
            return
        buttons = tuple(Button(t, p) for t, p in json.loads(message.buttons or "[]"))
        outbound = Outbound(
            channel=ChannelName(message.channel),
            address=address,
            message_id=message.id,
            text=text,
            buttons=buttons if channel.capabilities.buttons else (),
        )
        try:
            receipt = await channel.send(outbound)
        except PermanentFailure as exc:
            self.metrics.delivery_failure(message.channel, reason_label(exc.code, "permanent"))
            await self._fail_message(
                job, message.id, exc.reason, block_identity=exc.code in BLOCKING_CODES
            )
            return
        except RateLimited as exc:
            self.metrics.delivery_failure(message.channel, "rate_limited")
            await self._retry(job, error=exc.code or "rate limited", delay=exc.retry_after)
            return
        except DeliveryError as exc:
            self.metrics.delivery_failure(message.channel, reason_label(exc.code, "temporary"))
            await self._retry(job, error=exc.code or "temporary failure")
            return
        self.metrics.message(message.channel, "out")

        async def record(session: AsyncSession) -> None:
            row = await session.get(Message, message.id)
            assert row is not None
            row.provider_message_id = receipt.provider_message_id
            apply_delivery_state(row, receipt.state, None)
            await apply_early_statuses(session, row)
            await _done(session, job.id)

        # Concurrent deliveries share one commit (group commit), like inbound messages.
        await self.db.grouped(record)
        self._publish_status(message.case_id, message.id, message.seq)

    async def _prompt(self, job: Outbox) -> None:
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
                await self._retry(job, error=exc.code or "rate limited", delay=exc.retry_after)
                return
            except PermanentFailure as exc:
                error = exc.code or "permanent failure"
            except DeliveryError as exc:
                await self._retry(job, error=exc.code or "temporary failure")
                return
        async with self.db.write() as session:
            row = await session.get(PendingReply, pending.id)
            if row is not None:
                await session.delete(row)
            done = await session.get(Outbox, job.id)
            assert done is not None
            done.status = OutboxStatus.DONE.value if error is None else OutboxStatus.DEAD.value
            done.done_at, done.claimed_until, done.last_error = utcnow(), None, error

    async def _escalate(self, job: Outbox) -> None:
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
            await self._retry(job, error="on-call could not be reached")
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

    async def _fail_message(
        self, job: Outbox, message_id: str, reason: str, *, block_identity: bool = False
    ) -> None:
        async with self.db.write() as session:
            row = await session.get(Message, message_id)
            assert row is not None
            apply_delivery_state(row, DeliveryState.FAILED, reason)
            if block_identity and row.identity_id is not None:
                identity = await session.get(ChannelIdentity, row.identity_id)
                if identity is not None:
                    identity.status, identity.status_reason = "opted_out", reason[:200]
            dead = await session.get(Outbox, job.id)
            assert dead is not None
            dead.status, dead.done_at, dead.last_error = (
                OutboxStatus.DEAD.value,
                utcnow(),
                reason[:200],
            )
            case_id, seq = row.case_id, row.seq
        self._publish_status(case_id, message_id, seq)

    async def _file(self, job: Outbox) -> None:
        async with self.db.read() as session:
            entry = await session.get(ParticipationEntry, job.ref_id)
            assert entry is not None
            # Metadata-only entries (data_erased) are plain JSON: filing them needs no key.
            body = entry.payload_json or await self.keys.decrypt_text(
                session,
                entry.case_id,
                entry.payload_enc,
                table=ENTRY_TABLE,
                row_id=entry.id,
                field=ENTRY_FIELD,
            )
        payload = json.loads(body)
        try:
            # Every sink in turn; a later entry of the case waits until this one is done, so
            # each sink sees a case's entries in order (a sink may see one twice: at least once).
            for sink in self.sinks:
                await sink.deliver(payload)
        except SinkError as exc:
            log.info("participation entry %s not filed yet: %s", entry.id, exc.reason)
            await self._retry(job, error=exc.reason)
            return

        async def record(session: AsyncSession) -> None:
            row = await session.get(ParticipationEntry, entry.id)
            assert row is not None
            row.filed_at = utcnow()
            await _done(session, job.id)

        await self.db.grouped(record)

    async def _retry(self, job: Outbox, *, error: str, delay: float | None = None) -> None:
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

    async def _finish(self, job: Outbox, status: OutboxStatus, *, error: str) -> None:
        async with self.db.write() as session:
            row = await session.get(Outbox, job.id)
            assert row is not None
            row.status, row.done_at, row.last_error = status.value, utcnow(), error[:200]

    def _publish_status(self, case_id: str, message_id: str, seq: int) -> None:
        self.hub.publish(
            f"case:{case_id}",
            {"type": "status", "case_id": case_id, "message_id": message_id, "seq": seq},
        )


async def _done(session: AsyncSession, job_id: str) -> None:
    done = await session.get(Outbox, job_id)
    assert done is not None
    done.status, done.done_at, done.claimed_until = OutboxStatus.DONE.value, utcnow(), None
