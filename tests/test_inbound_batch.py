"""The router's fast lane (``bot/inbound_batch.py``) stores exactly what the ordinary path does.

A differential test: the same conversation goes once through the router as it runs (ordinary
messages in the fast lane) and once with every message forced through the engine's turn; the
stored messages, entries, jobs and conversation state must match. Then the batch's own
hazards: two channels of one case in one batch, a retry inside a batch, a case that needs a
turn next to cases that do not — on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from bot import appkeys
from bot.cases import add_case, add_caseworker, add_webchat_identity
from bot.engine.hooks import Assessment, Bot, Glance, Reply, Turn
from bot.router import Router
from bot.storage.models import Caseworker, ChannelIdentity, ConversationState, Message, Outbox
from bot.storage.models import ParticipationEntry as Entry
from channels.base import Inbound
from tests.flows.conftest import Stack, flow_settings, start_stack, stop_stack
from tests.helpers import PASSWORD, mark_consented, webchat_inbound

CONVERSATION = [
    "Hej",
    "ja",  # consent, for the child who had not said it yet
    "Hej igen, kan vi tales ved i morgen?",
    "STOP",
    "er du der?",
    "START",
    "HJÆLP",
    "min far slår mig",
    "kan jeg bo et andet sted",
    "tak fordi du lytter",
]


class AlwaysTurn:
    """The real engine, asked to take a turn on every message (the ordinary path only)."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def enrol(self, session: Any, inbound: Inbound) -> ChannelIdentity | None:
        return await self.bot.enrol(session, inbound)

    def assess(self, text: str) -> Assessment:
        return self.bot.assess(text)

    def needs_turn(self, assessment: Assessment, glance: Glance) -> bool:
        return True

    async def on_message(self, turn: Turn) -> list[Reply]:
        return await self.bot.on_message(turn)


def _not_today() -> str:
    """An office day that is not today (Copenhagen): the bot is out of hours all test long."""
    today = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=1))).isoweekday()
    return str(today % 7 + 1)


@pytest.fixture(params=["staffed", "out_of_hours"])
async def stack(
    request: pytest.FixtureRequest, tmp_path: Path, db_url: str
) -> AsyncIterator[Stack]:
    hours = {} if request.param == "staffed" else {"office_days": _not_today()}
    running = await start_stack(flow_settings(tmp_path, db_url, **hours))
    try:
        yield running
    finally:
        await stop_stack(running)


async def _case(stack: Stack, ref: str, *, consented: bool) -> tuple[str, str]:
    async with stack.db.read() as session:
        known = (
            await session.exec(select(Caseworker).where(Caseworker.username == "sanne"))
        ).first()
    if known is None:
        await add_caseworker(
            stack.db, username="sanne", display_name="Sanne Fiktiv", password=PASSWORD
        )
    new = await add_case(
        stack.db,
        stack.app[appkeys.KEYS],
        case_ref=ref,
        caseworker_username="sanne",
        child_name="Testbarn (fiktiv)",
        birth_date=dt.date(2012, 3, 4),
    )
    if consented:
        await mark_consented(stack.db, new.case_id)
    return new.case_id, new.webchat_token


async def _snapshot(stack: Stack, case_id: str) -> dict[str, Any]:
    """What was stored for a case, without ids, times and the case ref (they differ)."""
    keys = stack.app[appkeys.KEYS]
    async with stack.db.read() as session:
        messages = (
            await session.exec(
                select(Message).where(Message.case_id == case_id).order_by(col(Message.seq))
            )
        ).all()
        entries = (
            await session.exec(
                select(Entry).where(Entry.case_id == case_id).order_by(col(Entry.seq))
            )
        ).all()
        jobs = (
            await session.exec(
                select(Outbox.kind, Outbox.seq)
                .where(Outbox.case_id == case_id)
                .order_by(col(Outbox.kind), col(Outbox.seq))
            )
        ).all()
        state = await session.get(ConversationState, case_id)
        assert state is not None
        texts = [
            (
                m.seq,
                m.direction,
                m.author,
                await keys.decrypt_text(
                    session, case_id, m.body_enc, table="message", row_id=m.id, field="body"
                ),
            )
            for m in messages
        ]
        payloads = []
        for e in entries:
            body = json.loads(
                await keys.decrypt_text(
                    session,
                    case_id,
                    e.payload_enc,
                    table="participation_entry",
                    row_id=e.id,
                    field="payload",
                )
            )
            for varying in ("id", "occurred_at", "case_ref", "links"):
                body.pop(varying)
            payloads.append((e.seq, e.kind, body))
    return {
        "messages": texts,
        "entries": payloads,
        "jobs": [tuple(j) for j in jobs],
        "state": (
            state.next_seq,
            state.next_entry_seq,
            state.bot_paused,
            state.urgent_since is not None,
            state.timer_reason,
            state.handled_at,
            state.last_auto_reply_at is not None,
            state.last_inbound_at is not None,
        ),
    }


