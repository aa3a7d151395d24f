"""The SMS channel against the Twilio sandbox, through the real twilio SDK and real sockets."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port
from hypothesis import example, given
from hypothesis import strategies as st
from twilio.http.async_http_client import AsyncTwilioHttpClient  # type: ignore[import-untyped]
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from channels.base import ChannelName, DeliveryState, Outbound
from channels.errors import BadRequest, PermanentFailure, RateLimited, TemporaryFailure
from channels.sms import (
    EMPTY_TWIML,
    OPTED_OUT_CODE,
    SmsChannel,
    close_twilio_client,
    compute_signature,
    inbound_from_form,
    make_twilio_client,
    status_updates_from_form,
)
from tests.channels.sms_support import ACCOUNT_SID, AUTH_TOKEN, CHILD, NUMBER, Harness, sms_harness

S = DeliveryState
SID = "SM" + "0123456789abcdef" * 2
WHATSAPP_CHILD = f"whatsapp:{CHILD}"


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with sms_harness() as harness:
        yield harness


def outbound(address: str = CHILD, text: str = "Hej, hvordan går det?") -> Outbound:
    return Outbound(channel=ChannelName("sms"), address=address, message_id="m-1", text=text)


def child_form(**fields: str) -> dict[str, str]:
    form = {"MessageSid": SID, "AccountSid": ACCOUNT_SID, "From": CHILD, "To": NUMBER}
    form |= {"Body": "hej", "NumMedia": "0", "ApiVersion": "2010-04-01"}
    form |= fields
    return {k: v for k, v in form.items() if v != "<drop>"}


# -- inbound ----------------------------------------------------------------------------------


async def test_inbound_is_routed_once_and_answered_with_empty_twiml(h: Harness) -> None:
    assert await h.sandbox.deliver_inbound(CHILD, "Hej Kim") == 200
    [[inbound]] = h.routed
    assert (inbound.channel, inbound.address, inbound.text) == ("sms", CHILD, "Hej Kim")
    assert h.sandbox.last_inbound is not None
    assert inbound.provider_message_id == dict(h.sandbox.last_inbound)["MessageSid"]
    assert inbound.raw["To"] == NUMBER
    answer = h.sandbox.answers[-1]
    assert (answer.content_type, answer.text) == ("text/xml", EMPTY_TWIML)


async def test_a_redelivered_webhook_keeps_its_message_id(h: Harness) -> None:
    await h.sandbox.deliver_inbound(CHILD, "hej")
    assert h.sandbox.last_inbound is not None
    assert await h.sandbox.deliver_form(h.sandbox.last_inbound) == 200
    # The adapter routes both; the router de-duplicates on the provider message id.
    assert len(h.routed) == 2
    first, second = (batch[0] for batch in h.routed)
    assert first.provider_message_id == second.provider_message_id


async def test_sender_in_national_form_is_normalised(h: Harness) -> None:
    # Twilio sends E.164, but the adapter must not file "07700 900123" under another identity.
    assert await h.sandbox.deliver_form(child_form(From="0044 7700 900123")) == 200
    assert h.routed[0][0].address == CHILD


@pytest.mark.parametrize(
    "how",
    ["wrong", "missing", "other url", "tampered body", "other token"],
)
async def test_unsigned_or_forged_inbound_is_refused(h: Harness, how: str) -> None:
    form = child_form()
    if how == "wrong":
        status = await h.sandbox.deliver_form(form, signature="bm90IGEgc2lnbmF0dXJl")
    elif how == "missing":
        status = await h.sandbox.deliver_form(form, signature="")
    elif how == "other url":
        status = await h.sandbox.deliver_form(form, url=h.stemme_url + "/webhooks/other")
    elif how == "tampered body":
        signature = h.sandbox.sign(h.inbound_url, form)
        status = await h.sandbox.deliver_form(child_form(Body="hej!"), signature=signature)
    else:
        signature = compute_signature("another-token", h.inbound_url, form.items())
        status = await h.sandbox.deliver_form(form, signature=signature)
    assert status == 403
    assert h.routed == []
    assert h.channel.counters["signature_rejected"] == 1


@pytest.mark.parametrize(
    "body",
    [
        urlencode(child_form(MessageSid="<drop>")).encode(),
        urlencode(child_form(MessageSid="SM123")).encode(),
        urlencode(child_form(From="<drop>")).encode(),
        urlencode(child_form(From="+45 12")).encode(),
        urlencode([*child_form().items(), ("From", "+447700900124")]).encode(),
        f"MessageSid={SID}&From=%2B447700900123&Body=%FF".encode(),  # not UTF-8
        f"MessageSid={SID}&From=%2B447700900123&Body=%C3".encode(),  # cut inside "æ"
        f"MessageSid={SID}&From=%2B4477009".encode(),  # truncated
    ],
    ids=["no-sid", "bad-sid", "no-from", "bad-from", "two-from", "latin1", "cut-char", "cut"],
)
async def test_malformed_signed_inbound_is_400(
    h: Harness, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert await h.sandbox.deliver_form(body) == 400
    assert h.routed == []
    assert "7700" not in caplog.text  # the number is never logged


async def test_oversize_body_is_413_before_it_is_read(h: Harness) -> None:
    assert await h.sandbox.deliver_form(child_form(Body="x" * 70_000)) == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the reader must stop
        for _ in range(100):
            yield b"Body=" + b"x" * 4096 + b"&"

    async with aiohttp.ClientSession() as session:
        headers = {"X-Twilio-Signature": "x", "Content-Type": "application/x-www-form-urlencoded"}
        async with session.post(h.inbound_url, data=chunks(), headers=headers) as response:
            assert response.status == 413
    assert h.routed == []


@pytest.mark.parametrize(
    ("configured", "signed_for"),
    [
        ("https://stemme.example.dk", "https://stemme.example.dk"),
        ("https://stemme.example.dk", "https://stemme.example.dk:443"),
        ("https://stemme.example.dk:443", "https://stemme.example.dk"),
        ("https://stemme.example.dk:443", "https://stemme.example.dk:443"),
        ("https://stemme.example.dk:8443", "https://stemme.example.dk:8443"),
    ],
)
async def test_behind_a_tls_proxy_the_configured_url_is_what_counts(
    configured: str, signed_for: str
) -> None:
    async with sms_harness(public_base_url=configured) as h:
        path = h.channel.inbound_path
        assert h.stemme_url.startswith("http://127.0.0.1:")  # arrives as plain http
        assert await h.sandbox.deliver_form(child_form(), url=signed_for + path) == 200
        assert len(h.routed) == 1
        signed_for_local = await h.sandbox.deliver_form(child_form(), url=h.stemme_url + path)
        other_host = await h.sandbox.deliver_form(child_form(), url="https://x.example.dk" + path)
        assert (signed_for_local, other_host) == (403, 403)
        assert len(h.routed) == 1


# -- outbound ---------------------------------------------------------------------------------


async def test_send_through_the_sdk_and_status_callbacks(h: Harness) -> None:
    receipt = await h.channel.send(outbound())
    [sent] = h.sandbox.sent
    assert (sent.to, sent.text) == (CHILD, "Hej, hvordan går det?")
    assert receipt.provider_message_id == sent.provider_id
    assert receipt.state == S.QUEUED
    assert h.sandbox.created[-1]["From"] == NUMBER
    assert h.sandbox.created[-1]["StatusCallback"] == h.public_url + "/webhooks/twilio/status"
    await h.sandbox.drain()
    assert [(u.provider_message_id, u.state) for u in h.updates()] == [
        (sent.provider_id, S.SENT),
        (sent.provider_id, S.DELIVERED),
    ]
    assert all(answer.status == 200 for answer in h.sandbox.answers)


async def test_status_callbacks_out_of_order_arrive_as_sent(h: Harness) -> None:
    h.sandbox.status_script(["delivered", "queued", "sent", "sending"])
    await h.channel.send(outbound())
    await h.sandbox.drain()
    # Monotonic state is the router's job; the adapter reports what Twilio said.
    assert [u.state for u in h.updates()] == [S.DELIVERED, S.QUEUED, S.SENT, S.QUEUED]


async def test_failed_delivery_carries_a_danish_reason(h: Harness) -> None:
    h.sandbox.status_script(["sent", "undelivered"], error_code="30003")
    await h.channel.send(outbound())
    await h.sandbox.drain()
    last = h.updates()[-1]
    assert (last.state, last.code) == (S.UNDELIVERED, "30003")
    assert last.reason is not None and "kunne ikke nås" in last.reason


async def test_unknown_status_is_ignored_and_forged_status_refused(h: Harness) -> None:
    h.sandbox.status_script(["receiving"])
    await h.channel.send(outbound())
    await h.sandbox.drain()
    assert h.statuses == [[]]
    form = {"MessageSid": SID, "MessageStatus": "delivered"}
    async with aiohttp.ClientSession() as session:
        headers = {"X-Twilio-Signature": h.sandbox.sign(h.inbound_url, form)}  # wrong path
        async with session.post(
            h.public_url + h.channel.status_path, data=form, headers=headers
        ) as response:
            assert response.status == 403
    assert h.statuses == [[]]


async def test_opted_out_child_is_a_permanent_failure_until_start(h: Harness) -> None:
    await h.sandbox.deliver_inbound(CHILD, "STOP")
    assert h.routed[-1][0].raw["OptOutType"] == "STOP"
    with pytest.raises(PermanentFailure) as caught:
        await h.channel.send(outbound())
    assert caught.value.code == OPTED_OUT_CODE == "21610"
    assert caught.value.reason == (
        "Barnet har stoppet SMS fra dette nummer. Der kan først sendes igen, når barnet skriver "
        "START."
    )
    await h.sandbox.deliver_inbound(CHILD, "start")
    assert h.routed[-1][0].raw["OptOutType"] == "START"
    assert (await h.channel.send(outbound())).state == S.QUEUED


async def test_rate_limit_carries_retry_after(h: Harness) -> None:
    h.sandbox.rate_limit_next(7)
    with pytest.raises(RateLimited) as caught:
        await h.channel.send(outbound())
    assert caught.value.retry_after == 7
    assert h.sandbox.sent == []


async def test_invalid_number_is_permanent_and_nothing_sensitive_is_logged(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    h.sandbox.fail_next(400, 21211, f"The 'To' number {CHILD} is not a valid phone number.")
    with pytest.raises(PermanentFailure) as caught:
        await h.channel.send(outbound(text="hemmelig tekst"))
    assert (caught.value.code, caught.value.reason) == ("21211", "Telefonnummeret er ugyldigt.")
    assert caught.value.__suppress_context__  # Twilio's text (with the number) stays out
    assert "7700" not in caplog.text and "hemmelig" not in caplog.text


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_temporary(h: Harness, status: int) -> None:
    h.sandbox.fail_next(status, 20500, "Internal Server Error")
    with pytest.raises(TemporaryFailure) as caught:
        await h.channel.send(outbound())
    assert not isinstance(caught.value, RateLimited)


async def test_the_http_client_sends_what_the_sdks_own_client_sends() -> None:
    """Stemme's carrier for the SDK's requests puts the same bytes on the wire as the SDK's."""
    seen: list[tuple[bytes, str | None, str | None]] = []

    async def capture(request: web.Request) -> web.Response:
        headers = request.headers
        seen.append((await request.read(), headers.get("Authorization"), headers.get("Accept")))
        return web.json_response({"sid": SID})

    app = web.Application()
    app.router.add_post("/form", capture)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("/form"))
        form = {"Body": "Hej æøå & 1+1=2", "To": CHILD, "MediaUrl": ["https://a.example/1", "b"]}
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        credentials = (ACCOUNT_SID, "tøken")  # not ASCII: encoded as aiohttp encodes it
        ours = make_twilio_client(ACCOUNT_SID, AUTH_TOKEN).http_client
        theirs = AsyncTwilioHttpClient()
        try:
            answer = await ours.request("POST", url, data=form, headers=headers, auth=credentials)
            with warnings.catch_warnings():  # the SDK's client uses aiohttp's deprecated auth
                warnings.simplefilter("ignore", DeprecationWarning)
                await theirs.request("POST", url, data=form, headers=headers, auth=credentials)
        finally:
            await ours.close()
            await theirs.close()
    assert (answer.status_code, json.loads(answer.text)) == (200, {"sid": SID})
    assert len(seen) == 2 and seen[0] == seen[1]
    body, authorization, _ = seen[0]
    assert body.count(b"MediaUrl=") == 2 and b"Body=Hej+%C3%A6%C3%B8%C3%A5+%26+1%2B1%3D2" in body
    assert authorization is not None and authorization.startswith("Basic ")


