"""``stemme team add`` and ``stemme user add --team --role``, in-process, on a temporary dir."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from sqlmodel import select

from bot.cli import DEMO_TEAM, main
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.models import Caseworker, Team


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STEMME_DATA_DIR", str(tmp_path / "var"))
    return tmp_path / "var"


async def _people(data_dir: Path) -> dict[str, tuple[str, str | None]]:
    settings = Settings.from_env({}, data_dir=data_dir)
    db = Database(settings.effective_database_url)
    try:
        async with db.read() as session:
            teams = {t.id: t.name for t in (await session.exec(select(Team))).all()}
            workers = (await session.exec(select(Caseworker))).all()
            return {w.username: (w.role, teams.get(w.team_id or "")) for w in workers}
    finally:
        await db.dispose()


def test_teams_and_roles_from_the_command_line(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["init"]) == 0
    assert main(["team", "add", "Team Nord"]) == 0
    assert main(["team", "add", "Team Nord"]) == 1  # the name is taken
    assert main(["team", "add", "  "]) == 1
    password = "a-long-enough-password\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(password))
    lead = ["user", "add", "lea", "--name", "Lea (fiktiv)", "--team", "Team Nord"]
    assert main([*lead, "--role", "team_lead"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(password))
    assert main(["user", "add", "x", "--name", "X (fiktiv)", "--team", "Team Syd"]) == 1
    assert "no team called 'Team Syd'" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(password))
    assert main(["user", "add", "rita", "--name", "Rita (fiktiv)"]) == 0
    assert main(["demo"]) == 0

    people = asyncio.run(_people(data_dir))

    assert people == {
        "lea": ("team_lead", "Team Nord"),
        "rita": ("caseworker", None),
        "demo": ("caseworker", DEMO_TEAM),
    }
