"""Time-driven bot work: scheduled check-ins, expired check-ins and rights notes on birthdays.

Everything respects the child's quiet hours (default 21:00–08:00 Europe/Copenhagen) and, when
they asked for it, school time: work that falls in them waits for the next allowed moment. A
child who wrote STOP gets no prompts at all. Each round runs ``tick(now)``, so tests move the
clock by calling it with any time they like.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

from sqlalchemy import delete
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.caselog.retention import sweep as retention_sweep
from bot.caselog.retention_shred import shred_due
from bot.engine.checkins import CheckinError, Checkins
from bot.engine.conversation import COPENHAGEN, ConversationBot
from bot.engine.hooks import Reply
from bot.errors import NotFound
from bot.ids import uuid7
from bot.keys import KeyService
from bot.router import Router, last_inbound_identity_id
from bot.storage.db import Database
from bot.storage.models import (
    Author,
    Case,
    ChannelIdentity,
    Checkin,
    ConsentEvent,
    ConversationState,
    EarlyStatus,
    Schedule,
    utcnow,
)
from consent.ages import age_band, age_on, milestones_crossed
from consent.schedule import CheckinSchedule, QuietHours, next_allowed, next_due

log = logging.getLogger(__name__)

SCHOOL_HOURS = (dt.time(8, 0), dt.time(14, 0))
RETRY_WITHOUT_CHANNEL = dt.timedelta(days=1)
EARLY_STATUS_KEPT = dt.timedelta(days=1)
PURGE_EVERY = dt.timedelta(hours=1)


def quiet_hours(case: Case) -> QuietHours:
    return QuietHours(
        start=dt.time.fromisoformat(case.quiet_start),
        end=dt.time.fromisoformat(case.quiet_end),
        school_hours=SCHOOL_HOURS if case.no_checkins_in_school else None,
    )


class Scheduler:
    def __init__(
        self,
        *,
        db: Database,
        keys: KeyService,
        router: Router,
        bot: ConversationBot,
        checkins: Checkins,
        interval: float = 30.0,
        retention: dt.timedelta | None = None,
    ) -> None:
        self.retention = retention  # None: keep local copies (no retention sweep)
        self._retained_at: dt.datetime | None = None
        self.db = db
        self.keys = keys
        self.router = router
        self.bot = bot
        self.checkins = checkins
        self.interval = interval
        self._purged_at: dt.datetime | None = None

    async def run(self) -> None:
        while True:
            try:
                await self.tick(utcnow())
            except Exception:
                log.exception("scheduler round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.sleep(self.interval)

    async def tick(self, now: dt.datetime) -> int:
        """One round at ``now``; returns how many prompts were started."""
        started = 0
        async with self.db.read() as session:
            due = (
                await session.exec(
                    select(Schedule.id).where(
                        Schedule.active == True,  # noqa: E712 - SQL comparison
                        col(Schedule.next_due_at) <= now,
                    )
                )
            ).all()
            # Only rows with work due: each of these gets a write transaction below.
            running = (
                await session.exec(
                    select(Checkin.id).where(
                        Checkin.status == "asking",
                        col(Checkin.started_at) <= now - self.checkins.expires_after,
                    )
                )
            ).all()
            today = now.astimezone(COPENHAGEN).date()
            open_cases = (
                await session.exec(
                    select(Case.id).where(
                        col(Case.closed_at).is_(None),
                        or_(
                            col(Case.rights_checked_on).is_(None),
                            col(Case.rights_checked_on) < today,
                        ),
                    )
                )
            ).all()
        for schedule_id in due:
            started += await self._run_schedule(schedule_id, now)
        for checkin_id in running:
            await self._expire(checkin_id, now)
        for case_id in open_cases:
            started += await self._rights(case_id, now)
        if self._purged_at is None or now - self._purged_at >= PURGE_EVERY:
            self._purged_at = now
            async with self.db.write() as session:
                # Delivery reports about messages that are not ours (or never got an id) expire.
                await session.execute(
                    delete(EarlyStatus).where(
                        col(EarlyStatus.received_at) < now - EARLY_STATUS_KEPT
                    )
                )
        if self.retention is not None and (
            self._retained_at is None or now - self._retained_at >= PURGE_EVERY
        ):
            self._retained_at = now
            await self._retention(now, self.retention)
        if started:
            self.router.wake_outbox()
        return started

    async def _retention(self, now: dt.datetime, retention: dt.timedelta) -> None:
        """Remove filed local copies past retention; shred closed cases that are ready.

        Each case is done under its row lock, so processes running this at once do it once.
        """
        await retention_sweep(self.db, self.keys, retention=retention, now=now)
        if await shred_due(self.db, self.keys, retention=retention, now=now):
            self.router.wake_outbox()  # the data_erased entries are waiting to be filed

    # -- caseworker actions -------------------------------------------------------------------

    async def send_now(
        self,
        *,
        case_id: str,
        instrument_id: str,
        caseworker_id: str,
        now: dt.datetime | None = None,
    ) -> dt.datetime | None:
        """Send a check-in now, or at the first moment outside quiet hours; returns when.

        Returns None when it could not be sent now: no consented channel, or the child wrote
        STOP.
        """
        now = now or utcnow()
        self.checkins.instrument(instrument_id)
        async with self.db.write() as session:
            case = await session.get(Case, case_id)
            if case is None:
                raise NotFound("case")
            when = next_allowed(now, quiet_hours(case))
            one_off = Schedule(
                id=uuid7(),
                case_id=case_id,
                instrument_id=instrument_id,
                next_due_at=when,
                created_by=caseworker_id,
                created_at=now,
            )
            session.add(one_off)
        if when > now:
            return when
        await self.tick(now)
        async with self.db.write() as session:
            row = await session.get(Schedule, one_off.id)
            assert row is not None
            if row.last_sent_at is not None:
                return now
            # Nothing could be sent (no channel the child said yes on, or STOP): a one-off
            # "send now" does not quietly go out tomorrow instead; the caller says so.
            row.active, row.next_due_at = False, None
        return None

    async def add_schedule(
        self,
        *,
        case_id: str,
        instrument_id: str,
        caseworker_id: str,
        every_days: int | None = None,
        meeting_at: dt.datetime | None = None,
        now: dt.datetime | None = None,
    ) -> Schedule:
        now = now or utcnow()
        self.checkins.instrument(instrument_id)
        async with self.db.write() as session:
            case = await session.get(Case, case_id)
            if case is None:
                raise NotFound("case")
            plan = CheckinSchedule(
                every_days=every_days,
                before_meeting=meeting_at is not None,
                quiet=quiet_hours(case),
            )
            row = Schedule(
                id=uuid7(),
                case_id=case_id,
                instrument_id=instrument_id,
                every_days=every_days,
                meeting_at=meeting_at,
                next_due_at=next_due(plan, last_sent=None, now=now, meeting_at=meeting_at),
                created_by=caseworker_id,
                created_at=now,
            )
            session.add(row)
        return row

    # -- the round's parts ----------------------------------------------------------------------

    async def _run_schedule(self, schedule_id: str, now: dt.datetime) -> int:
        async with self.db.write() as session:
            # Locked and checked again: another process may have run it since our due list
            # was read (PostgreSQL; SQLite's single writer needs no lock).
            schedule = await session.get(Schedule, schedule_id, with_for_update=True)
            if schedule is None or not schedule.active or schedule.next_due_at is None:
                return 0
            if schedule.next_due_at > now:
                return 0
            case = await session.get(Case, schedule.case_id)
            state = await session.get(ConversationState, schedule.case_id)
            if case is None or state is None or case.closed_at is not None:
                schedule.active = False
                return 0
            prefs = quiet_hours(case)
            allowed = next_allowed(now, prefs)
            identity = await child_identity(session, case.id)
            if allowed > now:
                schedule.next_due_at = allowed
                return 0
            if identity is None or state.bot_paused:
                # Nobody to ask (no consented channel) or the child said STOP: try tomorrow.
                schedule.next_due_at = now + RETRY_WITHOUT_CHANNEL
                return 0
            key = await self.keys.case_key(session, case.id)
            band = age_band(age_on(case.child_birth_date, now.astimezone(COPENHAGEN).date()))
            try:
                replies = await self.checkins.start(
                    session,
                    key,
                    case=case,
                    state=state,
                    instrument_id=schedule.instrument_id,
                    band=band,
                    buttons=self.checkins.buttons_on(identity.channel),
                    now=now,
                )
            except CheckinError as exc:
                # E.g. a goals check-in before any goals were written: stop, don't retry forever.
                log.warning("schedule %s switched off: %s", schedule.id, exc)
                schedule.active, schedule.next_due_at = False, None
                return 0
            await self._queue(session, case, identity, replies)
            schedule.last_sent_at = now
            if schedule.every_days is None and schedule.meeting_at is None:
                schedule.active, schedule.next_due_at = False, None
            else:
                plan = CheckinSchedule(
                    every_days=schedule.every_days,
                    before_meeting=schedule.meeting_at is not None,
                    quiet=prefs,
                )
                meeting = (
                    schedule.meeting_at
                    if schedule.meeting_at and schedule.meeting_at > now
                    else None
                )
                schedule.next_due_at = next_due(plan, last_sent=now, now=now, meeting_at=meeting)
                schedule.active = schedule.next_due_at is not None
        return 1

    async def _expire(self, checkin_id: str, now: dt.datetime) -> None:
        async with self.db.write() as session:
            row = await session.get(Checkin, checkin_id, with_for_update=True)
            if row is None or row.status != "asking":
                return
            if now - row.started_at < self.checkins.expires_after:
                return
            case = await session.get(Case, row.case_id)
            state = await session.get(ConversationState, row.case_id)
            assert case is not None and state is not None
            key = await self.keys.case_key(session, case.id)
            if state.active_checkin_id != row.id:
                state.active_checkin_id = row.id
            await self.checkins.abandon(session, key, case=case, state=state, now=now)

    async def _rights(self, case_id: str, now: dt.datetime) -> int:
        today = now.astimezone(COPENHAGEN).date()
        async with self.db.write() as session:
            case = await session.get(Case, case_id, with_for_update=True)  # as in _run_schedule
            state = await session.get(ConversationState, case_id)
            if case is None or state is None or case.rights_checked_on == today:
                return 0
            since = case.rights_checked_on or today
            crossed = milestones_crossed(case.child_birth_date, since, today)
            if not crossed:
                case.rights_checked_on = today
                return 0
            identity = await child_identity(session, case.id)
            if identity is None or next_allowed(now, quiet_hours(case)) > now:
                return 0  # again next round: the note waits for a channel and for daytime
            band = age_band(age_on(case.child_birth_date, today))
            replies = []
            for milestone in crossed:
                replies.append(
                    Reply(self.bot.texts.get(case.language, f"consent.rights.{milestone}.{band}"))
                )
                session.add(
                    ConsentEvent(
                        id=uuid7(),
                        case_id=case.id,
                        identity_id=identity.id,
                        kind="rights_note",
                        channel=identity.channel,
                        actor="system",
                        occurred_at=now,
                        detail=f'{{"milestone": {milestone}}}',
                    )
                )
            await self._queue(session, case, identity, replies)
            case.rights_checked_on = today
        return 1

    async def _queue(
        self, session: AsyncSession, case: Case, identity: ChannelIdentity, replies: list[Reply]
    ) -> None:
        key = await self.keys.case_key(session, case.id)
        for reply in replies:
            await self.router.queue_outbound(
                session,
                key,
                case=case,
                identity=identity,
                text=reply.text,
                buttons=reply.buttons,
                author=Author.BOT,
                caseworker_id=None,
            )


async def child_identity(session: AsyncSession, case_id: str) -> ChannelIdentity | None:
    """The channel the child agreed to and used most recently (bot prompts go there)."""
    identities = (
        await session.exec(
            select(ChannelIdentity).where(
                ChannelIdentity.case_id == case_id,
                ChannelIdentity.status == "active",
                col(ChannelIdentity.consented_at).is_not(None),
            )
        )
    ).all()
    if not identities:
        return None
    last = await last_inbound_identity_id(session, case_id)
    for identity in identities:
        if identity.id == last:
            return identity
    return max(identities, key=lambda i: i.consented_at or i.created_at)