async def test_a_hanging_api_is_a_temporary_failure() -> None:
    async with sms_harness(send_timeout=0.1) as h:
        h.sandbox.stall_next(0.5)
        with pytest.raises(TemporaryFailure):
            await h.channel.send(outbound())


async def test_closed_port_is_a_temporary_failure() -> None:
    client = make_twilio_client(
        ACCOUNT_SID, AUTH_TOKEN, api_base_url=f"http://127.0.0.1:{unused_port()}"
    )
    channel = SmsChannel(
        client=client, auth_token=AUTH_TOKEN, from_number=NUMBER,
        public_base_url="https://stemme.example.dk",
    )  # fmt: skip
    try:
        with pytest.raises(TemporaryFailure) as caught:
            await channel.send(outbound())
        assert caught.value.reason == "Twilio kunne ikke nås. Der prøves igen."
    finally:
        await close_twilio_client(client)


async def test_wrong_credentials_are_refused_by_the_sandbox(h: Harness) -> None:
    client = make_twilio_client(ACCOUNT_SID, "wrong-token", api_base_url=h.sandbox.url)
    channel = SmsChannel(
        client=client, auth_token=AUTH_TOKEN, from_number=NUMBER, public_base_url=h.public_url
    )
    try:
        with pytest.raises(TemporaryFailure) as caught:
            await channel.send(outbound())
        assert caught.value.code == "20003"
        assert h.sandbox.sent == []
    finally:
        await close_twilio_client(client)


