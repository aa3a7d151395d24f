"""The FHIR sink against a real (fake) FHIR server on 127.0.0.1 that validates with R4B models."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from bot.caselog.entries import EntryDraft, payload
from bot.caselog.fhir import FhirSink, transaction
from bot.caselog.fhir_fake import FakeFhirServer
from bot.caselog.fhir_resources import ENTRY_SYSTEM, entry_id
from bot.caselog.sinks import SinkError
from bot.ids import uuid7
from prompts.instruments import load_instruments
from tests.caselog.helpers import problems
from tests.flows.conftest import free_port

INSTRUMENTS = load_instruments()
AT = dt.datetime(2026, 3, 4, 11, 0, tzinfo=dt.UTC)
WORDS = "jeg er bange for min stedfar"  # the child's words in a test; never in a summary


def checkin(items: dict[str, int | None], *, status: str = "completed", seq: int = 1) -> Any:
    answered = [v for v in items.values() if v is not None]
    draft = EntryDraft(
        "checkin",
        AT,
        "SAG-1",
        None,
        "in",
        "child",
        f"Barnet besvarede tjek-in 'wellbeing' ({len(answered)} af {len(items)} spørgsmål).",
        scores={
            "instrument": "wellbeing",
            "version": "1",
            "rater": "child",
            "status": status,
            "items": items,
            "score": sum(answered) / len(answered) if answered else None,
            "flagged_falls": [],
        },
    )
    return payload(uuid7(), draft, seq=seq, verbatim=False)


def message(*, verbatim: bool, signals: tuple[str, ...] = ()) -> dict[str, Any]:
    draft = EntryDraft(
        "message",
        AT,
        "SAG-1",
        "sms",
        "in",
        "child",
        "Barnet skrev via SMS (6 ord).",
        text=WORDS,
        legal_signals=signals,
    )
    return payload(uuid7(), draft, seq=2, verbatim=verbatim)


@pytest.fixture
async def fhir() -> AsyncIterator[tuple[FakeFhirServer, str]]:
    fake = FakeFhirServer(token="test-token-not-secret")
    server = TestServer(fake.app(), host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        yield fake, str(server.make_url("/fhir"))
    finally:
        await server.close()


async def file_all(url: str, *entries: dict[str, Any], verbatim: bool = False) -> None:
    sink = FhirSink(url, instruments=INSTRUMENTS, token="test-token-not-secret", verbatim=verbatim)
    try:
        for entry in entries:
            await sink.deliver(entry)
    finally:
        await sink.aclose()


async def test_a_checkin_becomes_a_questionnaire_response_with_its_questionnaire(
    fhir: tuple[FakeFhirServer, str],
) -> None:
    fake, url = fhir
    entry = checkin({"me": 7, "home": 3, "school_friends": None, "overall": 9})
    assert problems(entry) == []
    await file_all(url, entry)

    [response] = fake.resources["QuestionnaireResponse"]
    [form] = fake.resources["Questionnaire"]
    assert isinstance(response, QuestionnaireResponse) and isinstance(form, Questionnaire)
    assert response.status == "completed"
    assert response.identifier.system == ENTRY_SYSTEM and response.identifier.value == entry["id"]
    assert response.questionnaire == "urn:stemme:questionnaire:wellbeing|1"
    assert (form.url, form.version) == ("urn:stemme:questionnaire:wellbeing", "1")
    assert [i.linkId for i in form.item] == ["me", "home", "school_friends", "overall"]
    assert form.item[0].text == "Hvordan har du det med dig selv for tiden?"
    answers = {i.linkId: [a.valueInteger for a in i.answer] for i in response.item}
    assert answers == {"me": [7], "home": [3], "overall": [9]}  # the skipped item is absent
    # The case by its reference only: no name, no birth date anywhere.
    assert response.subject.identifier.value == "SAG-1" and response.subject.reference is None
    assert "Testbarn" not in response.model_dump_json()


async def test_an_abandoned_checkin_is_stopped(fhir: tuple[FakeFhirServer, str]) -> None:
    fake, url = fhir
    await file_all(url, checkin({"me": 4, "home": None}, status="abandoned"))
    [response] = fake.resources["QuestionnaireResponse"]
    assert response.status == "stopped"
    assert [i.linkId for i in response.item] == ["me"]


async def test_one_questionnaire_per_instrument_version(fhir: tuple[FakeFhirServer, str]) -> None:
    fake, url = fhir
    await file_all(url, checkin({"me": 1}), checkin({"me": 2}, seq=2))
    assert len(fake.resources["QuestionnaireResponse"]) == 2
    assert len(fake.resources["Questionnaire"]) == 1


async def test_per_goal_answers_are_repeated_groups() -> None:
    goals = INSTRUMENTS["goals"]
    entry = checkin({"progress.1": 8, "progress.2": None, "progress.3": 5})
    entry["scores"] |= {"instrument": "goals", "version": str(goals.version)}
    bundle = transaction(entry, instruments=INSTRUMENTS)
    form, response = (e.resource for e in bundle.entry)
    assert isinstance(form, Questionnaire) and isinstance(response, QuestionnaireResponse)
    assert form.item[0].type == "group" and form.item[0].repeats is True
    groups = [(g.linkId, g.text, g.item[0].answer[0].valueInteger) for g in response.item]
    assert groups == [("progress", "Mål 1", 8), ("progress", "Mål 3", 5)]


async def test_messages_become_communications_without_words_by_default(
    fhir: tuple[FakeFhirServer, str],
) -> None:
    fake, url = fhir
    # Even an entry that carries text is filed without it when the policy is off.
    await file_all(url, message(verbatim=True, signals=("risk",)), verbatim=False)
    [note] = fake.resources["Communication"]
    assert isinstance(note, Communication)
    assert note.payload is None and WORDS not in note.model_dump_json()
    assert note.note[0].text == "Barnet skrev via SMS (6 ord)."
    codes = {c.coding[0].code for c in note.category}
    assert codes == {"message", "risk"} and note.priority == "urgent"
    assert note.sender.display == "Barnet" and note.subject.identifier.value == "SAG-1"


async def test_verbatim_policy_files_the_words(fhir: tuple[FakeFhirServer, str]) -> None:
    fake, url = fhir
    await file_all(url, message(verbatim=True), verbatim=True)
    [note] = fake.resources["Communication"]
    assert [p.contentString for p in note.payload] == [WORDS]


async def test_other_kinds_are_communications_with_their_kind(
    fhir: tuple[FakeFhirServer, str],
) -> None:
    fake, url = fhir
    draft = EntryDraft("keyword_help", AT, "SAG-1", "sms", "in", "child", "Barnet bad om hjælp.")
    await file_all(url, payload(uuid7(), draft, seq=3, verbatim=False))
    [note] = fake.resources["Communication"]
    assert [c.coding[0].code for c in note.category] == ["keyword_help"]
    assert note.category[0].coding[0].display == "HJÆLP"


async def test_the_same_entry_twice_is_filed_once(fhir: tuple[FakeFhirServer, str]) -> None:
    fake, url = fhir
    entry, note = checkin({"me": 5}), message(verbatim=False)
    await file_all(url, entry, note, entry, note)
    assert fake.transactions == 4  # each redelivery was accepted (2xx) …
    assert [entry_id(r) for r in fake.resources["QuestionnaireResponse"]] == [entry["id"]]
    assert [entry_id(r) for r in fake.resources["Communication"]] == [note["id"]]  # … once


async def test_refusals_and_outages_raise_a_safe_reason(fhir: tuple[FakeFhirServer, str]) -> None:
    fake, url = fhir
    wrong = FhirSink(url, instruments=INSTRUMENTS, token="wrong-token")
    with pytest.raises(SinkError) as refused:
        await wrong.deliver(message(verbatim=True))
    await wrong.aclose()
    assert refused.value.reason == "fhir: HTTP 401" and fake.resources == {}

    down = FhirSink(f"http://127.0.0.1:{free_port()}/fhir", instruments=INSTRUMENTS, timeout=2)
    with pytest.raises(SinkError) as unreachable:
        await down.deliver(message(verbatim=True))
    await down.aclose()
    assert unreachable.value.reason == "fhir: ClientConnectorError"
    assert WORDS not in str(unreachable.value)


async def test_the_fake_server_refuses_what_r4b_does_not_validate(
    fhir: tuple[FakeFhirServer, str],
) -> None:
    fake, url = fhir
    bundle = transaction(message(verbatim=False), instruments=INSTRUMENTS).model_dump(
        mode="json", exclude_none=True
    )
    bundle["entry"][0]["resource"]["status"] = 42  # not a code
    # The sink always validates first, so the broken Bundle is posted directly.
    async with ClientSession() as session:
        headers = {"Authorization": "Bearer test-token-not-secret"}
        async with session.post(url, json=bundle, headers=headers) as response:
            assert response.status == 400
            assert (await response.json())["resourceType"] == "OperationOutcome"
    assert fake.resources == {} and fake.rejected