async def _converse(router: Router, token: str, prefix: str) -> None:
    for n, text in enumerate(CONVERSATION):
        [stored] = await router.route_inbound([webchat_inbound(token, f"{prefix}-{n}", text)])
        assert stored is not None and not stored.duplicate


@pytest.mark.parametrize("consented", [True, False])
async def test_the_fast_lane_stores_what_the_ordinary_path_stores(
    stack: Stack, consented: bool
) -> None:
    router = stack.app[appkeys.ROUTER]
    fast_case, fast_token = await _case(stack, "SAG-FAST", consented=consented)
    slow_case, slow_token = await _case(stack, "SAG-SLOW", consented=consented)

    before = router.batch.fast_count
    await _converse(router, fast_token, "fast")
    took_fast_lane = router.batch.fast_count - before
    router.batch.bot = AlwaysTurn(router.bot)
    await _converse(router, slow_token, "slow")
    assert router.batch.fast_count - before == took_fast_lane  # none in the second run

    # Plain messages took the fast lane; keywords, consent and safety words did not.
    assert 2 <= took_fast_lane <= 4, took_fast_lane
    fast, slow = await _snapshot(stack, fast_case), await _snapshot(stack, slow_case)
    assert fast == slow
    assert [t for _, _, author, t in fast["messages"] if author == "child"] == CONVERSATION


@pytest.mark.parametrize("stack", ["staffed"], indirect=True)
async def test_one_batch_with_two_channels_of_a_case_a_retry_and_a_turn(stack: Stack) -> None:
    router = stack.app[appkeys.ROUTER]
    busy_case, busy_token = await _case(stack, "SAG-A", consented=True)
    other_case, other_token = await _case(stack, "SAG-B", consented=True)
    # A second web chat link for the busy case: two senders, one case, one set of numbers.
    async with stack.db.write() as session:
        second = await add_webchat_identity(session, stack.app[appkeys.KEYS], busy_case)
    await mark_consented(stack.db, busy_case)
    before = router.batch.fast_count
    inbounds = [webchat_inbound(busy_token, f"a-{n}", f"besked {n}") for n in range(12)]
    inbounds += [webchat_inbound(second, f"b-{n}", f"fra den anden fane {n}") for n in range(12)]
    inbounds += [webchat_inbound(other_token, f"c-{n}", f"hej {n}") for n in range(6)]
    inbounds.append(webchat_inbound(other_token, "c-stop", "STOP"))  # a turn, in the batch
    inbounds += [webchat_inbound(busy_token, "a-3", "besked 3")] * 3  # provider retries

    results = await asyncio.gather(*(router.route_inbound([i]) for i in inbounds))
    stored = [r for [r] in results]
    assert all(s is not None for s in stored)
    assert sum(1 for s in stored if s is not None and s.duplicate) == 3
    assert router.batch.fast_count - before >= 24  # the busy case's messages, at least

    for case_id, count in ((busy_case, 24), (other_case, 7)):
        snap = await _snapshot(stack, case_id)
        inbound = [m for m in snap["messages"] if m[1] == "in"]
        assert len(inbound) == count
        assert [m[0] for m in snap["messages"]] == list(range(1, len(snap["messages"]) + 1))
        assert [e[0] for e in snap["entries"]] == list(range(1, len(snap["entries"]) + 1))
    busy = await _snapshot(stack, busy_case)
    sent = [t for _, _, author, t in busy["messages"] if author == "child"]
    # Each sender's messages keep their order.
    assert [t for t in sent if t.startswith("besked")] == [f"besked {n}" for n in range(12)]
    other = await _snapshot(stack, other_case)
    assert other["state"][2] is True  # STOP paused the bot prompts