async def test_whatsapp_round_trip(h: Harness) -> None:
    assert await h.sandbox.deliver_inbound("whatsapp:+44 7700 900123", "hej") == 200
    inbound = h.routed[-1][0]
    assert inbound.address == WHATSAPP_CHILD
    assert inbound.raw["To"] == f"whatsapp:{NUMBER}"
    h.sandbox.status_script(["sent", "delivered", "read"])
    receipt = await h.channel.send(outbound(address=inbound.address))
    assert h.sandbox.sent[-1].to == WHATSAPP_CHILD
    assert h.sandbox.created[-1]["From"] == f"whatsapp:{NUMBER}"
    await h.sandbox.drain()
    assert [u.state for u in h.updates()] == [S.SENT, S.DELIVERED, S.READ]
    assert {u.provider_message_id for u in h.updates()} == {receipt.provider_message_id}


async def test_whatsapp_outside_the_24_hour_window_is_explained(h: Harness) -> None:
    h.sandbox.status_script(["failed"], error_code="63016")
    await h.channel.send(outbound(address=WHATSAPP_CHILD))
    await h.sandbox.drain()
    [update] = h.updates()
    assert (update.state, update.code) == (S.FAILED, "63016")
    assert update.reason is not None and "24 timer" in update.reason


# -- parsers and signatures (properties) ------------------------------------------------------

