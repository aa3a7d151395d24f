"""The FHIR and PDF sink settings: what is refused, and which sinks they build, in which order."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.caselog.build import build_sinks
from bot.caselog.fhir import FhirSink
from bot.caselog.pdf import PdfSink
from bot.caselog.sinks import JsonlSink
from bot.caselog.webhook import WebhookSink
from bot.settings import ConfigError, Settings
from tests.caselog.helpers import SECRET

FHIR = "https://fhir.example.dk/r4"
TOKEN = "fake-fhir-token-0042"


async def test_every_configured_sink_remote_ones_first(tmp_path: Path) -> None:
    env = {
        "STEMME_CASELOG_WEBHOOK_URL": "https://sag.example.dk/entries",
        "STEMME_CASELOG_WEBHOOK_SECRET": SECRET,
        "STEMME_CASELOG_FHIR_URL": FHIR,
        "STEMME_CASELOG_FHIR_TOKEN": TOKEN,
        "STEMME_CASELOG_PDF_DIR": str(tmp_path / "journal"),
        "STEMME_CASELOG_PDF_PER": "day",
    }
    sinks = build_sinks(Settings.from_env(env, data_dir=tmp_path))
    assert [type(s) for s in sinks] == [WebhookSink, FhirSink, PdfSink, JsonlSink]
    pdf = sinks[2]
    assert isinstance(pdf, PdfSink) and pdf.per_day and pdf.directory == tmp_path / "journal"
    for sink in sinks:
        await sink.aclose()


def test_a_pdf_directory_alone_is_somewhere_to_go(tmp_path: Path) -> None:
    env = {"STEMME_CASELOG_JSONL": "false", "STEMME_CASELOG_PDF_DIR": str(tmp_path)}
    [only] = build_sinks(Settings.from_env(env))
    assert isinstance(only, PdfSink) and not only.per_day


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"STEMME_CASELOG_FHIR_URL": "fhir.example.dk"}, "FHIR_URL"),
        ({"STEMME_CASELOG_FHIR_URL": FHIR, "STEMME_CASELOG_FHIR_TIMEOUT": "0"}, "FHIR_TIMEOUT"),
        ({"STEMME_CASELOG_PDF_PER": "week"}, "PDF_PER"),
        ({"STEMME_CASELOG_JSONL": "false"}, "FHIR_URL"),
    ],
)
def test_unusable_settings_are_refused(values: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(values)


def test_production_needs_https_for_fhir_and_hides_the_token() -> None:
    env = {
        "STEMME_MODE": "production",
        "STEMME_PUBLIC_BASE_URL": "https://stemme.example.dk",
        "STEMME_KEY_FILE": "/etc/stemme/keyring.json",
        "STEMME_CASELOG_FHIR_URL": "http://fhir.example.dk/r4",
        "STEMME_CASELOG_FHIR_TOKEN": TOKEN,
    }
    with pytest.raises(ConfigError, match="STEMME_CASELOG_FHIR_URL to an https"):
        Settings.from_env(env)
    settings = Settings.from_env(env | {"STEMME_CASELOG_FHIR_URL": FHIR})
    assert TOKEN not in repr(settings)
