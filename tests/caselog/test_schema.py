"""The published participation-entry schema: well formed, bilingual, served, and true to life."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator

from bot.caselog.entries import EntryDraft, message_summary, payload
from bot.caselog.schema import SCHEMA_PATH, schema, schema_text
from bot.ids import uuid7
from tests.caselog.helpers import problems

DOCS = Path(__file__).resolve().parents[2] / "docs" / "participation-entry.schema.json"
NOW = dt.datetime(2026, 3, 4, 11, 0, tzinfo=dt.UTC)


def test_the_docs_copy_is_the_served_schema() -> None:
    assert DOCS.read_text(encoding="utf-8") == schema_text()


def test_the_schema_is_draft_2020_12_and_versioned() -> None:
    found = schema()
    Draft202012Validator.check_schema(found)
    assert found["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert found["$id"].endswith(":1")
    assert found["properties"]["schema_version"] == {
        "const": 1,
        "description": found["properties"]["schema_version"]["description"],
    }


def _described(node: Any, path: str = "") -> list[str]:
    missing: list[str] = []
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            text = sub.get("description", "")
            if not ("DA: " in text and " EN: " in text):
                missing.append(f"{path}/{name}")
            missing += _described(sub, f"{path}/{name}")
        for name, sub in node.get("$defs", {}).items():
            missing += _described(sub, f"{path}/$defs/{name}")
    return missing


def test_every_field_is_described_in_danish_and_english() -> None:
    assert _described(schema()) == []


async def test_the_schema_is_served(client: TestClient) -> None:  # type: ignore[type-arg]
    response = await client.get(SCHEMA_PATH)
    assert response.status == 200
    assert response.content_type == "application/schema+json"
    assert json.loads(await response.text()) == schema()


def draft(kind: str, **values: Any) -> EntryDraft:
    base: dict[str, Any] = {
        "kind": kind,
        "occurred_at": NOW,
        "case_ref": "SAG-1",
        "channel": "sms",
        "direction": "in",
        "actor": "child",
        "summary": "Et resumé.",
    }
    return EntryDraft(**(base | values))


SCORES = {
    "instrument": "wellbeing",
    "version": "1",
    "rater": "child",
    "status": "completed",
    "items": {"me": 7, "home": None},
    "score": 7.0,
    "flagged_falls": ["me"],
}
# Shapes the engine produces outside the scenario test below (kept in step with their callers).
DRAFTS = [
    draft("checkin", channel=None, scores=SCORES),
    draft("caseworker_rating", channel=None, direction=None, actor="caseworker",
          scores=SCORES | {"rater": "caseworker", "score": None}),
    draft("safety_escalation", channel=None, direction=None, actor="system",
          legal_signals=("risk",)),
    draft("words_used", direction="out", actor="caseworker", text="Vi talte om det.",
          message_id=uuid7()),
    draft("message", direction="out", actor="bot", text="Hej",
          summary=message_summary(actor="bot", channel="sms", text="Hej"), message_id=uuid7()),
    draft("message", text="jeg vil ikke bo hjemme", legal_signals=("risk", "§48-request")),
]  # fmt: skip


@pytest.mark.parametrize("verbatim", [False, True])
@pytest.mark.parametrize("entry_draft", DRAFTS, ids=lambda d: d.kind)
def test_every_kind_of_payload_is_valid(entry_draft: EntryDraft, verbatim: bool) -> None:
    entry = payload(uuid7(), entry_draft, seq=3, verbatim=verbatim)
    assert problems(entry) == []
    assert ("text" in entry) == (verbatim and entry_draft.text is not None)


def test_the_schema_rejects_what_it_should() -> None:
    good = payload(uuid7(), DRAFTS[0], seq=0, verbatim=False)
    assert problems(good) == []
    assert problems({k: v for k, v in good.items() if k != "summary"})
    assert problems(good | {"kind": "gossip"})
    assert problems(good | {"child_name": "Testbarn"})
    assert problems(good | {"legal_signals": ["risk", "risk"]})
    assert problems(good | {"occurred_at": "yesterday"})
    assert problems(good | {"scores": {"instrument": "x"}})
