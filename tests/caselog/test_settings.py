"""The case-log settings: what is refused, and which sinks they build."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.caselog.build import build_sinks
from bot.caselog.sinks import JsonlSink
from bot.caselog.webhook import WebhookSink
from bot.settings import ConfigError, Settings
from tests.caselog.helpers import SECRET

URL = "https://case-system.example/entries"


def test_jsonl_is_the_default_sink(tmp_path: Path) -> None:
    [sink] = build_sinks(Settings.from_env({}, data_dir=tmp_path))
    assert isinstance(sink, JsonlSink) and sink.directory == tmp_path / "caselog"


async def test_a_webhook_comes_before_the_local_copy(tmp_path: Path) -> None:
    env = {"STEMME_CASELOG_WEBHOOK_URL": URL, "STEMME_CASELOG_WEBHOOK_SECRET": SECRET}
    sinks = build_sinks(Settings.from_env(env, data_dir=tmp_path))
    assert [type(s) for s in sinks] == [WebhookSink, JsonlSink]
    env["STEMME_CASELOG_JSONL"] = "false"
    [only] = build_sinks(Settings.from_env(env, data_dir=tmp_path))
    assert isinstance(only, WebhookSink)
    for sink in sinks:
        await sink.aclose()


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"STEMME_CASELOG_WEBHOOK_URL": URL}, "SECRET"),
        (
            {"STEMME_CASELOG_WEBHOOK_URL": URL, "STEMME_CASELOG_WEBHOOK_SECRET": "hunter2"},
            "SECRET",
        ),
        (
            {"STEMME_CASELOG_WEBHOOK_URL": URL, "STEMME_CASELOG_WEBHOOK_SECRET": "whsec_c2hvcnQ="},
            "SECRET",
        ),
        (
            {"STEMME_CASELOG_WEBHOOK_URL": "case-system", "STEMME_CASELOG_WEBHOOK_SECRET": SECRET},
            "URL",
        ),
        ({"STEMME_CASELOG_JSONL": "false"}, "WEBHOOK_URL"),
        (
            {
                "STEMME_CASELOG_WEBHOOK_URL": URL,
                "STEMME_CASELOG_WEBHOOK_SECRET": SECRET,
                "STEMME_CASELOG_WEBHOOK_TIMEOUT": "0",
            },
            "TIMEOUT",
        ),
    ],
)
def test_unusable_caselog_settings_are_refused(values: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(values)


def test_production_needs_https_for_the_webhook() -> None:
    env = {
        "STEMME_MODE": "production",
        "STEMME_PUBLIC_BASE_URL": "https://stemme.example.dk",
        "STEMME_KEY_FILE": "/etc/stemme/keyring.json",
        "STEMME_CASELOG_WEBHOOK_URL": "http://case-system.example/entries",
        "STEMME_CASELOG_WEBHOOK_SECRET": SECRET,
    }
    with pytest.raises(ConfigError, match="STEMME_CASELOG_WEBHOOK_URL to an https"):
        Settings.from_env(env)
    Settings.from_env(env | {"STEMME_CASELOG_WEBHOOK_URL": URL})


def test_the_secret_is_not_shown() -> None:
    settings = Settings.from_env(
        {"STEMME_CASELOG_WEBHOOK_URL": URL, "STEMME_CASELOG_WEBHOOK_SECRET": SECRET}
    )
    assert SECRET not in repr(settings)
