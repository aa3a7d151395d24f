"""The Messenger channel against the Graph API sandbox, both on 127.0.0.1.

A small aiohttp app carries the channel's routes with a recording router and status sink; the
channel talks to the sandbox through a real ClientSession, and the sandbox posts signed webhooks
back. All ids, tokens and secrets are made up.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from channels.base import Button, DeliveryState, Inbound, Outbound, StatusUpdate
from channels.errors import (
    BadRequest,
    DeliveryError,
    PermanentFailure,
    RateLimited,
    TemporaryFailure,
)
from channels.messenger import (
    DEFAULT_RETRY_AFTER,
    OUTSIDE_WINDOW,
    MessengerChannel,
    parse_messages,
    parse_statuses,
)
from channels.sandbox.messenger import MessengerSandbox

TOKEN = "EAAfiktivsidetoken0000"
SECRET = "fiktiv-app-hemmelighed"
VERIFY = "fiktiv-verify-token"
PSID = "2400000000000001"
OTHER = "2400000000000002"
PAGE = "990000000000001"
OUTSIDE_TEXT = (
    "Uden for Messengers 24-timers svarvindue: barnet har ikke skrevet det seneste døgn."
)
KINDS = {"text", "quick_reply", "postback", "attachment", "other"}
MAX_BODY = 64 * 1024


@dataclass
class Recorder:
    """The router and status sink: they keep what they are given."""

    batches: list[list[Inbound]] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)

    @property
    def inbounds(self) -> list[Inbound]:
        return [inbound for batch in self.batches for inbound in batch]

    async def route(self, inbounds: Sequence[Inbound]) -> None:
        self.batches.append(list(inbounds))

    async def status_sink(self, updates: Sequence[StatusUpdate]) -> None:
        self.statuses.extend(updates)


@dataclass
class Rig:
    sandbox: MessengerSandbox
    channel: MessengerChannel
    recorder: Recorder
    session: aiohttp.ClientSession
    webhook_url: str


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    sandbox = MessengerSandbox(
        page_access_token=TOKEN, app_secret=SECRET, stemme_url="", page_id=PAGE
    )
    await sandbox.start()
    session = aiohttp.ClientSession()
    channel = MessengerChannel(
        session=session,
        page_access_token=TOKEN,
        app_secret=SECRET,
        verify_token=VERIFY,
        graph_base_url=sandbox.url,
        max_body_bytes=MAX_BODY,
    )
    recorder = Recorder()
    app = web.Application()
    channel.setup_routes(app, route=recorder.route, status_sink=recorder.status_sink)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    sandbox.stemme_url = str(server.make_url("")).rstrip("/")
    try:
        yield Rig(sandbox, channel, recorder, session, sandbox.stemme_url + channel.webhook_path)
    finally:
        await sandbox.stop()
        await server.close()
        await session.close()


def outbound(text: str = "Hej, hvordan går det?", *, to: str = PSID, **kw: Any) -> Outbound:
    return Outbound(channel=MessengerChannel.name, address=to, message_id="msg-1", text=text, **kw)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- handshake --------------------------------------------------------------------------------


async def test_handshake_echoes_the_challenge(rig: Rig) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    async with rig.session.get(rig.webhook_url, params=query) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        assert await response.text() == "1158201444"


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "<script>"},
        {},
    ],
)
async def test_handshake_refuses(rig: Rig, query: dict[str, str]) -> None:
    async with rig.session.get(rig.webhook_url, params=query) as response:
        assert response.status == 403
        assert "1" not in await response.text()
    assert rig.channel.counters["handshake_rejected"] == 1


# -- inbound ----------------------------------------------------------------------------------


async def test_text_message_is_routed(rig: Rig) -> None:
    before = now() - dt.timedelta(seconds=5)
    assert await rig.sandbox.deliver_inbound(PSID, "Hej æøå 👋") == 200
    [inbound] = rig.recorder.inbounds
    assert inbound.channel == "messenger"
    assert inbound.address == PSID
    assert inbound.text == "Hej æøå 👋"
    assert inbound.provider_message_id.startswith("m_")
    assert inbound.button_payload is None
    assert inbound.raw["kind"] == "text"
    assert inbound.raw["page_id"] == PAGE
    assert before <= inbound.received_at <= now() + dt.timedelta(seconds=5)


async def test_quick_reply_carries_its_payload(rig: Rig) -> None:
    assert await rig.sandbox.deliver_inbound(PSID, "Godt", button="scale:8") == 200
    [inbound] = rig.recorder.inbounds
    assert (inbound.text, inbound.button_payload, inbound.raw["kind"]) == (
        "Godt",
        "scale:8",
        "quick_reply",
    )


async def test_postback_without_mid_gets_a_stable_id(rig: Rig) -> None:
    event = rig.sandbox.postback_event(PSID, "Ja tak", "consent:yes")
    assert await rig.sandbox.deliver_batch([[event]]) == 200
    assert await rig.sandbox.deliver_batch([[event]]) == 200  # Meta retrying the same tap
    with_mid = rig.sandbox.postback_event(PSID, "Nej", "consent:no", mid="m_postback1")
    assert await rig.sandbox.deliver_batch([[with_mid]]) == 200
    first, again, third = rig.recorder.inbounds
    assert (first.text, first.button_payload, first.raw["kind"]) == (
        "Ja tak",
        "consent:yes",
        "postback",
    )
    assert first.provider_message_id == again.provider_message_id
    assert PSID not in first.provider_message_id
    assert third.provider_message_id == "m_postback1"


async def test_attachment_only_message_has_empty_text_and_a_kind(rig: Rig) -> None:
    assert await rig.sandbox.deliver_batch([[rig.sandbox.attachment_event(PSID, "audio")]]) == 200
    [inbound] = rig.recorder.inbounds
    assert inbound.text == ""
    assert inbound.raw["kind"] == "attachment"
    assert inbound.raw["attachments"] == ("audio",)


async def test_batch_of_two_entries_is_routed_whole_and_in_order(rig: Rig) -> None:
    sandbox = rig.sandbox
    first = [sandbox.message_event(PSID, f"a{i}") for i in range(3)]
    second = [sandbox.message_event(OTHER, "b0"), sandbox.message_event(PSID, "b1", button="p")]
    second.append(sandbox.postback_event(OTHER, "b2", "q", mid="m_b2"))
    assert await sandbox.deliver_batch([first, second]) == 200
    assert len(rig.recorder.batches) == 1  # one call: the router stores the batch together
    inbounds = rig.recorder.inbounds
    assert [i.text for i in inbounds] == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert [i.address for i in inbounds] == [PSID, PSID, PSID, OTHER, PSID, OTHER]


async def test_echoes_are_ignored(rig: Rig) -> None:
    echo = rig.sandbox.echo_event(PSID, "what the page sent")
    assert await rig.sandbox.deliver_batch([[echo]]) == 200
    assert rig.recorder.inbounds == []
    assert await rig.sandbox.deliver_batch([[echo, rig.sandbox.message_event(PSID, "x")]]) == 200
    assert [i.text for i in rig.recorder.inbounds] == ["x"]


def page_body(text: str = "hemmelig") -> bytes:
    event = {
        "sender": {"id": PSID},
        "recipient": {"id": PAGE},
        "timestamp": 1_700_000_000_000,
        "message": {"mid": "m_fixed", "text": text},
    }
    entry = {"id": PAGE, "time": 1_700_000_000_000, "messaging": [event]}
    return json.dumps({"object": "page", "entry": [entry]}).encode()


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha256=" + "0" * 64,
        "sha1=" + "0" * 40,
        "sha256=" + "g" * 64,
        "sha256=" + "0" * 63,
        "SHA256=" + "0" * 64,
        "sha256 = " + "0" * 64,
        "sha256=" + "é" * 64,
    ],
)
async def test_bad_signature_is_refused_and_nothing_routed(
    rig: Rig, signature: str | None
) -> None:
    assert await rig.sandbox.deliver_body(page_body(), signature=signature) == 403
    assert rig.recorder.inbounds == []
    assert rig.channel.counters["signature_rejected"] == 1


async def test_signature_over_another_body_is_refused(rig: Rig) -> None:
    body = page_body("rigtig")
    assert (
        await rig.sandbox.deliver_body(page_body("falsk"), signature=rig.sandbox.sign(body)) == 403
    )
    flipped = bytearray(body)
    flipped[-5] ^= 0x01
    assert await rig.sandbox.deliver_body(bytes(flipped), signature=rig.sandbox.sign(body)) == 403
    assert rig.recorder.inbounds == []


async def test_signature_hex_case_does_not_matter(rig: Rig) -> None:
    body = page_body()
    signature = "sha256=" + rig.sandbox.sign(body).removeprefix("sha256=").upper()
    assert await rig.sandbox.deliver_body(body, signature=signature) == 200
    assert [i.text for i in rig.recorder.inbounds] == ["hemmelig"]


@pytest.mark.parametrize(
    "body", [b"{not json", b"\xff\xfe", b"[]", b'{"object": "user", "entry": []}', b"[" * 5000]
)
async def test_malformed_body_gets_400(rig: Rig, body: bytes) -> None:
    assert await rig.sandbox.deliver_body(body) == 400
    assert rig.recorder.inbounds == []
    assert rig.channel.counters["bad_request"] == 1


async def test_oversize_body_gets_413(rig: Rig) -> None:
    body = page_body("x" * MAX_BODY)
    assert await rig.sandbox.deliver_body(body) == 413
    assert rig.recorder.inbounds == []
    assert await rig.sandbox.deliver_body(page_body()) == 200  # the limit, not the channel, broke


async def test_oversize_chunked_body_gets_413_before_it_is_all_read(rig: Rig) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(256):  # 4 MiB if it were all read
            sent += 16 * 1024
            yield b" " * (16 * 1024)

    headers = {"X-Hub-Signature-256": "sha256=" + "0" * 64}
    status = None
    try:
        async with rig.session.post(rig.webhook_url, data=chunks(), headers=headers) as response:
            status = response.status
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
        pass  # the server may hang up while the rest is still being written
    assert status in (413, None)
    assert rig.channel.counters["too_large"] == 1
    assert rig.channel.counters["signature_rejected"] == 0  # refused for size, before the HMAC
    assert sent < 4 * 1024 * 1024
    assert rig.recorder.inbounds == []


async def test_same_body_twice_gives_the_same_provider_message_id(rig: Rig) -> None:
    body = page_body()
    assert await rig.sandbox.deliver_body(body) == 200
    assert await rig.sandbox.deliver_body(body) == 200
    first, second = rig.recorder.inbounds
    assert first.provider_message_id == second.provider_message_id == "m_fixed"


# -- outbound ---------------------------------------------------------------------------------


async def test_send_returns_the_message_id_and_delivery_reaches_the_sink(rig: Rig) -> None:
    rig.sandbox.set_last_inbound(PSID, now() - dt.timedelta(hours=1))
    sent_at = now() - dt.timedelta(seconds=1)
    receipt = await rig.channel.send(outbound())
    assert receipt.state == DeliveryState.SENT
    assert receipt.provider_message_id.startswith("m_")
    [phone] = rig.sandbox.sent
    assert (phone.to, phone.text, phone.provider_id) == (
        PSID,
        "Hej, hvordan går det?",
        receipt.provider_message_id,
    )
    await rig.sandbox.idle()
    by_id, watermark = rig.recorder.statuses
    assert (by_id.provider_message_id, by_id.state) == (
        receipt.provider_message_id,
        DeliveryState.DELIVERED,
    )
    assert by_id.up_to is None
    assert (watermark.provider_message_id, watermark.address) == ("", PSID)
    assert watermark.state == DeliveryState.DELIVERED
    assert watermark.up_to is not None and watermark.up_to >= sent_at


async def test_read_watermark_reaches_the_sink(rig: Rig) -> None:
    rig.sandbox.read_receipts = True
    rig.sandbox.set_last_inbound(PSID, now())
    await rig.channel.send(outbound())
    await rig.sandbox.idle()
    [read] = [s for s in rig.recorder.statuses if s.state == DeliveryState.READ]
    assert (read.provider_message_id, read.address) == ("", PSID)
    assert read.up_to is not None and read.up_to.tzinfo is not None


async def test_buttons_become_at_most_13_quick_replies_with_short_titles(rig: Rig) -> None:
    rig.sandbox.set_last_inbound(PSID, now())
    buttons = tuple(Button(f"Svarmulighed nummer {i} af mange", f"pick:{i}") for i in range(15))
    await rig.channel.send(outbound("Vælg én", buttons=buttons))
    [phone] = rig.sandbox.sent
    assert len(phone.buttons) == 13
    assert all(len(b["title"]) <= 20 for b in phone.buttons)
    assert phone.buttons[0] == {"title": "Svarmulighed nummer…", "payload": "pick:0"}
    assert [b["payload"] for b in phone.buttons] == [f"pick:{i}" for i in range(13)]


async def test_button_payload_too_long_is_refused_before_sending(rig: Rig) -> None:
    rig.sandbox.set_last_inbound(PSID, now())
    with pytest.raises(PermanentFailure) as caught:
        await rig.channel.send(outbound(buttons=(Button("Ja", "x" * 1001),)))
    assert caught.value.code == "bad_button"
    assert rig.sandbox.sent == []


async def test_text_too_long_is_refused_before_sending(rig: Rig) -> None:
    rig.sandbox.set_last_inbound(PSID, now())
    with pytest.raises(PermanentFailure) as caught:
        await rig.channel.send(outbound("å" * 2001))
    assert caught.value.code == "too_long"
    assert rig.sandbox.sent == []
    await rig.channel.send(outbound("å" * 2000))
    assert len(rig.sandbox.sent) == 1


async def test_outside_the_24_hour_window_fails_permanently(rig: Rig) -> None:
    rig.sandbox.set_last_inbound(PSID, now() - dt.timedelta(hours=25))
    with pytest.raises(PermanentFailure) as caught:
        await rig.channel.send(outbound())
    assert caught.value.code == OUTSIDE_WINDOW
    assert caught.value.reason == OUTSIDE_TEXT
    assert rig.sandbox.sent == []
    # The child writes again: the window opens.
    assert await rig.sandbox.deliver_inbound(PSID, "hej igen") == 200
    assert (await rig.channel.send(outbound())).state == DeliveryState.SENT


async def test_inside_the_window_sends(rig: Rig) -> None:
    rig.sandbox.set_last_inbound(PSID, now() - dt.timedelta(hours=23, minutes=59))
    assert (await rig.channel.send(outbound())).state == DeliveryState.SENT


@pytest.mark.parametrize("code", [4, 613, 80006])
async def test_rate_limit_is_rate_limited(rig: Rig, code: int) -> None:
    rig.sandbox.set_last_inbound(PSID, now())
    rig.sandbox.rate_limit_next(code=code)
    with pytest.raises(RateLimited) as caught:
        await rig.channel.send(outbound())
    assert caught.value.retry_after == DEFAULT_RETRY_AFTER
    assert (await rig.channel.send(outbound())).state == DeliveryState.SENT  # only the next one


async def test_rate_limit_wait_comes_from_metas_usage_header(rig: Rig) -> None:
    rig.sandbox.set_last_inbound(PSID, now())
    rig.sandbox.rate_limit_next(code=80006, regain_minutes=3)
    with pytest.raises(RateLimited) as caught:
        await rig.channel.send(outbound())
    assert caught.value.retry_after == 180.0


async def test_http_429_is_rate_limited_with_retry_after(rig: Rig) -> None:
    rig.sandbox.set_last_inbound(PSID, now())
    rig.sandbox.fail_next(http_status=429, message="slow down", headers={"Retry-After": "7"})
    with pytest.raises(RateLimited) as caught:
        await rig.channel.send(outbound())
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ({"code": 551, "subcode": 1545041, "message": "This person isn't available right now."},
         PermanentFailure, "recipient_unavailable"),
        ({"code": 10, "subcode": 2018065, "message": "(#10) Outside of allowed window"},
         PermanentFailure, OUTSIDE_WINDOW),
        ({"code": 190, "message": "Invalid OAuth access token."}, PermanentFailure, "no_access"),
        ({"code": 1200, "message": "Temporary send message failure."}, TemporaryFailure,
         "provider_error"),
        ({"code": 2, "message": "An unexpected error has occurred."}, TemporaryFailure,
         "provider_error"),
        ({"http_status": 503, "message": "Service Unavailable"}, TemporaryFailure,
         "provider_error"),
        ({"code": 368, "message": "Deemed abusive"}, PermanentFailure, "meta_368"),
    ],
)  # fmt: skip
async def test_send_errors_map_to_delivery_errors(
    rig: Rig, fault: dict[str, Any], error: type[DeliveryError], code: str
) -> None:
    rig.sandbox.set_last_inbound(PSID, now())
    rig.sandbox.fail_next(**fault)
    with pytest.raises(error) as caught:
        await rig.channel.send(outbound())
    assert type(caught.value) is error
    assert caught.value.code == code
    assert PSID not in str(caught.value) and TOKEN not in str(caught.value)


async def test_wrong_page_token_fails_permanently(rig: Rig) -> None:
    rig.sandbox.set_last_inbound(PSID, now())
    channel = MessengerChannel(
        session=rig.session,
        page_access_token="EAAwrongtoken",
        app_secret=SECRET,
        verify_token=VERIFY,
        graph_base_url=rig.sandbox.url,
    )
    with pytest.raises(PermanentFailure) as caught:
        await channel.send(outbound())
    assert caught.value.code == "no_access"
    assert rig.sandbox.sent == []


async def test_unknown_recipient_fails_permanently(rig: Rig) -> None:
    with pytest.raises(PermanentFailure) as caught:
        await rig.channel.send(outbound(to="2400000000009999"))
    assert caught.value.code == "unknown_recipient"


async def test_timeout_is_temporary(rig: Rig) -> None:
    rig.sandbox.set_last_inbound(PSID, now())
    rig.sandbox.fail_next(http_status=500, delay=0.5)
    channel = MessengerChannel(
        session=rig.session,
        page_access_token=TOKEN,
        app_secret=SECRET,
        verify_token=VERIFY,
        graph_base_url=rig.sandbox.url,
        request_timeout=0.1,
    )
    with pytest.raises(TemporaryFailure) as caught:
        await channel.send(outbound())
    assert caught.value.code == "network"


async def test_connection_refused_is_temporary_and_does_not_leak_the_token(rig: Rig) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nobody listens
    channel = MessengerChannel(
        session=rig.session,
        page_access_token=TOKEN,
        app_secret=SECRET,
        verify_token=VERIFY,
        graph_base_url=f"http://127.0.0.1:{port}",
    )
    with pytest.raises(TemporaryFailure) as caught:
        await channel.send(outbound())
    assert caught.value.code == "network"
    assert TOKEN not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# -- the parser, directly ---------------------------------------------------------------------


def wrap(*events: dict[str, Any]) -> bytes:
    entry = {"id": PAGE, "time": 1, "messaging": list(events)}
    return json.dumps({"object": "page", "entry": [entry]}).encode()


def test_delivery_without_mids_is_a_watermark_only() -> None:
    body = wrap({"sender": {"id": PSID}, "delivery": {"watermark": 1_700_000_000_000}})
    [update] = parse_statuses(body)
    assert (update.provider_message_id, update.address, update.state) == (
        "",
        PSID,
        DeliveryState.DELIVERED,
    )
    assert update.up_to == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert parse_messages(body) == []


def test_seconds_timestamps_are_read_as_seconds() -> None:
    body = wrap(
        {
            "sender": {"id": PSID},
            "timestamp": "1527459824",
            "postback": {"title": "t", "payload": "p"},
        }
    )
    [inbound] = parse_messages(body)
    assert inbound.received_at == dt.datetime(2018, 5, 27, 22, 23, 44, tzinfo=dt.UTC)


def statuses_are_valid(updates: list[StatusUpdate]) -> None:
    for update in updates:
        assert update.channel == "messenger"
        assert update.state in (DeliveryState.DELIVERED, DeliveryState.READ)
        if update.up_to is None:
            assert update.provider_message_id
        else:
            assert update.provider_message_id == "" and update.address
            assert update.up_to.tzinfo is not None


def inbounds_are_valid(inbounds: list[Inbound]) -> None:
    for inbound in inbounds:
        assert inbound.channel == "messenger"
        assert isinstance(inbound.address, str) and inbound.address
        assert isinstance(inbound.provider_message_id, str) and inbound.provider_message_id
        assert isinstance(inbound.text, str)
        assert inbound.button_payload is None or isinstance(inbound.button_payload, str)
        assert inbound.received_at.tzinfo is not None
        assert inbound.raw["kind"] in KINDS


def only_bad_request_or_valid(body: bytes) -> None:
    with contextlib.suppress(BadRequest):
        inbounds_are_valid(parse_messages(body))
    with contextlib.suppress(BadRequest):
        statuses_are_valid(parse_statuses(body))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=25,
)
junk: st.SearchStrategy[Any] = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=4)
    | st.just([])
    | st.just({})
)


def either(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``strategy``, sometimes junk: rare enough that whole batches still parse."""
    return st.integers(0, 15).flatmap(lambda n: junk if n == 0 else strategy)


