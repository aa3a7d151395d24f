"""The must-show: a case is closed and crypto-shredded, and no key left in the system opens it.

A child enrols by SMS, writes, gets an answer from the caseworker and answers a check-in while
the case system's reference receiver is down. The case is closed; shredding refuses while
anything is unfiled. The receiver comes up, everything is filed, and once the retention period
has passed the scheduler shreds the case. Copies of the case's ciphertexts taken before then
(raw SQL) open with no master key version, no case_key row, no other key and not through the
KeyService, not even one that had the key cached (another process); and the receiver holds
every entry of the case once, in order, ending with ``data_erased``. SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from sqlalchemy import text, update
from sqlmodel import SQLModel, col, select

from bot import appkeys
from bot.case_close import close_case
from bot.caselog.receiver import receiver_app
from bot.caselog.retention_shred import ShredRefused, shred_case
from bot.caselog.sinks import read_entries
from bot.crypto import (
    CryptoError,
    DataKey,
    KeyDestroyed,
    Keyring,
    unwrap_data_key,
)
from bot.ids import uuid7
from bot.keys import KeyService
from bot.storage.models import (
    AuditEvent,
    CaseKey,
    CaseNote,
    Caseworker,
    ChannelIdentity,
    Outbox,
    ParticipationEntry,
    utcnow,
)
from tests.caselog.helpers import (
    ADDRESSES,
    SECRET,
    caselog_jobs,
    midday,
    problems,
    until_filed,
)
from tests.caselog.test_scenario import CLOSING, OUTRO
from tests.flows.conftest import Phone, Stack, flow_settings, free_port, start_stack, stop_stack

pytestmark = pytest.mark.slow

RETENTION = dt.timedelta(days=30)


def case_ciphertext_columns() -> list[tuple[str, str, str, str, str]]:
    """(table, key column, case column, column, AAD field) of every ``*_enc`` column that belongs
    to a case, read from the models, so a table added later is covered too."""
    found = []
    for table in SQLModel.metadata.sorted_tables:
        case_col = "id" if table.name == "child_case" else "case_id"
        if case_col not in table.c:
            continue
        for column in table.c:
            if column.name.endswith("_enc"):
                key = next(iter(table.primary_key.columns)).name
                field = column.name.removesuffix("_enc")
                found.append((table.name, key, case_col, column.name, field))
    return found


async def raw_ciphertexts(stack: Stack, case_id: str) -> list[tuple[str, str, str, bytes]]:
    """(table, row id, field, blob) of every ciphertext of the case, read with plain SQL."""
    found = []
    async with stack.db.read() as session:
        for table, key, case_col, column, field in case_ciphertext_columns():
            rows = await session.execute(
                text(
                    f"SELECT {key}, {column} FROM {table} "
                    f"WHERE {case_col} = :case AND {column} IS NOT NULL"
                ),
                {"case": case_id},
            )
            found += [(table, str(row_id), field, bytes(blob)) for row_id, blob in rows.all()]
    return found


def opens(key: bytes, case_id: str, version: int, blob: tuple[str, str, str, bytes]) -> bool:
    table, row_id, field, data = blob
    try:
        DataKey(case_id, version, key).decrypt(data, table=table, row_id=row_id, field=field)
    except CryptoError:
        return False
    return True


async def every_key_the_system_has(
    stack: Stack, keyring: Keyring, case_id: str
) -> list[tuple[str, bytes]]:
    """Every master key version, the system key, and every data key a case_key row still opens."""
    keys: list[tuple[str, bytes]] = [(f"master v{v}", k) for v, k in keyring.master_keys.items()]
    keys.append(("system", stack.app[appkeys.KEYS].system_key().key))
    keys.append(("index", keyring.index_key))
    async with stack.db.read() as session:
        rows = (await session.exec(select(CaseKey))).all()
    for row in rows:
        if row.wrapped is not None:
            raw = unwrap_data_key(
                keyring, row.wrapped, case_id=row.case_id, data_key_version=row.version
            )
            keys.append((f"case_key {row.case_id[:8]} v{row.version}", raw))
    return keys


async def test_a_shredded_case_opens_with_no_key_and_stays_filed(
    tmp_path: Path, db_url: str
) -> None:
    port = free_port()
    settings = flow_settings(
        tmp_path,
        db_url,
        caselog_webhook_url=f"http://127.0.0.1:{port}/entries",
        caselog_webhook_secret=SECRET,
        caselog_webhook_timeout=2.0,
        retention_days=30,
    )
    keyring = Keyring.generate().with_new_version()  # two master key versions to try
    stack = await start_stack(settings, keyring=keyring)
    received = tmp_path / "received"
    server = TestServer(receiver_app(SECRET, received), host="127.0.0.1", port=port)
    try:
        case_id = await stack.case(ref="SAG-S1")
        other_case = await stack.case(ref="SAG-S2")  # stays open: its key must not open ours
        phone = stack.phone("sms", ADDRESSES[0])
        await stack.enrol(case_id, phone, "sms")
        for words in ("hej", "jeg har det svært i skolen"):
            assert await phone.write(words) == 200
        async with stack.db.read() as session:
            worker = (await session.exec(select(Caseworker))).one()
        await stack.app[appkeys.ROUTER].reply(
            case_id=case_id, caseworker_id=worker.id, text="Tak, vi taler om det torsdag"
        )
        await stack.idle()
        await drain(phone)
        await answer_checkin(stack, case_id, phone, worker.id)
        await stack.idle()
        assert await caselog_jobs(stack.db)  # the receiver is down: nothing filed yet
        await add_note(stack, case_id, worker.id, "intern note om skolen")

        closed = await close_case(stack.db, case_id=case_id, actor=worker.id)
        assert not closed.already_closed
        # The child writes after closing: a kind answer, nothing stored.
        before = len(await stack.messages(case_id))
        entries_before = await _entry_ids(stack, case_id)
        assert await phone.write("hallo? er der nogen") == 200
        answer = (await phone.read_one()).text
        assert "lukket" in answer and "116 111" in answer and "112" in answer
        assert len(await stack.messages(case_id)) == before
        assert await _entry_ids(stack, case_id) == entries_before

        keys = stack.app[appkeys.KEYS]
        later = utcnow() + RETENTION + dt.timedelta(days=1)
        with pytest.raises(ShredRefused) as refused:
            await shred_case(
                stack.db, keys, case_id=case_id, actor="test", retention=RETENTION, now=later
            )
        assert "unfiled" in refused.value.reasons

        # The receiver comes up; everything is filed.
        await server.start_server()
        async with stack.db.write() as session:  # the backoff's wait, skipped
            await session.execute(
                update(Outbox)
                .where(col(Outbox.kind) == "caselog", col(Outbox.status) == "pending")
                .values(next_attempt_at=utcnow())
            )
        await until_filed(stack.db)
        with pytest.raises(ShredRefused) as refused:
            await shred_case(stack.db, keys, case_id=case_id, actor="test", retention=RETENTION)
        assert refused.value.reasons == ("retention",)

        # Another process that has the key cached: it read the transcript before shredding.
        elsewhere = KeyService(keyring)
        copies = await raw_ciphertexts(stack, case_id)
        assert {c[0] for c in copies} >= {
            "message",
            "participation_entry",
            "checkin",
            "case_note",
            "channel_identity",
            "child_case",
        }
        live_key = await _data_key(stack, case_id)
        assert all(opens(live_key, case_id, 1, c) for c in copies)  # the copies are good
        sample = next(c for c in copies if c[0] == "message")
        async with stack.db.read() as session:
            assert await elsewhere.decrypt_text(
                session, case_id, sample[3], table="message", row_id=sample[1], field="body"
            )

        # The retention period passes; the scheduler's round shreds the case.
        await stack.app[appkeys.SCHEDULER].tick(later)
        await until_filed(stack.db)
        stored = await _entries(stack, case_id)
        other_key = await _data_key(stack, other_case)

        # No key the system still has opens any copy taken before shredding.
        candidates = await every_key_the_system_has(stack, keyring, case_id)
        candidates.append(("other case", other_key))
        assert not [
            (name, c[0], c[2])
            for name, key in candidates
            for c in copies
            for version in (1, 2)
            if opens(key, case_id, version, c)
        ]
        for service in (keys, elsewhere, KeyService(keyring)):
            for c in copies:
                table, row_id, field, blob = c
                async with stack.db.read() as session:
                    with pytest.raises(KeyDestroyed):
                        await service.decrypt_text(
                            session, case_id, blob, table=table, row_id=row_id, field=field
                        )
        assert await raw_ciphertexts(stack, case_id) == []
        await _forgotten(stack, case_id)

        # The receiver holds every entry of the case once, in order, ending with data_erased.
        filed = [e for e in read_entries(received) if e["case_ref"] == "SAG-S1"]
        assert [e["id"] for e in filed] == [row.id for row in stored]
        assert [e["seq"] for e in filed] == list(range(1, len(filed) + 1))
        assert filed[-1]["kind"] == "data_erased"
        assert filed[-1]["actor"] == "system" and "text" not in filed[-1]
        assert {e["id"]: problems(e) for e in filed} == {e["id"]: [] for e in filed}
        assert {"message", "checkin"} <= {e["kind"] for e in filed}
    finally:
        await server.close()
        await stop_stack(stack)


async def answer_checkin(stack: Stack, case_id: str, phone: Phone, worker_id: str) -> None:
    """Answer a check-in to the end, with own words for the closing question."""
    await stack.app[appkeys.SCHEDULER].send_now(
        case_id=case_id, instrument_id="wellbeing", caseworker_id=worker_id, now=midday()
    )
    for _ in range(15):
        texts = [m.text for m in await phone.read(1)]  # one or more new lines
        if any(OUTRO in t for t in texts):
            return
        await phone.write("min egen mening" if any(CLOSING in t for t in texts) else "6")
    raise AssertionError("the check-in did not end")


async def add_note(stack: Stack, case_id: str, worker_id: str, words: str) -> None:
    """A caseworker's internal note (encrypted with the case key like everything else)."""
    note_id = uuid7()
    async with stack.db.write() as session:
        key = await stack.app[appkeys.KEYS].case_key(session, case_id)
        body = key.encrypt(words, table="case_note", row_id=note_id, field="body")
        session.add(CaseNote(id=note_id, case_id=case_id, caseworker_id=worker_id, body_enc=body))


