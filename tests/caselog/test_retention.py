"""Retention: the local copy goes once the case system has it and the period is over.

The child writes and answers a check-in through the real router; the outbox files the entries
to the JSONL sink; the scheduler's clock is moved as the scheduler tests do (``tick(now)``).
An entry not yet filed is never touched, one filed within the period is kept, and after it the
message bodies and the child's own words in the check-in are gone while the inbox still shows
the conversation with "removed after filing" lines. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot import appkeys
from bot.caselog.retention import plan, sweep
from bot.cli import main
from bot.engine.checkins import RESULT, TABLE
from bot.inbox.i18n import LOCAL_ZONE
from bot.settings import ConfigError, Settings
from bot.storage.models import Checkin, ParticipationEntry, utcnow
from tests.caselog.helpers import midday
from tests.inbox.conftest import InboxHarness, start, stop

CLOSING = "Er der noget, du gerne vil have"
OWN_WORDS = "jeg vil gerne tale om fodbold"
RETENTION = dt.timedelta(days=30)


@pytest.fixture
async def inbox(db_url: str, tmp_path: Path) -> AsyncIterator[InboxHarness]:
    harness = await start(tmp_path, database_url=db_url, retention_days=30)
    try:
        yield harness
    finally:
        await stop(harness)


async def last_bot_text(inbox: InboxHarness, case_id: str) -> str:
    rows = [m for m in await inbox.messages(case_id) if m.direction == "out"]
    async with inbox.db.read() as session:
        return await inbox.keys.decrypt_text(
            session, case_id, rows[-1].body_enc, table="message", row_id=rows[-1].id, field="body"
        )


async def file_everything(inbox: InboxHarness) -> None:
    outbox = inbox.app[appkeys.OUTBOX]
    while await outbox.run_once():
        pass


async def entries(inbox: InboxHarness, case_id: str) -> list[ParticipationEntry]:
    async with inbox.db.read() as session:
        query = select(ParticipationEntry).where(ParticipationEntry.case_id == case_id)
        return list((await session.exec(query.order_by(col(ParticipationEntry.seq)))).all())


async def test_filed_copies_go_after_the_period_and_unfiled_ones_stay(
    inbox: InboxHarness,
) -> None:
    worker = await inbox.caseworker("sanne")
    case = await inbox.case("sanne", ref="SAG-R1")
    await inbox.child_writes(case, "hej, er du der")
    await inbox.router.reply(case_id=case.case_id, caseworker_id=worker, text="Ja, jeg er her")
    scheduler = inbox.app[appkeys.SCHEDULER]
    await scheduler.send_now(
        case_id=case.case_id, instrument_id="wellbeing", caseworker_id=worker, now=midday()
    )
    for _ in range(12):
        if CLOSING in await last_bot_text(inbox, case.case_id):
            await inbox.child_writes(case, OWN_WORDS)
            break
        await inbox.child_writes(case, "6")
    async with inbox.db.read() as session:
        [checkin] = (await session.exec(select(Checkin))).all()
    assert checkin.status == "completed"
    await file_everything(inbox)
    filed = await entries(inbox, case.case_id)
    assert filed and all(e.filed_at is not None for e in filed)
    # Written after filing: its entry waits (the outbox is not run again).
    await inbox.child_writes(case, "en sidste besked")
    unfiled = [e for e in await entries(inbox, case.case_id) if e.filed_at is None]
    assert unfiled
    filed_at = max(e.filed_at for e in filed if e.filed_at is not None)

    # Within the period: nothing is removed.
    within = filed_at + dt.timedelta(days=29)
    assert (await plan(inbox.db, retention=RETENTION, now=within)).entries == 0
    await scheduler.tick(within)
    assert all(m.body_enc is not None for m in await inbox.messages(case.case_id))
    assert all(e.payload_enc is not None for e in await entries(inbox, case.case_id))

    # After it: the dry run counts without changing anything, then the scheduler removes.
    after = filed_at + RETENTION + dt.timedelta(minutes=1)
    planned = await plan(inbox.db, retention=RETENTION, now=after)
    assert planned.entries == len(filed)
    assert planned.kept_unfiled == len(unfiled)
    assert planned.messages == sum(1 for e in filed if e.kind == "message")
    assert all(m.body_enc is not None for m in await inbox.messages(case.case_id))
    await scheduler.tick(after)

    messages = await inbox.messages(case.case_id)
    old = [m for m in messages if m.created_at <= filed_at]
    later = [m for m in messages if m.created_at > filed_at]
    assert old and later
    assert all(m.body_enc is None and m.body_removed_at == after for m in old)
    assert all(m.body_enc is not None and m.body_removed_at is None for m in later)
    rows = {e.id: e for e in await entries(inbox, case.case_id)}
    assert all(rows[e.id].payload_enc is None and rows[e.id].erased_at == after for e in filed)
    assert all(
        rows[e.id].payload_enc is not None and rows[e.id].erased_at is None for e in unfiled
    )
    async with inbox.db.read() as session:
        checkin = await session.get(Checkin, checkin.id)
        assert checkin is not None and checkin.result_enc is not None
        assert checkin.text_removed_at == after
        result = json.loads(
            await inbox.keys.decrypt_text(
                session,
                case.case_id,
                checkin.result_enc,
                table=TABLE,
                row_id=checkin.id,
                field=RESULT,
            )
        )
    assert result["closing_text"] is None
    assert result["answers"] and set(result["answers"].values()) == {6}  # the numbers stay

    # A second sweep finds nothing left to do (another process would find the same).
    assert (await sweep(inbox.db, inbox.keys, retention=RETENTION, now=after)).entries == 0

    # The inbox still shows the conversation: removed lines say so, the last one is readable.
    client = await inbox.logged_in("sanne")
    page = await client.get(f"/inbox/cases/{case.case_id}")
    html = await page.text()
    assert page.status == 200
    day = after.astimezone(LOCAL_ZONE).strftime("%d.%m.%Y")
    assert html.count(f"Fjernet efter journalisering ({day})") == len(old)
    assert "en sidste besked" in html
    assert "hej, er du der" not in html and OWN_WORDS not in html


async def test_nothing_unfiled_is_ever_removed(inbox: InboxHarness) -> None:
    await inbox.caseworker("sanne")
    case = await inbox.case("sanne", ref="SAG-R2")
    await inbox.child_writes(case, "hej")
    far = utcnow() + dt.timedelta(days=3650)
    assert (await plan(inbox.db, retention=RETENTION, now=far)).kept_unfiled == 1
    await inbox.app[appkeys.SCHEDULER].tick(far)
    [message] = await inbox.messages(case.case_id)
    [entry] = await entries(inbox, case.case_id)
    assert message.body_enc is not None and entry.payload_enc is not None
    assert entry.filed_at is None and entry.erased_at is None


async def test_the_dry_run_command_prints_counts(
    inbox: InboxHarness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await inbox.caseworker("sanne")
    case = await inbox.case("sanne", ref="SAG-R3")
    await inbox.child_writes(case, "hej")
    await file_everything(inbox)
    await inbox.child_writes(case, "hej igen")  # not filed
    monkeypatch.setenv("STEMME_DATA_DIR", str(inbox.settings.data_dir))
    monkeypatch.setenv("STEMME_DATABASE_URL", inbox.settings.effective_database_url)
    monkeypatch.setenv("STEMME_SANDBOX_PORT", "0")
    # The command runs its own event loop, as from a shell.
    assert await asyncio.to_thread(main, ["caselog", "retention", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove the local copy of 0 filed entries" in out
    assert "kept, not yet confirmed filed: 1" in out
    assert "kept, filed within the retention period: 1" in out
    assert all(m.body_enc is not None for m in await inbox.messages(case.case_id))


def test_a_negative_retention_period_is_refused() -> None:
    with pytest.raises(ConfigError, match="STEMME_RETENTION_DAYS"):
        Settings.from_env({}, retention_days=-1)
