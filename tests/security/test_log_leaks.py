"""Nothing a child wrote, no address, token, code, cookie, password, secret or key in any log.

A whole working day on every channel, through the real stack (sandbox providers, the real SDKs,
the outbox, the inbox over HTTP): enrolment with a code, consent, messages both ways, a message
that trips the safety check, a check-in, a caseworker logging in and replying. Every log record
of every logger at every level (DEBUG included) is captured as it is emitted, before any
redaction, together with the process's stderr and the redacted JSON log; each is searched for
every secret of the day.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.ops.logs import handler_for
from bot.providers import (
    DEMO_MESSENGER_SECRET,
    DEMO_MESSENGER_TOKEN,
    DEMO_MESSENGER_VERIFY,
    DEMO_TELEGRAM_SECRET,
    DEMO_TELEGRAM_TOKEN,
    DEMO_TWILIO_TOKEN,
)
from tests.flows.conftest import CHANNELS, Phone, Stack, flow_settings, stop_stack
from tests.flows.test_bot import ITEMS, midday, read_until, send_checkin
from tests.inbox.conftest import PASSWORD, csrf_from
from tests.ops.stack import serve, write_key_file

pytestmark = pytest.mark.slow


class RawRecords(logging.Handler):
    """Keeps each record's full text as emitted (later filters rewrite records in place)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            text = f"{record.msg!r} {record.args!r}"
        extras = {k: v for k, v in record.__dict__.items() if k not in STANDARD}
        parts = [record.name, text, repr(extras), record.stack_info or ""]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        self.texts.append("\n".join(parts))


STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


@pytest.fixture
def every_log() -> Iterator[tuple[RawRecords, io.StringIO]]:
    root = logging.getLogger()
    raw, redacted_out = RawRecords(), io.StringIO()
    redacted = handler_for("json", stream=redacted_out)
    redacted.setLevel(logging.DEBUG)
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(raw)  # first: sees each record before the redacting filter rewrites it
    root.addHandler(redacted)
    try:
        yield raw, redacted_out
    finally:
        root.removeHandler(redacted)
        root.removeHandler(raw)
        root.setLevel(level)


def key_forms(key: bytes) -> set[str]:
    urlsafe = base64.urlsafe_b64encode(key).decode()
    return {urlsafe, urlsafe.rstrip("="), base64.b64encode(key).decode(), key.hex()}


async def enrol(stack: Stack, case_id: str, phone: Phone, channel: str) -> str:
    """Stack.enrol, keeping the code: code, notice, JA, thanks and rights notes."""
    invitation = await stack.invite(case_id, channel)
    code = f"/start {invitation.code}" if channel == "telegram" else invitation.code
    assert await phone.write(code) == 200
    assert "116 111" in (await phone.read_one()).text
    assert await phone.write("ja") == 200
    await read_until(phone, "Tak", limit=2)
    return invitation.code


async def test_a_day_on_every_channel_leaves_no_secret_in_any_log(
    tmp_path: Path,
    db_url: str,
    every_log: tuple[RawRecords, io.StringIO],
    capfd: pytest.CaptureFixture[str],
) -> None:
    settings = flow_settings(tmp_path, db_url)
    keyring = write_key_file(settings)
    stack = await serve(settings)
    secrets: set[str] = {PASSWORD, DEMO_TWILIO_TOKEN, DEMO_TELEGRAM_SECRET, DEMO_MESSENGER_SECRET}
    secrets |= {DEMO_TELEGRAM_TOKEN.split(":")[1], DEMO_MESSENGER_TOKEN, DEMO_MESSENGER_VERIFY}
    secrets |= {keyring.to_json(), *key_forms(keyring.index_key)}
    for key in keyring.master_keys.values():
        secrets |= key_forms(key)
    try:
        for n, channel in enumerate(CHANNELS):
            case_id = await stack.case(ref=f"SAG-{n}")
            phone = stack.phone(channel)
            secrets |= {phone.address, phone.address.lstrip("+")}
            secrets.add(await enrol(stack, case_id, phone, channel))
            words = f"min lillebror hedder Ulvetand{n} og bor hos mormor"
            secrets.add(words)
            assert await phone.write(words) == 200
            danger = f"stop han slår mig igen i aften ved kanalen{n}"
            secrets.add(danger)
            assert await phone.write(danger) == 200
            assert "112" in (await read_until(phone, "112", limit=3))[-1].text
            if channel == "sms":
                await send_checkin(stack, case_id, now=midday())
                await read_until(phone, ITEMS[0])
                for answer, following in zip(["7", "8", "6"], ITEMS[1:], strict=True):
                    assert await phone.write(answer) == 200
                    await read_until(phone, following)
                assert await phone.write("5") == 200
                closing = "jeg vil gerne tale om Sommerhuset ved Fjorden"
                secrets.add(closing)
                await read_until(phone, "Er der noget")
                assert await phone.write(closing) == 200
                await read_until(phone, "Tak for dine svar")

            # The caseworker logs in (password and second factor), reads and replies.
            caseworker = await stack.inbox.logged_in("sanne")
            page = await caseworker.get(f"/inbox/cases/{case_id}")
            html = await page.text()
            assert page.status == 200 and f"Ulvetand{n}" in html
            reply = f"Tak fordi du skriver, vi taler om Ulvetand{n} på torsdag"
            secrets |= {reply, csrf_from(html)}
            posted = await caseworker.post(
                f"/inbox/cases/{case_id}/reply",
                data={"text": reply, "csrf_token": csrf_from(html)},
                allow_redirects=False,
            )
            assert posted.status in (200, 303)
            assert (await read_until(phone, "Ulvetand", limit=3))[-1].text == reply
            secrets |= {cookie.value for cookie in caseworker.cookie_jar if len(cookie.value) > 8}
        secrets.add(await stack.inbox.totp_secret("sanne"))

        # The web chat: the link's token is the child's key to the conversation.
        new = await stack.inbox.case("sanne", ref="SAG-web", child="Mika")
        secrets.add(new.webchat_token)
        async with stack.inbox.client() as child:
            assert (await child.get(f"/c/{new.webchat_token}")).status == 200
            words = "hemmeligheden er at jeg gemmer mig i Skovhytten"
            secrets.add(words)
            sent = await child.post(
                f"/c/{new.webchat_token}/messages",
                json={"client_id": "webchat-client-0001", "text": words},
            )
            assert sent.status == 200
        await stack.idle()
    finally:
        await stop_stack(stack)

    raw, redacted = every_log
    assert len(raw.texts) > 50  # the day was logged at all (DEBUG included)
    captured = capfd.readouterr()
    sources = {
        "log record": raw.texts,
        "redacted JSON log": redacted.getvalue().splitlines(),
        "stderr": captured.err.splitlines(),
        "stdout": captured.out.splitlines(),
    }
    leaks = [
        f"{where}: {secret[:12]}… in {line[:160]!r}"
        for where, lines in sources.items()
        for line in lines
        for secret in secrets
        if secret in line
    ]
    assert leaks == [], "\n".join(leaks[:20])
