"""Every entry a real conversation produces, as filed, fits the published schema.

The child writes through the SMS sandbox into the whole stack (router, bot, check-ins, outbox),
and the JSONL case log is read back and validated with ``jsonschema``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import select

from bot import appkeys
from bot.storage.models import Caseworker, ParticipationEntry
from tests.caselog.helpers import midday, problems, until_filed
from tests.e2e.chat import caselog_entries
from tests.flows.conftest import Phone, Stack, flow_settings, start_stack, stop_stack

pytestmark = pytest.mark.slow

CLOSING = "Er der noget, du gerne vil have"
OUTRO = "Tak for dine svar"


@pytest.fixture
async def verbatim_stack(tmp_path: Path, db_url: str) -> AsyncIterator[Stack]:
    running = await start_stack(flow_settings(tmp_path, db_url, verbatim_entries=True))
    try:
        yield running
    finally:
        await stop_stack(running)


@pytest.fixture
async def stack(tmp_path: Path, db_url: str) -> AsyncIterator[Stack]:
    running = await start_stack(flow_settings(tmp_path, db_url))
    try:
        yield running
    finally:
        await stop_stack(running)


async def answer_checkin(stack: Stack, case_id: str, phone: Phone) -> None:
    async with stack.db.read() as session:
        worker = (await session.exec(select(Caseworker))).one()
    await stack.app[appkeys.SCHEDULER].send_now(
        case_id=case_id, instrument_id="wellbeing", caseworker_id=worker.id, now=midday()
    )
    for _ in range(12):
        text = (await phone.read_one()).text
        if OUTRO in text:
            return
        await phone.write("nej tak" if CLOSING in text else "6")
    raise AssertionError("the check-in did not end")


async def test_a_conversation_files_only_valid_entries(verbatim_stack: Stack) -> None:
    stack = verbatim_stack
    case_id = await stack.case()
    phone = stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")
    await answer_checkin(stack, case_id, phone)
    assert await phone.write("STOP") == 200  # the carrier itself blocks the reply to STOP
    for word in ("START", "HJÆLP", "MINE DATA"):
        assert await phone.write(word) == 200
        await phone.read_one()
    assert await phone.write("jeg vil ikke bo hjemme mere") == 200
    await stack.idle()
    await until_filed(stack.db)

    entries = caselog_entries(stack.settings.effective_caselog_dir)
    assert {e["id"]: problems(e) for e in entries} == {e["id"]: [] for e in entries}
    kinds = {e["kind"] for e in entries}
    assert {
        "consent_given",
        "rights_note",
        "checkin",
        "message",
        "keyword_stop",
        "keyword_start",
        "keyword_help",
        "keyword_my_data",
    } <= kinds
    assert any("§48-request" in e["legal_signals"] for e in entries)
    assert any(e["scores"] and e["scores"]["items"] for e in entries)
    # Verbatim is configured: messages carry text; consent events never do.
    assert all("text" in e for e in entries if e["kind"] == "message")
    assert not any("text" in e for e in entries if e["kind"].startswith("keyword_"))
    # Every stored entry was filed once, numbered 1, 2, 3 … in order.
    async with stack.db.read() as session:
        stored = (await session.exec(select(ParticipationEntry))).all()
    assert sorted(e["id"] for e in entries) == sorted(r.id for r in stored)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert all(r.filed_at is not None for r in stored)


async def test_by_default_entries_hold_no_verbatim_text(stack: Stack) -> None:
    case_id = await stack.case()
    phone = stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")
    assert await phone.write("jeg har det fint i dag") == 200
    await stack.idle()
    await until_filed(stack.db)
    entries = caselog_entries(stack.settings.effective_caselog_dir)
    messages = [e for e in entries if e["kind"] == "message"]
    assert messages and all(problems(e) == [] for e in entries)
    assert not any("text" in e for e in entries)
    assert not any("fint" in e["summary"] for e in entries)
