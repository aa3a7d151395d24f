"""deploy/stemme.service: valid for systemd, hardened, and wired to the key file."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "stemme.service"
INSTALLED_STEMME = "/opt/stemme/venv/bin/stemme"
ANALYZE = "/usr/bin/systemd-analyze"  # scripts/install-system-deps.sh installs it
# systemd-analyze security's scale is 0-100 (it prints 0.0-10.0); the unit rates 1.1 "OK".
MAX_EXPOSURE = "15"


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's stemme, which exists here."""
    stemme = Path(sys.executable).with_name("stemme")
    assert stemme.exists()
    path = tmp_path / "stemme.service"
    text = UNIT.read_text(encoding="utf-8")
    assert INSTALLED_STEMME in text
    path.write_text(text.replace(INSTALLED_STEMME, str(stemme)), encoding="utf-8")
    return path


def service() -> dict[str, list[str]]:
    """The [Service] section, each key with all its values (keys may repeat)."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which(ANALYZE), "systemd-analyze missing: run scripts/install-system-deps.sh"
    return subprocess.run(
        [ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_systemd_analyze_verify_finds_nothing(rendered: Path) -> None:
    result = analyze("verify", "--man=no", "--generators=no", str(rendered))
    # verify exits 0 on unknown keys and bad values too, so any output at all is a failure.
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_verify_would_catch_a_typo(rendered: Path) -> None:
    text = rendered.read_text(encoding="utf-8").replace("ProtectHome=yes", "ProtectHome=yess")
    rendered.write_text(text, encoding="utf-8")
    result = analyze("verify", "--man=no", "--generators=no", str(rendered))
    assert "yess" in result.stderr


def test_exposure_rating_stays_low(rendered: Path) -> None:
    result = analyze("security", "--offline=true", f"--threshold={MAX_EXPOSURE}", str(rendered))
    assert result.returncode == 0, result.stdout[-2000:]


def test_the_hardening_the_issue_asks_for() -> None:
    values = service()
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "User": "stemme",
        "UMask": "0077",
    }
    assert {key: values[key][0] for key in expected} == expected
    assert "@system-service" in values["SystemCallFilter"]
    assert values["ReadWritePaths"] == ["/var/lib/stemme"]
    assert values["StateDirectory"] == ["stemme"]
    assert values["ExecStart"] == [f"{INSTALLED_STEMME} serve"]
    assert values["EnvironmentFile"] == ["/etc/stemme/stemme.env"]


def test_the_key_file_comes_through_load_credential() -> None:
    values = service()
    [credential] = values["LoadCredential"]
    name, _, source = credential.partition(":")
    assert source == "/etc/stemme/keyring.json"
    assert f"STEMME_KEY_FILE=%d/{name}" in values["Environment"]  # %d: the credentials dir
    # The keys are never handed over as environment variables.
    assert not any("MASTER_KEY" in v or "INDEX_KEY" in v for v in values["Environment"])


def test_the_unit_parses_as_ini() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    assert parser.sections() == ["Unit", "Service", "Install"]
    assert parser["Install"]["WantedBy"] == "multi-user.target"
