"""deploy/Dockerfile, read as text (no Docker daemon needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|SID", re.IGNORECASE)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending
    result = []
    for line in joined:
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_slim_python_311_base() -> None:
    args = dict(rest.split("=", 1) for word, rest in instructions() if word == "ARG")
    assert re.fullmatch(r"python:3\.11-slim(-bookworm)?", args["PYTHON_IMAGE"])
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert all(rest.startswith("${PYTHON_IMAGE}") for rest in froms)


def test_runs_as_a_non_root_user() -> None:
    users = [rest for word, rest in final_stage() if word == "USER"]
    assert users, "the final stage needs a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit()  # numeric: runAsNonRoot can check it
    last_user = max(i for i, (word, _) in enumerate(final_stage()) if word == "USER")
    assert all(word != "RUN" for word, _ in final_stage()[last_user:])


def test_healthcheck_entrypoint_and_command() -> None:
    stage = dict(final_stage())
    assert "/healthz" in stage["HEALTHCHECK"] and "CMD" in stage["HEALTHCHECK"]
    assert json.loads(stage["ENTRYPOINT"]) == ["stemme"]
    assert json.loads(stage["CMD"]) == ["serve"]


def test_read_only_root_file_system_friendly() -> None:
    stage = final_stage()
    env = " ".join(rest for word, rest in stage if word == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env  # nothing written next to the code
    assert "STEMME_DATA_DIR=/var/lib/stemme" in env
    assert json.loads(dict(stage)["VOLUME"]) == ["/var/lib/stemme"]
    assert any("compileall" in rest for word, rest in instructions() if word == "RUN")


@pytest.mark.parametrize("word", ["ENV", "ARG", "LABEL"])
def test_no_secret_baked_in(word: str) -> None:
    for found, rest in instructions():
        if found == word:
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest):
                assert not SECRET_NAME.search(name), f"{word} {name}"


def test_copies_only_the_package_never_the_demo_data() -> None:
    sources = []
    for word, rest in instructions():
        if word == "COPY" and not rest.startswith("--from"):
            sources += rest.split()[:-1]
    assert sorted(sources) == sorted(
        ["pyproject.toml", "README.md", "bot", "channels", "consent", "prompts"]
    )
    # The build context itself is a list of exceptions to "nothing".
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    rules = [line.strip() for line in ignore.splitlines() if line.strip()[:1] not in ("", "#")]
    assert rules[0] == "*"
    assert not [rule for rule in rules if "var" in rule or ".env" in rule or "key" in rule]