ids = st.sampled_from([PSID, PSID, OTHER, "m_1", "m_2", "", "\ud800"])
stamps = st.one_of(
    st.integers(min_value=0, max_value=253_402_300_799_999),
    st.integers(min_value=1_500_000_000_000, max_value=1_900_000_000_000),
    st.integers(min_value=-1, max_value=2**62),
    st.sampled_from(["1700000000000", "1527459824", "17e11", "١٢٣", "9" * 40]),
)
events = st.fixed_dictionaries(
    {"sender": either(st.fixed_dictionaries({"id": either(ids)})), "timestamp": either(stamps)},
    optional={
        "message": either(
            st.fixed_dictionaries(
                {"mid": either(ids)},
                optional={
                    "text": either(st.text(max_size=10)),
                    "is_echo": st.just(True),
                    "quick_reply": either(st.fixed_dictionaries({"payload": either(st.text())})),
                    "attachments": either(
                        st.lists(either(st.fixed_dictionaries({"type": junk})), max_size=2)
                    ),
                },
            )
        ),
        "postback": either(
            st.fixed_dictionaries(
                {"title": either(st.text()), "payload": either(st.text())},
                optional={"mid": either(ids)},
            )
        ),
        "delivery": either(
            st.fixed_dictionaries(
                {},
                optional={
                    "mids": either(st.lists(either(ids), max_size=3)),
                    "watermark": either(stamps),
                },
            )
        ),
        "read": either(st.fixed_dictionaries({}, optional={"watermark": either(stamps)})),
    },
)
pages = st.fixed_dictionaries(
    {
        "object": st.sampled_from(["page"] * 9 + ["instagram"]),
        "entry": either(
            st.lists(
                either(
                    st.fixed_dictionaries(
                        {
                            "id": either(st.just(PAGE)),
                            "messaging": either(st.lists(either(events), min_size=1, max_size=3)),
                        }
                    )
                ),
                min_size=1,
                max_size=3,
            )
        ),
    }
)


