"""DESIGN's import rules: channels never import bot; consent and prompts have no aiohttp."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports_of(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_channels_import_only_channels() -> None:
    for path, names in imports_of("channels").items():
        assert not {n for n in names if n == "bot" or n.startswith("bot.")}, path


@pytest.mark.parametrize("package", ["consent", "prompts"])
def test_consent_and_prompts_have_no_aiohttp(package: str) -> None:
    for path, names in imports_of(package).items():
        assert not {n for n in names if n.split(".")[0] in ("aiohttp", "bot")}, path


def test_only_the_app_knows_concrete_channels() -> None:
    for path, names in imports_of("bot").items():
        concrete = {
            n
            for n in names
            if n.startswith("channels.") and n not in ("channels.base", "channels.errors")
        }
        # The wiring: the app, the web chat's service side, and the provider channels it starts.
        if path in ("bot/app.py", "bot/chat_backend.py", "bot/providers.py"):
            continue
        assert not concrete, path


def test_nothing_but_settings_reads_the_environment() -> None:
    for package in ("bot", "channels", "consent", "prompts"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "settings.py":
                continue
            source = path.read_text(encoding="utf-8")
            assert "os.environ" not in source and "getenv" not in source, path
