"""Secure-link replies end to end: the SMS carries only a notice, the child reads the words on
``/s/<token>``, the link expires kindly. Real SMS through the Twilio sandbox, with the outbox
running, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import update
from sqlmodel import col, select

from bot.inbox.securelink import token_hash
from bot.storage.models import Message, SecureLink, utcnow
from tests.flows.conftest import Stack, flow_settings, start_stack, stop_stack
from tests.inbox.conftest import csrf_from

WORDS = "Mødet med din mor er flyttet til torsdag <kl. 10> & vi taler om anbringelsen."
LINK = re.compile(r"(http://127\.0\.0\.1:\d+)(/s/[A-Za-z0-9_-]{43})")


@pytest.fixture
async def stack(tmp_path: Path, db_url: str) -> AsyncIterator[Stack]:
    running = await start_stack(flow_settings(tmp_path, db_url))
    try:
        yield running
    finally:
        await stop_stack(running)


async def _reply(stack: Stack, case_id: str, text: str, *, secure: bool) -> aiohttp.ClientResponse:
    client = await stack.inbox.logged_in("sanne")
    page = await (await client.get(f"/inbox/cases/{case_id}")).text()
    form = {"csrf_token": csrf_from(page), "text": text}
    if secure:
        form["secure"] = "1"
    return await client.post(f"/inbox/cases/{case_id}/reply", data=form, allow_redirects=False)


async def test_the_sms_carries_only_a_notice_and_the_child_reads_the_words_by_link(
    stack: Stack,
) -> None:
    case_id = await stack.case()
    phone = stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")
    assert await phone.write("hej, hvad sker der?") == 200

    response = await _reply(stack, case_id, WORDS, secure=True)
    assert response.status == 303
    sms = await phone.read_one()
    assert "torsdag" not in sms.text and "anbringelsen" not in sms.text
    assert "Du har en ny besked." in sms.text and "7 dage" in sms.text
    found = LINK.search(sms.text)
    assert found is not None, sms.text
    assert found[1] == stack.settings.public_base_url

    # The transcript and the record keep the caseworker's words; the link row only a hash.
    texts = await stack.texts(case_id)
    assert texts[-1] == ("caseworker", WORDS)
    token = found[2].removeprefix("/s/")
    async with stack.db.read() as session:
        [link] = (await session.exec(select(SecureLink))).all()
    assert link.token_hash == token_hash(token) and token.encode() not in link.notice_enc
    assert link.opened_at is None

    async with aiohttp.ClientSession() as child:
        page = await child.get(stack.settings.public_url(found[2]))
        body = await page.text()
    assert page.status == 200
    assert "Mødet med din mor er flyttet til torsdag &lt;kl. 10&gt; &amp; vi taler" in body
    assert "<kl. 10>" not in body
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "script-src" not in page.headers["Content-Security-Policy"]  # no script at all
    assert page.headers["Cache-Control"].startswith("no-store")
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "116 111" in body  # the emergency line, as on the web chat

    inbox = await stack.inbox.logged_in("sanne")
    conversation = await (await inbox.get(f"/inbox/cases/{case_id}")).text()
    assert "Sendt som sikkert link. Åbnet af barnet" in conversation
    async with stack.db.read() as session:
        opened = (await session.exec(select(SecureLink))).one()
    assert opened.opened_at is not None


async def test_an_expired_or_wrong_link_says_so_kindly(stack: Stack) -> None:
    case_id = await stack.case()
    phone = stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")
    assert await phone.write("hej") == 200
    assert (await _reply(stack, case_id, WORDS, secure=True)).status == 303
    found = LINK.search((await phone.read_one()).text)
    assert found is not None
    async with stack.db.write() as session:
        await session.execute(
            update(SecureLink).values(expires_at=utcnow() - dt.timedelta(minutes=1))
        )

    async with aiohttp.ClientSession() as child:
        expired = await child.get(stack.settings.public_url(found[2]))
        expired_body = await expired.text()
        other = "B" if found[2].endswith("A") else "A"  # one character off
        wrong = await child.get(stack.settings.public_url(found[2][:-1] + other))
        wrong_body = await wrong.text()
        garbage = await child.get(stack.settings.public_url("/s/<script>"))
    assert expired.status == 410
    assert "Linket er udløbet" in expired_body and "Det er ikke din skyld" in expired_body
    assert "torsdag" not in expired_body
    assert wrong.status == 404 and "Linket virker ikke" in wrong_body
    assert garbage.status == 404
    inbox = await stack.inbox.logged_in("sanne")
    conversation = await (await inbox.get(f"/inbox/cases/{case_id}")).text()
    assert "uden at være åbnet" in conversation


async def test_without_the_tick_the_words_go_by_sms_and_on_the_web_chat_no_link_is_made(
    stack: Stack,
) -> None:
    case_id = await stack.case()
    phone = stack.phone("sms")
    await stack.enrol(case_id, phone, "sms")
    assert await phone.write("hej") == 200
    assert (await _reply(stack, case_id, "Vi ses i morgen.", secure=False)).status == 303
    assert (await phone.read_one()).text == "Vi ses i morgen."

    # A case that only has the web chat: the reply is already read there, no link is made.
    web_case = await stack.case(ref="SAG-2")
    assert (await _reply(stack, web_case, "Hej fra webchat", secure=True)).status == 303
    async with stack.db.read() as session:
        links = (await session.exec(select(SecureLink))).all()
        [message] = (
            await session.exec(
                select(Message).where(Message.case_id == web_case).order_by(col(Message.seq))
            )
        ).all()[-1:]
    assert links == [] and message.channel == "webchat"
