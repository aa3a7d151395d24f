"""A whole conversation filed on a FHIR server, a PDF directory and the JSONL file at once.

The child answers a check-in and writes through the SMS sandbox into the whole stack; the outbox
files every entry on the fake FHIR server (which parses each resource with the R4B models), and
the resources are compared with what the child answered. A second test takes the FHIR server
down first: entries wait, then arrive once each, and a redelivery creates nothing new.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from pypdf import PdfReader
from sqlalchemy import update
from sqlmodel import col, select

from bot import appkeys
from bot.caselog.fhir_fake import FakeFhirServer
from bot.caselog.fhir_resources import entry_id
from bot.storage.models import Caseworker, Outbox, ParticipationEntry, utcnow
from tests.caselog.helpers import caselog_jobs, midday, until_filed
from tests.e2e.chat import caselog_entries
from tests.flows.conftest import Phone, Stack, flow_settings, free_port, start_stack, stop_stack

pytestmark = pytest.mark.slow

# What the child answers per wellbeing item (13 years old: 0–10); None: "spring over".
ANSWERS: dict[str, int | None] = {"me": 7, "home": None, "school_friends": 3, "overall": 9}
WORDS = "jeg har det svært derhjemme"  # the child's words; the policy keeps them out


async def answer_checkin(stack: Stack, case_id: str, phone: Phone) -> None:
    """Start a wellbeing check-in and answer each question by its wording."""
    instrument = stack.app[appkeys.CHECKINS].instruments["wellbeing"]
    questions = {item.id: item.text.get("da", "13_17") for item in instrument.items}
    async with stack.db.read() as session:
        worker = (await session.exec(select(Caseworker))).one()
    await stack.app[appkeys.SCHEDULER].send_now(
        case_id=case_id, instrument_id="wellbeing", caseworker_id=worker.id, now=midday()
    )
    for _ in range(12):
        text = (await phone.read_one()).text
        if "Tak for dine svar" in text:
            return
        if "Er der noget, du gerne vil have" in text:
            await phone.write("nej tak")
            continue
        asked = [item for item, question in questions.items() if question in text]
        if asked:
            value = ANSWERS[asked[0]]
            await phone.write("spring over" if value is None else str(value))
    raise AssertionError("the check-in did not end")


def resources_json(fake: FakeFhirServer) -> str:
    return "".join(r.model_dump_json() for kind in fake.resources.values() for r in kind)


async def test_a_checkin_and_messages_are_filed_as_fhir_and_pdf(
    tmp_path: Path, db_url: str
) -> None:
    fake = FakeFhirServer()
    server = TestServer(fake.app(), host="127.0.0.1", port=free_port())
    await server.start_server()
    settings = flow_settings(
        tmp_path,
        db_url,
        caselog_fhir_url=str(server.make_url("/fhir")),
        caselog_pdf_dir=tmp_path / "journal",
    )
    stack = await start_stack(settings)
    try:
        case_id = await stack.case()
        phone = stack.phone("sms")
        await stack.enrol(case_id, phone, "sms")
        await answer_checkin(stack, case_id, phone)
        assert await phone.write(WORDS) == 200
        await stack.idle()
        await until_filed(stack.db)
        async with stack.db.read() as session:
            stored = (await session.exec(select(ParticipationEntry))).all()
    finally:
        await stop_stack(stack)
        await server.close()

    [response] = fake.resources["QuestionnaireResponse"]
    [form] = fake.resources["Questionnaire"]
    # Both parsed with the R4B models on arrival; they also survive a round trip.
    QuestionnaireResponse.model_validate(response.model_dump(mode="json"))
    Questionnaire.model_validate(form.model_dump(mode="json"))
    assert response.status == "completed"
    assert response.questionnaire == f"{form.url}|{form.version}"
    answers = {i.linkId: i.answer[0].valueInteger for i in response.item}
    assert answers == {k: v for k, v in ANSWERS.items() if v is not None}
    # Every entry is one resource: the check-in a QuestionnaireResponse, the rest Communications.
    filed = [entry_id(r) for r in fake.resources["Communication"]] + [entry_id(response)]
    assert sorted(filed) == sorted(row.id for row in stored)
    kinds = {c.category[0].coding[0].code for c in fake.resources["Communication"]}
    assert {"consent_given", "message"} <= kinds
    assert WORDS not in resources_json(fake)
    # The same entries, once each, as PDF notes and in the JSONL file.
    notes = sorted((tmp_path / "journal").glob("notat-*.pdf"))
    assert len(notes) == len(stored)
    text = "\n".join(page.extract_text() for n in notes for page in PdfReader(n).pages)
    assert "Tjek-in" in text and "SAG-1" in text and WORDS not in text
    assert len(caselog_entries(settings.effective_caselog_dir)) == len(stored)


async def test_entries_wait_for_the_fhir_server_and_arrive_once(
    tmp_path: Path, db_url: str
) -> None:
    port = free_port()
    settings = flow_settings(
        tmp_path,
        db_url,
        caselog_fhir_url=f"http://127.0.0.1:{port}/fhir",
        caselog_fhir_timeout=2.0,
    )
    stack = await start_stack(settings)
    fake = FakeFhirServer()
    server = TestServer(fake.app(), host="127.0.0.1", port=port)
    try:
        case_id = await stack.case()
        phone = stack.phone("sms")
        await stack.enrol(case_id, phone, "sms")
        for text in ("hej", "er du der"):
            assert await phone.write(text) == 200
        await stack.idle()
        for _ in range(200):  # down: the case's first entry is tried and retried
            heads = [j for j in await caselog_jobs(stack.db) if j.attempts >= 1]
            if heads:
                break
            await asyncio.sleep(0.05)
        assert [j.last_error for j in heads] == ["fhir: ClientConnectorError"]
        assert await caselog_jobs(stack.db, "done") == []

        await server.start_server()  # up again
        async with stack.db.write() as session:  # the backoff's wait, skipped
            await session.execute(
                update(Outbox)
                .where(col(Outbox.kind) == "caselog", col(Outbox.status) == "pending")
                .values(next_attempt_at=utcnow())
            )
        await until_filed(stack.db)
        before = fake.transactions

        # A confirmation lost after filing (say, a crash before the commit): delivered again.
        [first, *_] = await caselog_jobs(stack.db, "done")
        async with stack.db.write() as session:
            await session.execute(
                update(Outbox)
                .where(col(Outbox.id) == first.id)
                .values(status="pending", next_attempt_at=utcnow(), done_at=None)
            )
        stack.app[appkeys.OUTBOX].wake()
        await until_filed(stack.db)
        async with stack.db.read() as session:
            stored = (await session.exec(select(ParticipationEntry))).all()
    finally:
        await stop_stack(stack)
        await server.close()

    assert fake.transactions == before + 1  # the redelivery reached the server …
    filed = [entry_id(r) for kind in fake.resources.values() for r in kind]
    assert sorted(filed) == sorted(row.id for row in stored)  # … and created nothing new
    assert all(row.filed_at is not None for row in stored)