async def drain(phone: Phone) -> None:
    """Read whatever the phone has been sent so far (bot lines, the caseworker's answer)."""
    new = await phone.sandbox.messages_to(phone.address, after=phone.seen, wait=0.5)
    if new:
        phone.seen = new[-1].n


async def _entry_ids(stack: Stack, case_id: str) -> list[str]:
    return [e.id for e in await _entries(stack, case_id)]


async def _entries(stack: Stack, case_id: str) -> list[ParticipationEntry]:
    async with stack.db.read() as session:
        query = select(ParticipationEntry).where(ParticipationEntry.case_id == case_id)
        return list((await session.exec(query.order_by(col(ParticipationEntry.seq)))).all())


async def _data_key(stack: Stack, case_id: str) -> bytes:
    async with stack.db.read() as session:
        return (await stack.app[appkeys.KEYS].case_key(session, case_id)).key


async def _forgotten(stack: Stack, case_id: str) -> None:
    async with stack.db.read() as session:
        keys = (await session.exec(select(CaseKey).where(CaseKey.case_id == case_id))).all()
        identities = (
            await session.exec(select(ChannelIdentity).where(ChannelIdentity.case_id == case_id))
        ).all()
        actions = (
            await session.exec(select(AuditEvent.action).where(AuditEvent.case_id == case_id))
        ).all()
    assert keys and all(k.wrapped is None and k.destroyed_at is not None for k in keys)
    assert identities and all(
        i.address_index is None and i.address_enc is None and i.status == "erased"
        for i in identities
    )
    assert {"case.close", "case.shred"} <= set(actions)


