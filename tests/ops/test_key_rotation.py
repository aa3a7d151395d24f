"""``stemme keys rotate | rewrap | retire`` while the service runs and children write."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.cases import add_case, add_caseworker
from bot.cli import main
from bot.crypto import Keyring, UnknownKeyVersion, master_version_of
from bot.engine.enrolment import Enrolment
from bot.keyrotation import master_key_env, retire_command, rewrap_command, rotate_command
from bot.keys import KeyService
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.migrate import upgrade
from bot.storage.models import CaseKey, Message, utcnow
from tests.flows.conftest import Stack, flow_settings, stop_stack
from tests.ops.stack import serve, write_key_file

pytestmark = pytest.mark.slow


async def case_keys(db: Database) -> list[CaseKey]:
    async with db.read() as session:
        return list((await session.exec(select(CaseKey))).all())


async def readable_texts(db: Database, keyring: Keyring) -> list[str]:
    """Every message body, decrypted with a fresh key service (nothing cached)."""
    keys = KeyService(keyring)
    async with db.read() as session:
        rows = (await session.exec(select(Message).order_by(col(Message.created_at)))).all()
        return [
            await keys.decrypt_text(
                session, m.case_id, m.body_enc, table="message", row_id=m.id, field="body"
            )
            for m in rows
        ]


async def outside_case(settings: Settings, ref: str) -> tuple[str, str]:
    """A case and its enrolment code made by another process (as `stemme case add` does)."""
    db = Database(settings.effective_database_url)
    keys = KeyService(Keyring.load(settings.effective_key_file))
    try:
        new = await add_case(
            db,
            keys,
            case_ref=ref,
            caseworker_username="sanne",
            child_name="Testbarn (fiktiv)",
            birth_date=dt.date(2013, 5, 17),
        )
        async with db.write() as session:
            invitation = await Enrolment(keys=keys, valid_for=dt.timedelta(hours=1)).invite(
                session, case_id=new.case_id, channels=["sms"], caseworker_id=None
            )
    finally:
        await db.dispose()
    return new.case_id, invitation.code


async def test_rotation_while_children_write_loses_nothing(tmp_path: Path, db_url: str) -> None:
    settings = flow_settings(tmp_path, db_url)
    write_key_file(settings)
    stack: Stack = await serve(settings)
    lines: list[str] = []
    try:
        writing_case = await stack.case(ref="SAG-W")
        phone = stack.phone("sms")
        await stack.enrol(writing_case, phone, "sms")
        # Cases the running app has never opened: their keys are not in its cache.
        outside = [await outside_case(settings, f"SAG-{n}") for n in range(8)]
        assert {k.master_version for k in await case_keys(stack.db)} == {1}

        async def child_writes() -> None:
            for n in range(12):
                lines.append(f"besked nummer {n} under rotationen")
                assert await phone.write(lines[-1]) == 200

        out: list[str] = []
        status, _ = await asyncio.gather(
            rotate_command(settings, batch=2, out=out.append), child_writes()
        )
        assert status == 0, out
        assert "Re-wrapped" in out[-1]

        # A case the app first meets now, wrapped under version 2 only: the app reads the
        # rotated key file by itself.
        case_id, code = outside[0]
        late = stack.phone("sms", "+447700900777")
        assert await late.write(code) == 200
        assert "116 111" in (await late.read_one()).text
        assert await late.write("ja") == 200
        lines.append("efter rotationen")
        assert await late.write(lines[-1]) == 200
        await stack.idle()

        rows = await case_keys(stack.db)
        assert {k.master_version for k in rows} == {2}
        assert {master_version_of(k.wrapped) for k in rows if k.wrapped is not None} == {2}
        assert await retire_command(settings, 1, out=out.append) == 0
        keyring = Keyring.load(settings.effective_key_file)
        assert sorted(keyring.master_keys) == [2]

        texts = await readable_texts(stack.db, keyring)  # with version 2 alone
        assert [t for t in texts if t in lines] == lines  # every message, once, in order
        assert case_id in {m.case_id for m in await stack.messages(case_id)}
    finally:
        await stop_stack(stack)


async def test_retire_refuses_while_anything_needs_the_version(
    tmp_path: Path, db_url: str
) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path, database_url=db_url)
    keyring = write_key_file(settings)
    db = Database(db_url)
    try:
        await add_caseworker(db, username="sanne", display_name="Sanne", password="x" * 16)
        ids = [(await outside_case(settings, f"SAG-{n}"))[0] for n in range(3)]
        # Another engineer's crypto-shredding leaves rows like this: nothing to unwrap.
        async with db.write() as session:
            shredded = await session.get(CaseKey, (ids[2], 1))
            assert shredded is not None
            shredded.wrapped, shredded.destroyed_at = None, utcnow()

        keyring.with_new_version().save(settings.effective_key_file)  # added, not re-wrapped
        out: list[str] = []
        assert await retire_command(settings, 1, out=out.append) == 1
        assert "still wraps 2 case key(s)" in out[-1]
        assert await retire_command(settings, 2, out=out.append) == 1
        assert "current one" in out[-1]
        assert await retire_command(settings, 7, out=out.append) == 1
        assert sorted(Keyring.load(settings.effective_key_file).master_keys) == [1, 2]

        assert await rewrap_command(settings, out=out.append) == 0
        assert out[-1] == "Re-wrapped 2 case key(s) to master key version 2."
        rows = {k.case_id: k for k in await case_keys(db)}
        assert rows[ids[2]].master_version == 1 and rows[ids[2]].wrapped is None  # untouched
        assert await retire_command(settings, 1, out=out.append) == 0
        assert sorted(Keyring.load(settings.effective_key_file).master_keys) == [2]

        # A process still holding only version 1 (a stale copy of the key file) must not wrap
        # a new case's key with it: that key would be unreadable once version 1 is gone.
        with pytest.raises(UnknownKeyVersion):
            await add_case(
                db,
                KeyService(keyring),
                case_ref="SAG-STALE",
                caseworker_username="sanne",
                child_name="Testbarn (fiktiv)",
                birth_date=dt.date(2013, 5, 17),
            )
    finally:
        await db.dispose()


async def test_a_tampered_wrapped_key_is_reported_not_fatal(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path)
    await asyncio.to_thread(upgrade, settings.effective_database_url)
    write_key_file(settings)
    db = Database(settings.effective_database_url)
    try:
        await add_caseworker(db, username="sanne", display_name="Sanne", password="x" * 16)
        bad, good = [(await outside_case(settings, f"SAG-{n}"))[0] for n in range(2)]
        async with db.write() as session:
            row = await session.get(CaseKey, (bad, 1))
            assert row is not None and row.wrapped is not None
            row.wrapped = row.wrapped[:-1] + bytes([row.wrapped[-1] ^ 1])
        out: list[str] = []
        assert await rotate_command(settings, out=out.append) == 1
        assert out[-1].endswith(bad) and "1 case(s)" in out[-1]
        rows = {k.case_id: k.master_version for k in await case_keys(db)}
        assert rows == {bad: 1, good: 2}
        assert await retire_command(settings, 1, out=out.append) == 1  # still needed
    finally:
        await db.dispose()


def test_keys_from_the_environment_print_the_new_value_then_rewrap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keyring = Keyring.generate()
    index = base64.urlsafe_b64encode(keyring.index_key).decode()
    monkeypatch.setenv("STEMME_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STEMME_MASTER_KEY", master_key_env(keyring))
    monkeypatch.setenv("STEMME_INDEX_KEY", index)
    assert main(["init"]) == 0
    settings = Settings.from_env({}, data_dir=tmp_path)
    db_url = settings.effective_database_url

    async def setup() -> None:
        db = Database(db_url)
        try:
            await add_caseworker(db, username="sanne", display_name="Sanne", password="x" * 16)
            await add_case(
                db,
                KeyService(keyring),
                case_ref="SAG-1",
                caseworker_username="sanne",
                child_name="Testbarn (fiktiv)",
                birth_date=dt.date(2013, 5, 17),
            )
        finally:
            await db.dispose()

    asyncio.run(setup())
    capsys.readouterr()
    assert main(["keys", "rotate"]) == 0
    printed = capsys.readouterr().out
    [line] = [x for x in printed.splitlines() if x.startswith("STEMME_MASTER_KEY=")]
    rotated = Keyring.parse_env(line.split("=", 1)[1], index)
    assert (
        sorted(rotated.master_keys) == [1, 2] and rotated.master_keys[1] == keyring.master_keys[1]
    )

    async def versions() -> set[int]:
        db = Database(db_url)
        try:
            return {k.master_version for k in await case_keys(db)}
        finally:
            await db.dispose()

    assert asyncio.run(versions()) == {1}  # nothing re-wrapped before every process has it
    monkeypatch.setenv("STEMME_MASTER_KEY", line.split("=", 1)[1])
    assert main(["keys", "rewrap"]) == 0
    assert asyncio.run(versions()) == {2}
    assert main(["keys", "retire", "1"]) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("STEMME_MASTER")]
    assert line.split("=", 1)[1].startswith("2:") and "," not in line
