"""deploy/.env.example lists every setting, shows the true defaults, and is a usable template."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

from bot.ops.check_config import Facts, check
from bot.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / ".env.example"
ACTIVE = re.compile(r"^(STEMME_[A-Z0-9_]+)=(.*)$")
DEFAULT = re.compile(r"^# (STEMME_[A-Z0-9_]+)=(.*)$")


def lines(pattern: re.Pattern[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = pattern.match(line)
        if match:
            assert match.group(1) not in found, f"{match.group(1)} is listed twice"
            value = match.group(2)
            # Double quotes around a value with spaces: systemd, Compose and sh strip them.
            found[match.group(1)] = value[1:-1] if value[:1] == value[-1:] == '"' else value
    return found


def variable(field: dataclasses.Field[object]) -> str:
    return "STEMME_" + field.name.upper()


def rendered(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def test_every_setting_is_in_the_example() -> None:
    listed = lines(ACTIVE) | lines(DEFAULT)
    missing = [variable(f) for f in dataclasses.fields(Settings) if variable(f) not in listed]
    assert missing == [], f"add these to deploy/.env.example: {missing}"


def test_the_example_names_no_setting_that_does_not_exist() -> None:
    known = {variable(f) for f in dataclasses.fields(Settings)}
    mentioned = set(re.findall(r"STEMME_[A-Z0-9_]+", EXAMPLE.read_text(encoding="utf-8")))
    assert mentioned - known == set()


def test_commented_lines_show_the_real_defaults() -> None:
    defaults = {variable(f): rendered(f.default) for f in dataclasses.fields(Settings)}
    shown = lines(DEFAULT)
    assert {name: defaults[name] for name in shown} == shown


def test_the_example_holds_no_secret_values() -> None:
    for field in dataclasses.fields(Settings):
        if not field.repr:  # the fields Settings hides from repr are the secrets
            assert lines(ACTIVE).get(variable(field), "") == ""
            assert lines(DEFAULT).get(variable(field), "") == ""


def test_the_file_reads_the_same_in_a_shell(tmp_path: Path) -> None:
    script = f'set -a; . "{EXAMPLE}"; set +a; env'
    result = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, env={}, check=True, timeout=30
    )
    assert result.stderr == ""
    from_shell = dict(
        line.split("=", 1) for line in result.stdout.splitlines() if line.startswith("STEMME_")
    )
    assert from_shell == lines(ACTIVE)


def test_the_template_as_shipped_asks_for_what_is_left_to_fill_in() -> None:
    settings = Settings.from_env(lines(ACTIVE), validate=False)
    assert settings.production
    codes = {f.code for f in check(settings, Facts()) if f.severity == "problem"}
    # The database password placeholder, the on-call contact and the keys: nothing else.
    assert codes == {"placeholder-secret", "oncall-missing", "keys-not-configured"}
