"""Check-ins in the database: start, answer, finish — around the pure state machine.

The running state lives encrypted on the ``checkin`` row and the conversation points at it, so a
restart continues at the right item. A finished (or abandoned, or expired) check-in becomes a
participation entry with its scores; a fall of the instrument's threshold or more on a 0–10 item
since the child's previous check-in of the same instrument is flagged.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.caselog.entries import EntryDraft, add_entry
from bot.crypto import DataKey
from bot.engine import checkin as machine
from bot.engine.hooks import Reply, Turn
from bot.ids import uuid7
from bot.storage.models import Case, Checkin, ConversationState, utcnow
from channels.base import Button, Capabilities
from prompts.instruments import Instrument
from prompts.texts import Texts

TABLE = "checkin"
STATE = "state"
RESULT = "result"
GOALS_TABLE, GOALS_FIELD = "child_case", "goals"


class CheckinError(Exception):
    """A check-in cannot start (unknown instrument, one already running)."""


class Checkins:
    def __init__(
        self,
        *,
        texts: Texts,
        instruments: Mapping[str, Instrument],
        capabilities: Mapping[str, Capabilities],
        expires_after: dt.timedelta = dt.timedelta(hours=24),
    ) -> None:
        self.texts = texts
        self.instruments = instruments
        self.capabilities = capabilities
        self.expires_after = expires_after

    def buttons_on(self, channel: str) -> bool:
        found = self.capabilities.get(channel)
        return found is not None and found.buttons

    def instrument(self, instrument_id: str) -> Instrument:
        try:
            return self.instruments[instrument_id]
        except KeyError:
            raise CheckinError(f"unknown instrument {instrument_id!r}") from None

    async def goals(self, session: AsyncSession, key: DataKey, case: Case) -> list[str]:
        if case.goals_enc is None:
            return []
        text = key.decrypt_text(
            case.goals_enc, table=GOALS_TABLE, row_id=case.id, field=GOALS_FIELD
        )
        return [str(g) for g in json.loads(text)]

    async def start(
        self,
        session: AsyncSession,
        key: DataKey,
        *,
        case: Case,
        state: ConversationState,
        instrument_id: str,
        band: str,
        buttons: bool,
        now: dt.datetime | None = None,
    ) -> list[Reply]:
        """Open a check-in for the child and return its first prompts."""
        now = now or utcnow()
        instrument = self.instrument(instrument_id)
        goals = tuple(await self.goals(session, key, case))
        if not goals and any(item.per_goal for item in instrument.items):
            raise CheckinError(f"{instrument.id!r} needs the child's goals, and there are none")
        if state.active_checkin_id is not None:
            await self.abandon(session, key, case=case, state=state, now=now)
        step = machine.start(
            instrument,
            language=case.language,
            age_band=band,
            now=now,
            goals=goals,
            expires_after=self.expires_after,
            buttons=buttons,
            texts=self.texts,
        )
        row = Checkin(
            id=uuid7(),
            case_id=case.id,
            instrument_id=instrument.id,
            instrument_version=str(instrument.version),
            status="asking",
            started_at=now,
        )
        row.state_enc = _seal(key, row.id, STATE, step.state)
        session.add(row)
        state.active_checkin_id = row.id
        return _replies(step.replies)

    async def answer(self, turn: Turn) -> list[Reply] | None:
        """Feed the child's message to the open check-in; ``None`` if there is none."""
        state = turn.state
        row = await turn.session.get(Checkin, state.active_checkin_id)
        if row is None or row.state_enc is None or row.status != "asking":
            state.active_checkin_id = None
            return None
        instrument = self.instruments.get(row.instrument_id)
        if instrument is None:
            state.active_checkin_id = None
            return None
        try:
            step = machine.answer(
                instrument,
                _open(turn.key, row.id, STATE, row.state_enc),
                text=turn.inbound.text,
                button_payload=turn.inbound.button_payload,
                now=turn.now,
                buttons=self.buttons_on(turn.identity.channel),
                texts=self.texts,
            )
        except machine.CheckinError:
            # The instrument changed under a running check-in, or the state is unreadable:
            # close it with what was answered; the message itself is already stored.
            await self.abandon(turn.session, turn.key, case=turn.case, state=state, now=turn.now)
            return None
        row.state_enc = _seal(turn.key, row.id, STATE, step.state)
        if step.finished is not None:
            await self._finish(
                turn.session, turn.key, turn.case, state, row, step.finished, turn.now
            )
        return _replies(step.replies)

    async def abandon(
        self,
        session: AsyncSession,
        key: DataKey,
        *,
        case: Case,
        state: ConversationState,
        now: dt.datetime,
    ) -> None:
        """Close the open check-in (expired, STOP, a new one sent); partial answers are kept."""
        row = await session.get(Checkin, state.active_checkin_id)
        state.active_checkin_id = None
        if row is None or row.state_enc is None or row.status != "asking":
            return
        saved = _open(key, row.id, STATE, row.state_enc)
        try:
            result = machine.expire(saved, now) or machine.abandon(saved, now)
        except machine.CheckinError:
            row.status, row.finished_at, row.state_enc = "abandoned", now, None
            return
        await self._finish(session, key, case, state, row, result, now)

    async def record_rating(
        self,
        session: AsyncSession,
        key: DataKey,
        *,
        case: Case,
        instrument_id: str,
        answers: Mapping[str, int | None],
        caseworker_id: str,
        now: dt.datetime | None = None,
    ) -> Checkin:
        """The caseworker's parallel rating of the same items (never sent to the child)."""
        now = now or utcnow()
        instrument = self.instrument(instrument_id)
        result = machine.rating_result(instrument, answers)
        row = Checkin(
            id=uuid7(),
            case_id=case.id,
            instrument_id=instrument.id,
            instrument_version=str(instrument.version),
            rater="caseworker",
            status=result.status,
            started_at=now,
            finished_at=now,
        )
        row.result_enc = _seal(key, row.id, RESULT, _result_data(result))
        session.add(row)
        await add_entry(
            session,
            case_id=case.id,
            key=key,
            verbatim=False,
            draft=EntryDraft(
                kind="caseworker_rating",
                occurred_at=now,
                case_ref=case.case_ref,
                channel=None,
                direction=None,
                actor="caseworker",
                summary=f"Rådgiverens parallelle vurdering: {instrument.id}{_score_text(result)}.",
                scores=_scores(row, result, []),
            ),
        )
        return row

    async def results(
        self, session: AsyncSession, key: DataKey, case_id: str, *, rater: str | None = None
    ) -> list[tuple[Checkin, dict[str, Any]]]:
        """Finished check-ins of a case, oldest first, with their decrypted results."""
        query = select(Checkin).where(
            Checkin.case_id == case_id, col(Checkin.result_enc).is_not(None)
        )
        if rater is not None:
            query = query.where(Checkin.rater == rater)
        rows = (await session.exec(query.order_by(col(Checkin.started_at)))).all()
        return [(r, _open(key, r.id, RESULT, r.result_enc or b"")) for r in rows]

    async def _finish(
        self,
        session: AsyncSession,
        key: DataKey,
        case: Case,
        state: ConversationState,
        row: Checkin,
        result: machine.CheckinResult,
        now: dt.datetime,
    ) -> None:
        instrument = self.instruments.get(row.instrument_id)
        threshold = instrument.scoring.change_threshold if instrument else 2
        previous = await self._previous(session, key, row)
        falls = [] if previous is None else machine.falls(previous, result, threshold=threshold)
        row.status, row.finished_at, row.flagged = result.status, now, bool(falls)
        row.result_enc = _seal(key, row.id, RESULT, _result_data(result))
        row.state_enc = None
        if state.active_checkin_id == row.id:
            state.active_checkin_id = None
        answered = sum(1 for v in result.answers.values() if v is not None)
        status_da = {"completed": "besvarede", "abandoned": "afbrød", "expired": "nåede ikke"}
        summary = (
            f"Barnet {status_da.get(result.status, result.status)} tjek-in '{row.instrument_id}' "
            f"({answered} af {len(result.answers)} spørgsmål{_score_text(result, comma=True)})."
        )
        if falls:
            summary += f" Fald på {threshold} eller mere siden sidst: {', '.join(falls)}."
        await add_entry(
            session,
            case_id=case.id,
            key=key,
            verbatim=False,
            draft=EntryDraft(
                kind="checkin",
                occurred_at=now,
                case_ref=case.case_ref,
                channel=None,
                direction="in",
                actor="child",
                summary=summary,
                scores=_scores(row, result, falls),
            ),
        )

    async def _previous(
        self, session: AsyncSession, key: DataKey, row: Checkin
    ) -> machine.CheckinResult | None:
        earlier = (
            await session.exec(
                select(Checkin)
                .where(
                    Checkin.case_id == row.case_id,
                    Checkin.instrument_id == row.instrument_id,
                    Checkin.rater == "child",
                    Checkin.id != row.id,
                    col(Checkin.result_enc).is_not(None),
                )
                .order_by(col(Checkin.started_at).desc())
                .limit(1)
            )
        ).first()
        if earlier is None or earlier.result_enc is None:
            return None
        return machine.CheckinResult.from_dict(_open(key, earlier.id, RESULT, earlier.result_enc))


