"""Backup and restore drills: data written by the real code, restored elsewhere, read back."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from bot.crypto import Keyring
from bot.keys import KeyService
from bot.live import Hub
from bot.ops import pgtools
from bot.ops.backup import METADATA, SQLITE_FILE, backup, restore
from bot.ops.errors import BackupError
from bot.router import Router
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.migrate import upgrade_async
from tests.deploy.conftest import PgApp, read_messages, write_messages
from tests.helpers import webchat_inbound

TEXTS = ["hej", "jeg vil gerne tale med dig", "æøå 🙂 tak"]


def sqlite_settings(data_dir: Path, key_file: Path) -> Settings:
    return Settings.from_env({}, data_dir=data_dir, key_file=key_file)


async def migrated_sqlite(tmp_path: Path, key_file: Path) -> Settings:
    settings = sqlite_settings(tmp_path / "data", key_file)
    settings.data_dir.mkdir(mode=0o700)
    await upgrade_async(settings.effective_database_url)
    return settings


def key_material(keyring: Keyring) -> list[bytes]:
    raw = [*keyring.master_keys.values(), keyring.index_key]
    encoded = [base64.urlsafe_b64encode(k) for k in raw] + [base64.b64encode(k) for k in raw]
    return [*raw, *encoded, *(e.rstrip(b"=") for e in encoded), keyring.to_json().encode()]


async def test_sqlite_drill_restores_into_a_fresh_data_dir(tmp_path: Path, key_file: Path) -> None:
    keyring = Keyring.load(key_file)
    settings = await migrated_sqlite(tmp_path, key_file)
    case = await write_messages(settings.effective_database_url, keyring, TEXTS)

    outcome = await backup(settings, tmp_path / "backup")
    assert sorted(p.name for p in outcome.path.iterdir()) == [SQLITE_FILE, METADATA]
    assert outcome.path.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in outcome.path.iterdir())
    for path in outcome.path.iterdir():
        content = path.read_bytes()
        assert not [k for k in key_material(keyring) if k in content], path.name
    metadata = json.loads((outcome.path / METADATA).read_text())
    assert metadata["keys"]["master_versions"] == [1]
    assert metadata["database"]["rows"]["message"] == len(TEXTS)

    fresh = sqlite_settings(tmp_path / "elsewhere", key_file)  # same key file, new data dir
    await restore(fresh, outcome.path)
    assert await read_messages(fresh.effective_database_url, keyring) == TEXTS
    # The blind index works too: the child's link still finds the case.
    db = Database(fresh.effective_database_url)
    try:
        router = Router(db=db, keys=KeyService(keyring), hub=Hub())
        [stored] = await router.route_inbound([webchat_inbound(case.webchat_token, "x-1", "igen")])
    finally:
        await db.dispose()
    assert stored is not None and (stored.case_id, stored.seq) == (case.case_id, len(TEXTS) + 1)


async def test_a_backup_taken_while_the_service_writes_is_consistent(
    tmp_path: Path, key_file: Path
) -> None:
    keyring = Keyring.load(key_file)
    settings = await migrated_sqlite(tmp_path, key_file)
    url = settings.effective_database_url
    case = await write_messages(url, keyring, ["første"])
    db = Database(url)
    router = Router(db=db, keys=KeyService(keyring), hub=Hub())

    async def child_writes() -> None:
        for number in range(60):
            inbound = webchat_inbound(case.webchat_token, f"w-{number:04d}", f"besked {number}")
            await router.route_inbound([inbound])

    try:
        writing = asyncio.create_task(child_writes())
        await asyncio.sleep(0.05)
        outcome = await backup(settings, tmp_path / "backup")
        await writing
    finally:
        await db.dispose()
    rows = outcome.metadata["database"]["rows"]
    # Each message is committed with its participation entry: a torn copy would differ.
    assert rows["message"] == rows["participation_entry"] >= 1
    fresh = sqlite_settings(tmp_path / "elsewhere", key_file)
    await restore(fresh, outcome.path)
    restored = await read_messages(fresh.effective_database_url, keyring)
    assert restored == ["første"] + [f"besked {n}" for n in range(len(restored) - 1)]


async def test_restore_refuses_an_existing_database_unless_forced(
    tmp_path: Path, key_file: Path
) -> None:
    keyring = Keyring.load(key_file)
    settings = await migrated_sqlite(tmp_path, key_file)
    await write_messages(settings.effective_database_url, keyring, TEXTS)
    outcome = await backup(settings, tmp_path / "backup")
    await write_messages(settings.effective_database_url, keyring, ["senere"], case_ref="SAG-2")
    with pytest.raises(BackupError, match="--force"):
        await restore(settings, outcome.path)
    assert len(await read_messages(settings.effective_database_url, keyring)) == 4
    await restore(settings, outcome.path, force=True)
    assert await read_messages(settings.effective_database_url, keyring) == TEXTS


async def test_restore_refuses_other_keys_before_touching_anything(
    tmp_path: Path, key_file: Path
) -> None:
    settings = await migrated_sqlite(tmp_path, key_file)
    await write_messages(settings.effective_database_url, Keyring.load(key_file), TEXTS)
    outcome = await backup(settings, tmp_path / "backup")
    other = tmp_path / "other-keyring.json"
    Keyring.generate().save(other)
    target = sqlite_settings(tmp_path / "elsewhere", other)
    with pytest.raises(BackupError, match="not the one this backup was made with"):
        await restore(target, outcome.path)
    assert not target.data_dir.exists()
    no_keys = sqlite_settings(tmp_path / "elsewhere", tmp_path / "missing.json")
    with pytest.raises(BackupError, match="keyring cannot be loaded"):
        await restore(no_keys, outcome.path)


async def test_the_metadata_names_every_master_key_version_the_data_needs(
    tmp_path: Path, key_file: Path
) -> None:
    old = Keyring.load(key_file)
    settings = await migrated_sqlite(tmp_path, key_file)
    await write_messages(settings.effective_database_url, old, ["før"])
    new = old.with_new_version()  # a rotated keyring: new cases are wrapped by version 2
    new.save(key_file)
    await write_messages(settings.effective_database_url, new, ["efter"], case_ref="SAG-2")
    outcome = await backup(settings, tmp_path / "backup")
    assert outcome.metadata["keys"]["master_versions"] == [1, 2]
    old.save(key_file)  # the keyring from before the rotation cannot read case 2
    with pytest.raises(BackupError, match=r"lacks master key version\(s\) \[2\]"):
        await restore(sqlite_settings(tmp_path / "elsewhere", key_file), outcome.path)


async def test_a_damaged_or_incomplete_backup_is_refused(tmp_path: Path, key_file: Path) -> None:
    settings = await migrated_sqlite(tmp_path, key_file)
    await write_messages(settings.effective_database_url, Keyring.load(key_file), TEXTS)
    outcome = await backup(settings, tmp_path / "backup")
    payload = outcome.path / SQLITE_FILE
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0x01
    payload.write_bytes(bytes(data))
    target = sqlite_settings(tmp_path / "elsewhere", key_file)
    with pytest.raises(BackupError, match="damaged"):
        await restore(target, outcome.path)
    (outcome.path / METADATA).unlink()
    with pytest.raises(BackupError, match="not a Stemme backup"):
        await restore(target, outcome.path)
    assert not target.data_dir.exists()


async def test_backup_never_overwrites_and_leaves_nothing_behind_on_failure(
    tmp_path: Path, key_file: Path
) -> None:
    settings = await migrated_sqlite(tmp_path, key_file)
    outcome = await backup(settings, tmp_path / "backup")
    with pytest.raises(BackupError, match="not an empty directory"):
        await backup(settings, outcome.path)
    empty = sqlite_settings(tmp_path / "nothing-here", key_file)
    with pytest.raises(BackupError, match="No database"):
        await backup(empty, tmp_path / "second")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup", "data", "keys"]


# -- PostgreSQL -------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_postgres_drill_with_credentials_only_in_the_environment(
    pg_app: PgApp, key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[tuple[str, ...], dict[str, str]]] = []
    real_exec = asyncio.create_subprocess_exec

    async def recording_exec(*args: str, **kwargs: Any) -> asyncio.subprocess.Process:
        calls.append((args, dict(kwargs.get("env") or {})))
        return await real_exec(*args, **kwargs)

    monkeypatch.setattr(pgtools.asyncio, "create_subprocess_exec", recording_exec)
    keyring = Keyring.load(key_file)
    source = pg_app.url(0)
    await upgrade_async(source)
    await write_messages(source, keyring, TEXTS)
    settings = Settings.from_env({}, database_url=source, data_dir=tmp_path, key_file=key_file)
    bindir = pg_app.server.bindir

    outcome = await backup(settings, tmp_path / "backup", pg_bindir=bindir)
    database = outcome.metadata["database"]
    server_major = int(bindir.parent.name.split(".")[0])
    assert database["tool_major"] == database["server_major"] == server_major
    assert database["revision"] == "0003" and database["rows"]["message"] == len(TEXTS)
    content = (outcome.path / "database.pgdump").read_bytes()
    assert not [k for k in key_material(keyring) if k in content]

    target = pg_app.url(1)
    restored_settings = Settings.from_env(
        {}, database_url=target, data_dir=tmp_path, key_file=key_file
    )
    await restore(restored_settings, outcome.path, pg_bindir=bindir)
    assert await read_messages(target, keyring) == TEXTS
    with pytest.raises(BackupError, match="--force"):
        await restore(restored_settings, outcome.path, pg_bindir=bindir)
    await write_messages(target, keyring, ["overskrives"], case_ref="SAG-9")
    await restore(restored_settings, outcome.path, force=True, pg_bindir=bindir)
    assert await read_messages(target, keyring) == TEXTS

    tools = [(args, env) for args, env in calls if "--version" not in args]
    assert [Path(args[0]).name for args, _ in tools] == ["pg_dump", "pg_restore", "pg_restore"]
    for args, env in tools:
        assert env["PGPASSWORD"] == pg_app.password and env["PGUSER"] == pg_app.role
        assert not [a for a in args if pg_app.password in a or "://" in a]
