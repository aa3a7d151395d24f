"""The bot: what Stemme says and records when a child writes (DESIGN "The path of a message").

Order on every message, inside the router's transaction: the safety check has already run
(:meth:`ConversationBot.assess`); a risk or legal signal is answered and flagged first and
nothing else happens to that message — so "stop han slår mig" is urgent, never an opt-out. Then
single-word keywords (STOP, START, HJÆLP, MINE DATA, JA), then the channel notice and consent,
then an open check-in, and finally the out-of-hours auto-reply. The child's message always
reaches the caseworker, whatever the bot does.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.caselog.entries import EntryDraft, add_entry
from bot.engine.checkins import Checkins
from bot.engine.enrolment import Enrolment
from bot.engine.hooks import Assessment, Glance, Reply, Turn
from bot.engine.safety import SafetyChecker
from bot.ids import uuid7
from bot.storage.models import Caseworker, ChannelIdentity, ConsentEvent, Outbox
from channels.base import Capabilities, Inbound
from consent.ages import age_band, age_on, milestones_at_enrolment
from consent.keywords import Keyword, classify
from prompts.texts import Texts

log = logging.getLogger(__name__)

NOTICE_VERSION = "2026-11"  # bump when the first-contact notice changes materially
COPENHAGEN = ZoneInfo("Europe/Copenhagen")
AUTO_REPLY_EVERY = dt.timedelta(hours=12)
REMIND_EVERY = dt.timedelta(hours=1)
LEGAL_TIMER = dt.timedelta(hours=24)


def first_name(display_name: str) -> str:
    """The first name of "Mette Hansen" is "Mette"; a note such as "(fiktiv)" is not a name."""
    for word in display_name.split():
        if not word.startswith("("):
            return word
    return ""


def caseworker_word(display_name: str, language: str) -> str:
    """What the child's texts call the caseworker: the first name, or "din rådgiver"."""
    return first_name(display_name) or ("your caseworker" if language == "en" else "din rådgiver")