FIELD_NAMES = st.sampled_from(["MessageSid", "From", "To", "Body", "MessageStatus", "ErrorCode"])
FIELD_VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from([SID, CHILD, WHATSAPP_CHILD, "delivered", "failed", "30003", "", "\udcff"]),
)
FORMS = st.lists(st.tuples(st.one_of(FIELD_NAMES, st.text(max_size=8)), FIELD_VALUES), max_size=8)


@given(FORMS)
@example([("MessageSid", SID), ("From", CHILD)])
def test_inbound_parser_raises_only_bad_request(form: list[tuple[str, str]]) -> None:
    try:
        inbound = inbound_from_form(form)
    except BadRequest:
        return
    assert inbound.provider_message_id == SID
    assert inbound.address in (CHILD, WHATSAPP_CHILD)


@given(FORMS)
@example([("MessageSid", SID), ("MessageStatus", "failed"), ("ErrorCode", "30003")])
def test_status_parser_raises_only_bad_request(form: list[tuple[str, str]]) -> None:
    try:
        updates = status_updates_from_form(form)
    except BadRequest:
        return
    for update in updates:
        assert update.provider_message_id == SID
        failed = update.state in (S.FAILED, S.UNDELIVERED)
        assert (update.reason is not None) == failed


@given(
    st.text(min_size=1, max_size=20),
    st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=6),
)
def test_signature_matches_the_sdk_validator(token: str, form: dict[str, str]) -> None:
    url = "https://stemme.example.dk/webhooks/twilio/sms?x=1"
    ours = compute_signature(token, url, form.items())
    assert ours == RequestValidator(token).compute_signature(url, form)
    assert RequestValidator(token).validate(url, form, ours)


async def test_phone_control_api_drives_the_sandbox(h: Harness) -> None:
    """What `stemme phone` uses: type a message as the child, read what Stemme sent back."""
    async with aiohttp.ClientSession() as session:
        async with session.post(
            h.sandbox.url + "/_sandbox/inbound", json={"from": CHILD, "text": "hej"}
        ) as response:
            assert await response.json() == {"status": 200}
        assert h.routed[-1][0].text == "hej"
        receipt = await h.channel.send(outbound(text="Tak for din besked"))
        query = {"to": CHILD, "after": "0", "wait": "1"}
        async with session.get(h.sandbox.url + "/_sandbox/messages", params=query) as response:
            [message] = (await response.json())["messages"]
    assert (message["text"], message["provider_id"]) == (
        "Tak for din besked",
        receipt.provider_message_id,
    )
