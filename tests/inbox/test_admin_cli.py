"""``stemme user add|reset-2fa|disable``, ``stemme audit verify`` and the demo's TOTP lines."""

from __future__ import annotations

import io
import re
import sqlite3
from pathlib import Path

import pytest

from bot.cli import main
from bot.inbox import totp


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STEMME_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("STEMME_PORT", "8123")
    return tmp_path / "var"


def _sql(data_dir: Path, query: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(data_dir / "stemme.db") as conn:
        rows = conn.execute(query, params).fetchall()
    return rows


def _add(monkeypatch: pytest.MonkeyPatch, username: str, *extra: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-enough-password\n"))
    return main(["user", "add", username, "--name", f"{username} (fiktiv)", *extra])


def test_demo_prints_a_totp_secret_and_the_current_code(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    secret = re.search(r"TOTP secret: +([A-Z2-7]{32})\b", out)
    assert secret is not None
    assert f"otpauth://totp/Stemme:demo?secret={secret[1]}&issuer=Stemme" in out

    assert main(["demo", "--code"]) == 0
    code = capsys.readouterr().out.strip()

    assert totp.matching_step(secret[1], code) is not None
    # The secret is stored encrypted, never as the text that was printed.
    [(blob,)] = _sql(data_dir, "SELECT totp_secret_enc FROM caseworker WHERE username='demo'")
    assert isinstance(blob, bytes) and secret[1].encode() not in blob


def test_user_add_leaves_totp_to_the_first_login(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["init"]) == 0

    assert _add(monkeypatch, "rita", "--role", "admin") == 0

    assert "set up TOTP at their first login" in capsys.readouterr().out
    [(secret, role)] = _sql(
        data_dir, "SELECT totp_secret_enc, role FROM caseworker WHERE username='rita'"
    )
    assert secret is None and role == "admin"


def test_reset_2fa_and_disable(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["demo"]) == 0
    capsys.readouterr()

    assert main(["user", "reset-2fa", "demo"]) == 0
    assert main(["user", "disable", "demo"]) == 0

    out = capsys.readouterr().out
    assert "Two-step verification of demo reset" in out and "Disabled demo" in out
    [(secret, confirmed, active)] = _sql(
        data_dir,
        "SELECT totp_secret_enc, totp_confirmed_at, active FROM caseworker WHERE username='demo'",
    )
    assert (secret, confirmed, active) == (None, None, 0)
    actions = [row[0] for row in _sql(data_dir, "SELECT action FROM audit_event ORDER BY seq")]
    assert actions[-2:] == ["totp_reset", "user_disabled"]
    assert main(["user", "disable", "nobody"]) == 1
    assert main(["user", "reset-2fa", "nobody"]) == 1
    assert "no user 'nobody'" in capsys.readouterr().err


def test_audit_verify_passes_then_names_the_edited_row(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["init"]) == 0
    assert main(["audit", "verify"]) == 0
    assert "intact: 0 event(s)" in capsys.readouterr().out
    for name in ("anna", "bo", "carl"):
        assert _add(monkeypatch, name) == 0
        assert main(["user", "disable", name]) == 0
    capsys.readouterr()

    assert main(["audit", "verify"]) == 0
    assert "intact: 3 event(s)" in capsys.readouterr().out

    [(seq,)] = _sql(data_dir, "SELECT seq FROM audit_event ORDER BY seq LIMIT 1 OFFSET 1")
    _sql(data_dir, "UPDATE audit_event SET actor = 'someone' WHERE seq = ?", seq)
    assert main(["audit", "verify"]) == 1
    assert f"audit event seq {seq} was changed" in capsys.readouterr().err

    _sql(data_dir, "DELETE FROM audit_event WHERE seq = ?", seq)
    assert main(["audit", "verify"]) == 1
    assert "an event in between was deleted" in capsys.readouterr().err