@given(json_values)
def test_parser_on_any_json_raises_only_bad_request(value: Any) -> None:
    only_bad_request_or_valid(json.dumps(value).encode())


@given(st.binary(max_size=200))
def test_parser_on_any_bytes_raises_only_bad_request(body: bytes) -> None:
    only_bad_request_or_valid(body)


@given(pages)
def test_parser_on_page_shaped_junk_raises_only_bad_request(page: dict[str, Any]) -> None:
    only_bad_request_or_valid(json.dumps(page).encode())


@given(
    st.lists(
        st.tuples(
            st.sampled_from([PSID, OTHER]),
            st.text(min_size=1),
            st.integers(min_value=100_000_000_000, max_value=253_402_300_799_999),
            st.none() | st.text(min_size=1, max_size=50),
        ),
        max_size=5,
    )
)
def test_parser_reads_back_what_meta_would_send(
    messages: list[tuple[str, str, int, str | None]],
) -> None:
    sent = []
    for n, (psid, text, stamp, button) in enumerate(messages):
        message: dict[str, Any] = {"mid": f"m_{n}", "text": text}
        if button is not None:
            message["quick_reply"] = {"payload": button}
        sent.append(
            {
                "sender": {"id": psid},
                "recipient": {"id": PAGE},
                "timestamp": stamp,
                "message": message,
            }
        )
    inbounds = parse_messages(wrap(*sent))
    assert [(i.address, i.text, i.button_payload) for i in inbounds] == [
        (psid, text, button) for psid, text, _stamp, button in messages
    ]
    assert [i.provider_message_id for i in inbounds] == [f"m_{n}" for n in range(len(messages))]
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert [i.received_at for i in inbounds] == [
        epoch + dt.timedelta(milliseconds=stamp) for _psid, _text, stamp, _button in messages
    ]
    assert parse_statuses(wrap(*sent)) == []


async def test_control_api_posts_like_a_phone(rig: Rig) -> None:
    """The sandbox's phone API (used by ``stemme phone``) goes through the same webhook."""
    async with rig.session.post(
        rig.sandbox.url + "/_sandbox/inbound", json={"from": PSID, "text": "fra telefonen"}
    ) as response:
        assert await response.json() == {"status": 200}
    assert [i.text for i in rig.recorder.inbounds] == ["fra telefonen"]
    # … and, having written, the child can now be answered.
    await rig.channel.send(outbound())
    async with rig.session.get(
        rig.sandbox.url + "/_sandbox/messages", params={"to": PSID, "wait": "1"}
    ) as response:
        [shown] = (await response.json())["messages"]
    assert shown["text"] == "Hej, hvordan går det?"
    await asyncio.wait_for(rig.sandbox.idle(), 5)