async def test_shredding_refuses_an_open_case_and_happens_once(
    tmp_path: Path, db_url: str
) -> None:
    stack = await start_stack(flow_settings(tmp_path, db_url, retention_days=30))
    try:
        case_id = await stack.case(ref="SAG-S3")
        keys = stack.app[appkeys.KEYS]
        far = utcnow() + dt.timedelta(days=400)
        with pytest.raises(ShredRefused) as refused:
            await shred_case(stack.db, keys, case_id=case_id, actor="test", retention=RETENTION)
        assert refused.value.reasons == ("open",)
        await close_case(stack.db, case_id=case_id, actor="test")
        again = await close_case(stack.db, case_id=case_id, actor="test")
        assert again.already_closed
        done = await shred_case(
            stack.db, keys, case_id=case_id, actor="test", retention=RETENTION, now=far
        )
        assert done.keys_destroyed == 1
        with pytest.raises(ShredRefused) as refused:
            await shred_case(
                stack.db, keys, case_id=case_id, actor="test", retention=RETENTION, now=far
            )
        assert refused.value.reasons == ("shredded",)
        await until_filed(stack.db)
        rows: list[Any] = await _entries(stack, case_id)
        assert [r.kind for r in rows] == ["data_erased"] and rows[0].filed_at is not None
    finally:
        await stop_stack(stack)