class ConversationBot:
    """Implements :class:`bot.engine.hooks.Bot`."""

    def __init__(
        self,
        *,
        texts: Texts,
        safety: SafetyChecker,
        enrolment: Enrolment,
        checkins: Checkins,
        capabilities: Mapping[str, Capabilities],
        municipality: str,
        caseworker_name: str = "",
        oncall_phone: str = "",
        office_hours: tuple[dt.time, dt.time] = (dt.time(8), dt.time(15)),
        office_weekdays: frozenset[int] = frozenset(range(5)),
        escalate_after: dt.timedelta = dt.timedelta(minutes=30),
        retention_days: int = 30,
        verbatim_entries: bool = False,
    ) -> None:
        self.texts = texts
        self.safety = safety
        self.enrolment = enrolment
        self.checkins = checkins
        self.capabilities = capabilities
        self.municipality = municipality
        self.oncall_phone = oncall_phone
        self.office_hours = office_hours
        self.office_weekdays = office_weekdays
        self.escalate_after = escalate_after
        self.retention_days = retention_days
        self.verbatim_entries = verbatim_entries

    # -- the Bot protocol ---------------------------------------------------------------------

    async def enrol(self, session: AsyncSession, inbound: Inbound) -> ChannelIdentity | None:
        return await self.enrolment.redeem(session, inbound)

    def assess(self, text: str) -> Assessment:
        found = self.safety.check(text)
        return Assessment(
            risk=found.risk,
            categories=tuple(found.categories),
            legal_signals=tuple(found.legal_signals),
            rules=tuple(found.rules),
        )

    def needs_turn(self, assessment: Assessment, glance: Glance) -> bool:
        # The same questions, in the same order, as on_message below.
        if assessment.risk or assessment.legal_signals:
            return True
        if glance.button_payload is None and classify(glance.text) is not None:
            return True
        if not glance.consented or glance.checkin_open:
            return True
        return self._auto_reply_due(glance.now, glance.bot_paused, glance.last_auto_reply_at)

    async def on_message(self, turn: Turn) -> list[Reply]:
        band = self.band(turn)
        if turn.assessment.risk or turn.assessment.legal_signals:
            return await self._safety(turn, band)
        keyword = classify(turn.inbound.text) if turn.inbound.button_payload is None else None
        if keyword is not None:
            return await self._keyword(turn, keyword, band)
        if turn.identity.consented_at is None:
            return await self._notice(turn, band)
        if turn.state.active_checkin_id is not None:
            replies = await self.checkins.answer(turn)
            if replies is not None:
                return replies
        return await self._out_of_hours(turn)

    # -- helpers used by the scheduler and caseworker actions ----------------------------------

    def band(self, turn: Turn) -> str:
        today = turn.now.astimezone(COPENHAGEN).date()
        return age_band(age_on(turn.case.child_birth_date, today))

    async def know_caseworker(self, turn: Turn) -> None:
        """Fill ``turn.caseworker_name`` before the bot says anything (not on silent turns)."""
        if turn.caseworker_name:
            return
        worker = await turn.session.get(Caseworker, turn.case.caseworker_id)
        turn.caseworker_name = caseworker_word(
            worker.display_name if worker else "", turn.case.language
        )

    def text(self, turn: Turn, key: str, **values: object) -> str:
        who = turn.caseworker_name or caseworker_word("", turn.case.language)
        merged = {"caseworker": who, **self._values(), **values}
        return self.texts.get(turn.case.language, key, **merged)

    def _values(self) -> dict[str, object]:
        start, end = self.office_hours
        return {
            "municipality": self.municipality,
            "oncall": self.oncall_phone or "114",
            "reply_hours": self.texts_reply_hours(start, end),
            "retention": self.retention_days,
        }

    def texts_reply_hours(self, start: dt.time, end: dt.time) -> str:
        until = "24:00" if end == dt.time.max else f"{end:%H:%M}"
        return f"{start:%H:%M}-{until}"  # a plain hyphen keeps SMS in the GSM-7 alphabet

    def in_office_hours(self, now: dt.datetime) -> bool:
        local = now.astimezone(COPENHAGEN)
        start, end = self.office_hours
        return local.weekday() in self.office_weekdays and start <= local.time() < end

    async def record(
        self, turn: Turn, kind: str, *, summary: str, detail: Mapping[str, object] | None = None
    ) -> None:
        """A consent/participation event in the ledger and as a participation entry."""
        turn.session.add(
            ConsentEvent(
                id=uuid7(),
                case_id=turn.case.id,
                identity_id=turn.identity.id,
                kind=kind,
                version=NOTICE_VERSION if kind == "consent_given" else None,
                channel=turn.identity.channel,
                actor="child",
                occurred_at=turn.now,
                detail=json.dumps(dict(detail or {})),
            )
        )
        await add_entry(
            turn.session,
            case_id=turn.case.id,
            key=turn.key,
            verbatim=False,
            draft=EntryDraft(
                kind=kind,
                occurred_at=turn.now,
                case_ref=turn.case.case_ref,
                channel=turn.identity.channel,
                direction="in",
                actor="child",
                summary=summary,
            ),
        )

    # -- safety -----------------------------------------------------------------------------

    async def _safety(self, turn: Turn, band: str) -> list[Reply]:
        await self.know_caseworker(turn)
        state, assessment = turn.state, turn.assessment
        replies: list[Reply] = []
        if assessment.risk:
            if state.urgent_since is None or state.acknowledged_at is not None:
                state.urgent_since, state.acknowledged_at, state.escalated_at = (
                    turn.now,
                    None,
                    None,
                )
                # On-call is alerted through the outbox unless someone acknowledges in time.
                turn.session.add(
                    Outbox(
                        id=uuid7(),
                        kind="escalate",
                        case_id=turn.case.id,
                        ref_id=turn.case.id,
                        next_attempt_at=turn.now + self.escalate_after,
                    )
                )
            state.urgent_reasons = ",".join(assessment.categories)[:200] or "risk"
            key = "reply" if self.in_office_hours(turn.now) else "reply_out_of_hours"
            replies.append(Reply(self.text(turn, f"safety.{key}.{band}")))
        for signal in assessment.legal_signals:
            if state.timer_due_at is None or state.timer_due_at <= turn.now:
                # A running timer keeps its deadline; one that has run out starts again.
                state.timer_due_at, state.timer_reason = turn.now + LEGAL_TIMER, signal
            if signal == "§48-request":
                replies.append(Reply(self.text(turn, "safety.section48")))
        if not assessment.risk and (
            state.urgent_since is None or state.acknowledged_at is not None
        ):
            # A legal signal without risk still goes to the top of the queue, again after an
            # earlier flag was acknowledged.
            state.urgent_since, state.acknowledged_at = turn.now, None
            state.urgent_reasons = ",".join(assessment.legal_signals)[:200]
        return replies

    # -- keywords and consent ---------------------------------------------------------------------

    async def _keyword(self, turn: Turn, keyword: Keyword, band: str) -> list[Reply]:
        state, identity = turn.state, turn.identity
        if keyword is Keyword.YES and identity.consented_at is not None:
            return await self._out_of_hours(turn)
        await self.know_caseworker(turn)
        if keyword is Keyword.YES:
            identity.consented_at, identity.consent_version = turn.now, NOTICE_VERSION
            await self.record(
                turn,
                "consent_given",
                summary=f"Barnet sagde ja til {identity.channel} (vilkår {NOTICE_VERSION}).",
            )
            replies = [Reply(self.text(turn, "consent.thanks"))]
            age = age_on(turn.case.child_birth_date, turn.now.astimezone(COPENHAGEN).date())
            for milestone in milestones_at_enrolment(age):
                replies.append(Reply(self.text(turn, f"consent.rights.{milestone}.{band}")))
                await self.record(
                    turn,
                    "rights_note",
                    summary=f"Barnet fik besked om sine rettigheder fra {milestone} år.",
                    detail={"milestone": milestone},
                )
            return replies
        if keyword is Keyword.STOP:
            state.bot_paused = True
            await self.record(
                turn,
                "keyword_stop",
                summary="Barnet skrev STOP: Stemmes automatiske beskeder er sat på pause.",
            )
            return [Reply(self.text(turn, "consent.stop"))]
        if keyword is Keyword.START:
            state.bot_paused = False
            if identity.status == "opted_out":
                identity.status, identity.status_reason = "active", None
            await self.record(
                turn,
                "keyword_start",
                summary="Barnet skrev START: automatiske beskeder er slået til igen.",
            )
            return [Reply(self.text(turn, "consent.start"))]
        if keyword is Keyword.HELP:
            await self.record(turn, "keyword_help", summary="Barnet bad om hjælp (HJÆLP).")
            return [Reply(self.text(turn, "consent.help"))]
        await self.record(
            turn, "keyword_my_data", summary="Barnet spurgte, hvad der gemmes (MINE DATA)."
        )
        return [Reply(self.text(turn, "consent.my_data"))]

    async def _notice(self, turn: Turn, band: str) -> list[Reply]:
        identity = turn.identity
        await self.know_caseworker(turn)
        if identity.notice_sent_at is None:
            identity.notice_sent_at = turn.now
            return [Reply(self.text(turn, f"consent.notice.{band}"))]
        if turn.now - identity.notice_sent_at >= REMIND_EVERY:
            identity.notice_sent_at = turn.now
            return [Reply(self.text(turn, "consent.reminder"))]
        return []

    def _auto_reply_due(
        self, now: dt.datetime, bot_paused: bool, last_sent: dt.datetime | None
    ) -> bool:
        if self.in_office_hours(now) or bot_paused:
            return False
        return last_sent is None or now - last_sent >= AUTO_REPLY_EVERY

    async def _out_of_hours(self, turn: Turn) -> list[Reply]:
        state = turn.state
        if not self._auto_reply_due(turn.now, state.bot_paused, state.last_auto_reply_at):
            return []
        state.last_auto_reply_at = turn.now
        await self.know_caseworker(turn)
        return [Reply(self.text(turn, "consent.out_of_hours"))]
