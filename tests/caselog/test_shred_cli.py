"""``stemme case close | shred`` from a shell: refusals name their reason, then it shreds."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from pathlib import Path

import pytest
from sqlmodel import select

from bot.cases import add_case, add_caseworker
from bot.cli import main
from bot.crypto import Keyring
from bot.keys import KeyService
from bot.storage.db import Database
from bot.storage.models import CaseKey


async def test_the_commands_close_shred_and_explain_a_refusal(
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    keyring = Keyring.generate()
    db = Database(db_url)
    try:
        await add_caseworker(db, username="sanne", display_name="Sanne Fiktiv", password="x" * 12)
        new = await add_case(
            db,
            KeyService(keyring),
            case_ref="SAG-C1",
            caseworker_username="sanne",
            child_name="Testbarn (fiktiv)",
            birth_date=dt.date(2013, 5, 17),
        )
        master = ",".join(
            f"{v}:{base64.urlsafe_b64encode(k).decode()}" for v, k in keyring.master_keys.items()
        )
        monkeypatch.setenv("STEMME_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("STEMME_DATABASE_URL", db_url)
        monkeypatch.setenv("STEMME_MASTER_KEY", master)
        monkeypatch.setenv(
            "STEMME_INDEX_KEY", base64.urlsafe_b64encode(keyring.index_key).decode()
        )

        async def stemme(*argv: str) -> int:
            # Each command runs its own event loop, as from a shell.
            return await asyncio.to_thread(main, list(argv))

        assert await stemme("case", "shred", "SAG-C1") == 1
        assert "the case is not closed" in capsys.readouterr().err
        assert await stemme("case", "close", "SAG-C1") == 0
        assert "case SAG-C1 closed" in capsys.readouterr().out
        assert await stemme("case", "close", "NO-SUCH-CASE") == 1
        capsys.readouterr()
        # Nothing was ever written, so nothing waits for filing or retention.
        assert await stemme("case", "shred", "SAG-C1") == 0
        assert "1 data keys destroyed" in capsys.readouterr().out
        async with db.read() as session:
            [key] = (
                await session.exec(select(CaseKey).where(CaseKey.case_id == new.case_id))
            ).all()
        assert key.wrapped is None and key.destroyed_at is not None
    finally:
        await db.dispose()
