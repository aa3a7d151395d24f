"""The stemme command in-process, on a temporary data directory."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from bot.cli import main


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STEMME_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("STEMME_PORT", "8123")
    return tmp_path / "var"


def test_demo_prints_link_inbox_and_login_and_is_repeatable(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0
    first = capsys.readouterr().out
    link = re.search(r"Child's chat link: (http://127\.0\.0\.1:8123/c/[A-Za-z0-9_-]+)", first)
    assert link and "Caseworker inbox:  http://127.0.0.1:8123/inbox/" in first
    login = re.search(r"Login: +demo / (\S+)", first)
    assert login
    assert (data_dir / "keyring.json").stat().st_mode & 0o777 == 0o600
    assert main(["demo"]) == 0
    second = capsys.readouterr().out
    assert link.group(1) in second  # same case and link; a fresh password
    assert login.group(1) not in second


def test_user_and_case_add(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["init"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-enough-password\n"))
    assert main(["user", "add", "rita", "--name", "Rita (fiktiv)"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-enough-password\n"))
    assert main(["user", "add", "rita", "--name", "Rita (fiktiv)"]) == 1
    capsys.readouterr()
    assert (
        main(
            [
                "case",
                "add",
                "SAG-9",
                "--caseworker",
                "rita",
                "--name",
                "Bo (fiktiv)",
                "--birth-date",
                "2011-02-03",
            ]
        )
        == 0
    )
    assert re.search(r"http://127\.0\.0\.1:8123/c/[A-Za-z0-9_-]{20,}", capsys.readouterr().out)
    assert (
        main(
            [
                "case",
                "add",
                "SAG-10",
                "--caseworker",
                "nobody",
                "--name",
                "X",
                "--birth-date",
                "2011-02-03",
            ]
        )
        == 1
    )


def test_short_password_is_refused(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["init"])
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["user", "add", "rita", "--name", "Rita"]) == 2
    assert "12 characters" in capsys.readouterr().err


def test_production_refuses_to_start_without_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STEMME_MODE", "production")
    assert main(["serve"]) == 2
    assert "STEMME_MASTER_KEY" in capsys.readouterr().err