def _result_data(result: machine.CheckinResult) -> dict[str, Any]:
    return result.to_dict()


def _scores(row: Checkin, result: machine.CheckinResult, falls: Sequence[str]) -> dict[str, Any]:
    return {
        "instrument": row.instrument_id,
        "version": row.instrument_version,
        "rater": row.rater,
        "status": result.status,
        "items": dict(result.answers),
        "score": result.score,
        "flagged_falls": list(falls),
    }


def _score_text(result: machine.CheckinResult, *, comma: bool = False) -> str:
    if result.score is None:
        return ""
    return f"{', ' if comma else ' '}score {result.score:g}".replace(".", ",")


def _replies(prompts: Sequence[machine.Prompt]) -> list[Reply]:
    return [Reply(p.text, tuple(Button(t, v) for t, v in p.buttons)) for p in prompts]


def _seal(key: DataKey, row_id: str, field: str, data: Mapping[str, Any]) -> bytes:
    return key.encrypt(
        json.dumps(data, ensure_ascii=False), table=TABLE, row_id=row_id, field=field
    )


def _open(key: DataKey, row_id: str, field: str, blob: bytes) -> dict[str, Any]:
    value = json.loads(key.decrypt_text(blob, table=TABLE, row_id=row_id, field=field))
    assert isinstance(value, dict)
    return value
