"""The Telegram channel against the Bot API sandbox, through the real python-telegram-bot Bot.

Stemme's side is a small aiohttp app on 127.0.0.1 with the channel's webhook route and a
recording router; the sandbox plays Telegram on another port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st
from telegram import Bot
from telegram.error import InvalidToken

from channels.base import Button, ChannelName, Inbound, Outbound, StatusUpdate
from channels.errors import BadRequest, PermanentFailure, RateLimited, TemporaryFailure
from channels.ratelimit import RateLimiter
from channels.sandbox.telegram import TelegramSandbox
from channels.telegram import (
    BLOCKED_REASON,
    SECRET_HEADER,
    TelegramChannel,
    inline_keyboard,
    make_bot,
    parse_update,
)
from tests.channels.test_ratelimit import FakeClock

TOKEN = "110201:SANDBOX-token_for-tests"
SECRET = "webhook-secret_0123456789"
CHILD = "5550101"  # chat ids are Telegram's numbers, not phone numbers
OTHER_CHILD = "5550202"
TELEGRAM = ChannelName("telegram")
SCALE = tuple(Button(str(n), f"scale:{n}") for n in range(11))


class Router:
    """Records what the channel routes; can be told to fail or to hold a routing call."""

    def __init__(self) -> None:
        self.routed: list[Inbound] = []
        self.attempts = 0
        self.fail_next = 0
        self.entered = asyncio.Event()
        self.gate: asyncio.Event | None = None

    async def route(self, inbounds: Sequence[Inbound]) -> None:
        self.attempts += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("database unavailable")
        self.routed.extend(inbounds)

    async def status_sink(self, updates: Sequence[StatusUpdate]) -> None:
        raise AssertionError("Telegram has no status callbacks")


@pytest.fixture
async def sandbox() -> AsyncIterator[TelegramSandbox]:
    fake = TelegramSandbox(TOKEN, "", SECRET)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def bot(sandbox: TelegramSandbox) -> AsyncIterator[Bot]:
    async with make_bot(TOKEN, base_url=sandbox.url + "/bot") as real_bot:
        yield real_bot


@pytest.fixture
def router() -> Router:
    return Router()


@pytest.fixture
def channel(bot: Bot) -> TelegramChannel:
    return TelegramChannel(bot=bot, secret_token=SECRET, send_max_wait=0.5, poll_retry_delay=0.05)


@pytest.fixture
async def stemme(
    channel: TelegramChannel, router: Router, sandbox: TelegramSandbox
) -> AsyncIterator[TestServer]:
    """Stemme's webhook on 127.0.0.1, registered with the sandbox through setWebhook."""
    app = web.Application()
    channel.setup_routes(app, route=router.route, status_sink=router.status_sink)
    async with TestServer(app, host="127.0.0.1") as server:
        await channel.set_webhook(str(server.make_url(channel.webhook_path)))
        yield server


def outbound(text: str, *, to: str = CHILD, buttons: tuple[Button, ...] = ()) -> Outbound:
    return Outbound(TELEGRAM, to, "msg-1", text, buttons)


def text_update(
    update_id: int, message_id: int, text: str, *, chat: str = CHILD
) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "from": {"id": int(chat), "is_bot": False, "first_name": "Testbarn"},
            "chat": {"id": int(chat), "first_name": "Testbarn", "type": "private"},
            "date": 1_700_000_000,
            "text": text,
        },
    }


def our_logs(caplog: pytest.LogCaptureFixture) -> str:
    # python-telegram-bot and httpx log payloads and URLs at DEBUG/INFO; the app's logging
    # setup quiets them. What Stemme's own code logs must never carry content or chat ids.
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("channels"))


async def until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


# -- webhook in ----------------------------------------------------------------------------------


async def test_webhook_is_set_with_the_secret_and_update_kinds(
    stemme: TestServer, bot: Bot, sandbox: TelegramSandbox
) -> None:
    info = await bot.get_webhook_info()
    assert info.url == str(stemme.make_url("/webhooks/telegram"))
    assert sandbox.webhook_secret == SECRET
    assert sandbox.allowed_updates == ["message", "callback_query"]


async def test_text_message_is_routed(
    stemme: TestServer, sandbox: TelegramSandbox, router: Router
) -> None:
    assert await sandbox.deliver_inbound(CHILD, "hej") == 200
    [inbound] = router.routed
    assert (inbound.channel, inbound.address, inbound.text) == (TELEGRAM, CHILD, "hej")
    assert inbound.provider_message_id == f"m:{CHILD}:1"
    assert inbound.button_payload is None
    assert inbound.raw["kind"] == "text"


async def test_start_code_stays_text_for_enrolment(
    stemme: TestServer, sandbox: TelegramSandbox, router: Router
) -> None:
    assert await sandbox.deliver_inbound(CHILD, "/start K7QP-22XM") == 200
    assert [i.text for i in router.routed] == ["/start K7QP-22XM"]


async def test_button_press_is_routed_with_its_title_and_answered_in_the_response(
    stemme: TestServer, sandbox: TelegramSandbox, router: Router, channel: TelegramChannel
) -> None:
    await sandbox.deliver_inbound(CHILD, "/start K7QP-22XM")
    receipt = await channel.send(outbound("Hvordan har du det? 0-10", buttons=SCALE))
    assert receipt.provider_message_id == f"m:{CHILD}:2"  # one id sequence per chat
    [phone] = sandbox.sent
    assert phone.buttons == [{"title": str(n), "payload": f"scale:{n}"} for n in range(11)]

    assert await sandbox.deliver_inbound(CHILD, "", button="scale:7") == 200
    press = router.routed[-1]
    assert (press.text, press.button_payload, press.address) == ("7", "scale:7", CHILD)
    assert press.provider_message_id.startswith("cb:")
    assert sandbox.answered_callbacks == [press.provider_message_id.removeprefix("cb:")]


async def test_press_on_an_unknown_keyboard_falls_back_to_the_payload(
    stemme: TestServer, sandbox: TelegramSandbox, router: Router
) -> None:
    assert await sandbox.deliver_inbound(CHILD, "", button="yes") == 200
    assert [(i.text, i.button_payload) for i in router.routed] == [("yes", "yes")]


@pytest.mark.parametrize("secret", ["wrong-secret", None, "", SECRET + "x", SECRET[:-1]])
async def test_wrong_or_missing_secret_is_403_and_nothing_is_routed(
    stemme: TestServer,
    sandbox: TelegramSandbox,
    router: Router,
    channel: TelegramChannel,
    secret: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    update = text_update(1, 1, "en hemmelighed")
    assert await sandbox.deliver_update(update, secret=secret) == 403
    assert router.attempts == 0
    assert channel.counters["signature_rejected"] == 1
    assert "hemmelighed" not in our_logs(caplog) and CHILD not in our_logs(caplog)


@pytest.mark.parametrize(
    "body",
    [
        b'{"update_id": 5, "message": {"message_id": 1, "chat": {"id": 5550101, "type": "pri',
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[]",
        b'{"message": {"message_id": 1, "chat": {"id": 1, "type": "private"}, "text": "x"}}',
        b'{"update_id": "5", "message": {}}',
        b'{"update_id": 5, "message": {"message_id": 1, "text": "x"}}',
        b"[" * 100_000,
    ],
)
async def test_malformed_or_truncated_json_is_400(
    stemme: TestServer, sandbox: TelegramSandbox, router: Router, body: bytes
) -> None:
    assert await sandbox.deliver_update(body) == 400
    assert router.attempts == 0


async def test_oversize_body_is_413_before_it_is_read(
    stemme: TestServer, sandbox: TelegramSandbox, router: Router
) -> None:
    big = json.dumps(text_update(1, 1, "x" * 300_000)).encode()
    assert await sandbox.deliver_update(big) == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        for start in range(0, len(big), 16 * 1024):
            yield big[start : start + 16 * 1024]

    url = stemme.make_url("/webhooks/telegram")
    async with (
        ClientSession() as session,
        session.post(url, data=chunks(), headers={SECRET_HEADER: SECRET}) as response,
    ):
        assert response.status == 413
    assert router.attempts == 0


async def test_same_message_twice_has_the_same_provider_id(
    stemme: TestServer, sandbox: TelegramSandbox, router: Router, channel: TelegramChannel
) -> None:
    update = text_update(9001, 12, "hej igen")
    assert await sandbox.deliver_update(update) == 200
    assert await sandbox.deliver_update(update) == 200  # immediate retry: answered from memory
    assert channel.counters["redelivered"] == 1
    # The same message in a new update (the memory does not help): the id still matches, so
    # the router's unique constraint de-duplicates it.
    assert await sandbox.deliver_update(text_update(9002, 12, "hej igen")) == 200
    assert [i.provider_message_id for i in router.routed] == [f"m:{CHILD}:12"] * 2


async def test_a_failed_routing_is_not_remembered(
    stemme: TestServer, sandbox: TelegramSandbox, router: Router
) -> None:
    update = text_update(9001, 12, "hej")
    router.fail_next = 1
    assert await sandbox.deliver_update(update) == 500  # Telegram will retry
    assert await sandbox.deliver_update(update) == 200
    assert [i.provider_message_id for i in router.routed] == [f"m:{CHILD}:12"]


PRIVATE = {"id": 1, "type": "private"}
IGNORED_UPDATES = [
    {"update_id": 1, "edited_message": text_update(1, 1, "rettet")["message"]},
    {"update_id": 2, "channel_post": {"message_id": 1, "chat": {"id": -100, "type": "channel"}}},
    {
        "update_id": 3,
        "message": {"message_id": 1, "chat": {"id": -7, "type": "group"}, "text": "x"},
    },
    {"update_id": 4, "my_chat_member": {"chat": PRIVATE}},
    {"update_id": 5, "message": {"message_id": 2, "chat": PRIVATE, "pinned_message": {"x": 1}}},
    {"update_id": 6, "callback_query": {"id": "77", "chat_instance": "1", "game_short_name": "g"}},
]


@pytest.mark.parametrize("update", IGNORED_UPDATES)
async def test_other_update_kinds_are_acknowledged_and_ignored(
    stemme: TestServer, sandbox: TelegramSandbox, router: Router, update: dict[str, Any]
) -> None:
    assert await sandbox.deliver_update(update) == 200
    assert router.attempts == 0


async def test_photos_and_stickers_carry_their_kind_and_caption(
    stemme: TestServer, sandbox: TelegramSandbox, router: Router
) -> None:
    photo = text_update(1, 1, "")
    del photo["message"]["text"]
    photo["message"] |= {
        "photo": [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]
    }
    photo["message"]["caption"] = "min tegning"
    sticker = text_update(2, 2, "")
    del sticker["message"]["text"]
    sticker["message"]["sticker"] = {"file_id": "s", "file_unique_id": "v"}
    assert await sandbox.deliver_update(photo) == 200
    assert await sandbox.deliver_update(sticker) == 200
    assert [(i.raw["kind"], i.text) for i in router.routed] == [
        ("photo", "min tegning"),
        ("sticker", ""),
    ]


# -- sending -------------------------------------------------------------------------------------


async def test_buttons_are_laid_out_in_balanced_rows() -> None:
    assert [len(row) for row in inline_keyboard(SCALE).inline_keyboard] == [6, 5]
    yes_no = (Button("Ja, gerne", "yes"), Button("Nej tak", "no"))
    assert [len(row) for row in inline_keyboard(yes_no).inline_keyboard] == [2]
    long = (Button("Jeg vil gerne tale med dig", "talk"), Button("Ikke lige nu", "later"))
    assert [len(row) for row in inline_keyboard(long).inline_keyboard] == [1, 1]


async def test_callback_data_over_64_bytes_is_refused_before_sending(
    sandbox: TelegramSandbox, channel: TelegramChannel
) -> None:
    await sandbox.deliver_inbound(CHILD, "hej")
    inline_keyboard((Button("ok", "æ" * 32),))  # 64 bytes: allowed
    for payload in ("æ" * 33, "x" * 65, ""):
        with pytest.raises(ValueError):
            await channel.send(outbound("?", buttons=(Button("ok", payload),)))
    assert sandbox.sent == []


async def test_blocked_child_is_a_permanent_failure(
    sandbox: TelegramSandbox, channel: TelegramChannel
) -> None:
    await sandbox.deliver_inbound(CHILD, "hej")
    sandbox.block(CHILD)
    with pytest.raises(PermanentFailure) as failure:
        await channel.send(outbound("Hej fra Stemme"))
    assert failure.value.code == "blocked"
    assert failure.value.reason == BLOCKED_REASON
    assert sandbox.sent == []


async def test_unknown_chat_is_a_permanent_failure_in_plain_danish(
    channel: TelegramChannel,
) -> None:
    with pytest.raises(PermanentFailure) as failure:
        await channel.send(outbound("Hej", to="5559999"))
    assert failure.value.code == "chat_not_found"
    assert "Telegram" in failure.value.reason and "chat" in failure.value.reason


# python-telegram-bot's own RetryAfter constructor reads its deprecated int-valued attribute.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_telegram_429_is_rate_limited_with_retry_after(
    sandbox: TelegramSandbox, channel: TelegramChannel
) -> None:
    await sandbox.deliver_inbound(CHILD, "hej")
    sandbox.rate_limit_next(3)
    with pytest.raises(RateLimited) as limited:
        await channel.send(outbound("Hej"))
    assert limited.value.retry_after == 3.0
    assert limited.value.code == "rate_limited"


async def test_unreachable_telegram_is_a_temporary_failure(
    sandbox: TelegramSandbox, channel: TelegramChannel
) -> None:
    await sandbox.deliver_inbound(CHILD, "hej")
    await sandbox.stop()
    with pytest.raises(TemporaryFailure) as failure:
        await channel.send(outbound("Hej"))
    assert failure.value.code == "network"
    assert not isinstance(failure.value, RateLimited)


async def test_wrong_bot_token_is_temporary_and_says_so(sandbox: TelegramSandbox) -> None:
    wrong = make_bot("110201:not-the-token", base_url=sandbox.url + "/bot")
    with pytest.raises(InvalidToken):
        await wrong.initialize()  # getMe answers 401; the HTTP clients are up regardless
    try:
        channel = TelegramChannel(bot=wrong, secret_token=SECRET)
        with pytest.raises(TemporaryFailure) as failure:
            await channel.send(outbound("Hej"))
        assert failure.value.code == "invalid_token"
    finally:
        await wrong.shutdown()


async def test_second_message_to_a_chat_within_a_second_is_limited_locally(
    sandbox: TelegramSandbox, channel: TelegramChannel
) -> None:
    for chat in (CHILD, OTHER_CHILD):
        await sandbox.deliver_inbound(chat, "hej")
    await channel.send(outbound("første"))
    with pytest.raises(RateLimited) as limited:
        await channel.send(outbound("anden"))  # 1 s > send_max_wait: refuse, don't block
    assert limited.value.code == "local_rate_limit"
    assert 0 < limited.value.retry_after <= 1.0
    await channel.send(outbound("til en anden", to=OTHER_CHILD))  # not held up
    assert [m.to for m in sandbox.sent] == [CHILD, OTHER_CHILD]


async def test_second_message_waits_its_turn_when_allowed_to(
    sandbox: TelegramSandbox, bot: Bot
) -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    channel = TelegramChannel(bot=bot, secret_token=SECRET, limiter=limiter, send_max_wait=2)
    await sandbox.deliver_inbound(CHILD, "hej")
    await channel.send(outbound("første"))
    await channel.send(outbound("anden"))
    assert clock.slept == [pytest.approx(1.0)]
    assert [m.text for m in sandbox.sent] == ["første", "anden"]


def test_a_secret_telegram_would_refuse_is_refused_at_start(bot: Bot) -> None:
    with pytest.raises(ValueError):
        TelegramChannel(bot=bot, secret_token="has spaces and æøå")


# -- long polling --------------------------------------------------------------------------------


async def test_polling_routes_once_and_confirms_only_after_routing(
    sandbox: TelegramSandbox, channel: TelegramChannel, router: Router
) -> None:
    await channel.set_webhook("http://127.0.0.1:9/unused")  # poll() must remove it
    stop = asyncio.Event()
    router.gate = asyncio.Event()
    poller = asyncio.create_task(channel.poll(router.route, stop=stop, timeout=1))
    try:
        await until(lambda: not sandbox.webhook_url)
        assert await sandbox.deliver_inbound(CHILD, "hej") == 200
        await asyncio.wait_for(router.entered.wait(), 5)
        [update_id] = sandbox.pending_update_ids
        await asyncio.sleep(0.2)
        assert sandbox.pending_update_ids == [update_id]  # not confirmed while routing
        router.gate.set()
        await until(lambda: not sandbox.pending_update_ids)
        assert update_id + 1 in sandbox.get_updates_offsets
        await asyncio.sleep(0.2)
        assert [(i.text, i.provider_message_id) for i in router.routed] == [
            ("hej", f"m:{CHILD}:1")
        ]
        assert router.attempts == 1
    finally:
        stop.set()
    await asyncio.wait_for(poller, 2)  # returns promptly, even in the middle of a long poll


async def test_polling_retries_after_a_routing_failure_and_answers_button_presses(
    sandbox: TelegramSandbox,
    channel: TelegramChannel,
    router: Router,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    stop = asyncio.Event()
    router.fail_next = 1
    poller = asyncio.create_task(channel.poll(router.route, stop=stop, timeout=1))
    try:
        await sandbox.deliver_inbound(CHILD, "hemmelig besked")
        await until(lambda: len(router.routed) == 1)
        assert router.attempts == 2  # failed once, fetched again, routed
        await channel.send(outbound("0-10?", buttons=SCALE))
        await sandbox.deliver_inbound(CHILD, "", button="scale:3")
        await until(lambda: len(sandbox.answered_callbacks) == 1)
        assert router.routed[-1].button_payload == "scale:3"
        assert sandbox.answered_callbacks == [router.routed[-1].provider_message_id[3:]]
    finally:
        stop.set()
    await asyncio.wait_for(poller, 2)
    assert channel.counters["poll_error"] == 1
    assert "polling failed (RuntimeError)" in our_logs(caplog)
    assert "hemmelig" not in our_logs(caplog) and CHILD not in our_logs(caplog)


# -- the sandbox as a Bot API ------------------------------------------------------------------


async def test_sandbox_speaks_the_bot_api_over_get_json_and_form(
    sandbox: TelegramSandbox,
) -> None:
    api = f"{sandbox.url}/bot{TOKEN}"
    async with ClientSession() as session:
        async with session.get(f"{sandbox.url}/bot110201:wrong/getMe") as response:
            assert response.status == 401
            assert await response.json() == {
                "ok": False,
                "error_code": 401,
                "description": "Unauthorized",
            }
        async with session.get(f"{api}/GETME") as response:  # methods are case-insensitive
            assert (await response.json())["result"]["is_bot"] is True
        async with session.post(f"{api}/sendMessage", json={"chat_id": 1, "text": "x"}) as r:
            assert (r.status, (await r.json())["description"]) == (
                400,
                "Bad Request: chat not found",
            )
        # The child's phone (control API) writes first; then both body styles can answer.
        async with session.post(
            f"{sandbox.url}/_sandbox/inbound", json={"from": CHILD, "text": "hej"}
        ) as response:
            assert await response.json() == {"status": 200}  # no webhook: queued
        markup = {"inline_keyboard": [[{"text": "Ja", "callback_data": "yes"}]]}
        body = {"chat_id": int(CHILD), "text": "json", "reply_markup": markup}
        async with session.post(f"{api}/sendMessage", json=body) as response:
            assert (await response.json())["result"]["message_id"] == 2
        form = {"chat_id": CHILD, "text": "form", "reply_markup": json.dumps(markup)}
        async with session.post(f"{api}/sendMessage", data=form) as response:
            assert (await response.json())["result"]["message_id"] == 3
        async with session.get(
            f"{sandbox.url}/_sandbox/messages", params={"to": CHILD}
        ) as response:
            phone = (await response.json())["messages"]
        assert [(m["text"], m["buttons"]) for m in phone] == [
            ("json", [{"title": "Ja", "payload": "yes"}]),
            ("form", [{"title": "Ja", "payload": "yes"}]),
        ]
        async with session.post(f"{api}/getUpdates", data={"offset": "-1"}) as response:
            [update] = (await response.json())["result"]
        assert update["message"]["text"] == "hej"
        async with session.post(f"{api}/setWebhook", data={"url": "http://127.0.0.1:9/x"}) as r:
            assert (await r.json())["result"] is True
        async with session.post(f"{api}/getUpdates") as response:
            assert response.status == 409  # as on Telegram: webhook and polling exclude


# -- the parser ----------------------------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


def updates(ints: st.SearchStrategy[Any], texts: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Update-shaped values; leaves drawn from ``ints``/``texts`` (well-formed or junk)."""
    chat = st.fixed_dictionaries(
        {"id": ints, "type": st.sampled_from(["private", "private", "group"]) | json_value}
    )
    button = st.fixed_dictionaries({"text": texts, "callback_data": st.text(max_size=8)})
    keyboard = st.fixed_dictionaries(
        {"inline_keyboard": st.lists(st.lists(button, max_size=3), max_size=3) | json_value}
    )
    message = st.fixed_dictionaries(
        {"message_id": ints, "chat": chat},
        optional={
            "text": texts,
            "caption": texts,
            "photo": json_value,
            "pinned_message": json_value,
            "reply_markup": keyboard | json_value,
        },
    )
    callback = st.fixed_dictionaries(
        {"id": st.text(min_size=1, max_size=140) | json_value, "message": message, "data": texts}
    )
    return st.one_of(
        st.fixed_dictionaries({"update_id": ints, "message": message}),
        st.fixed_dictionaries({"update_id": ints, "callback_query": callback}),
        st.fixed_dictionaries(
            {"update_id": ints},
            optional={"message": message, "callback_query": callback, "edited_message": message},
        ),
    )


well_formed = updates(st.integers(), st.text())
odd = updates(st.integers() | json_value, st.text() | json_value)


@given(st.one_of(json_value, odd, well_formed))
def test_parser_returns_valid_messages_or_raises_bad_request(data: Any) -> None:
    try:
        inbounds = parse_update(data)
    except BadRequest:
        return
    assert isinstance(inbounds, list) and len(inbounds) <= 1
    for inbound in inbounds:
        assert inbound.channel == TELEGRAM
        assert re.fullmatch(r"-?\d+", inbound.address)
        assert isinstance(inbound.text, str)
        if inbound.raw["kind"] == "callback_query":
            assert isinstance(inbound.button_payload, str)
            assert inbound.provider_message_id.startswith("cb:")
        else:
            assert inbound.button_payload is None
            assert re.fullmatch(rf"m:{inbound.address}:-?\d+", inbound.provider_message_id)
        json.dumps(dict(inbound.raw))  # the raw payload stays plain JSON


@given(
    st.lists(st.tuples(st.text(min_size=1), st.sampled_from("abc")), max_size=6),
    st.sampled_from("abcd"),
)
def test_a_button_press_reads_as_the_pressed_buttons_title(
    keyboard: list[tuple[str, str]], pressed: str
) -> None:
    message = text_update(1, 1, "0-10?")["message"]
    message["reply_markup"] = {
        "inline_keyboard": [[{"text": title, "callback_data": data} for title, data in keyboard]]
    }
    query = {"id": "42", "chat_instance": "1", "message": message, "data": pressed}
    [inbound] = parse_update({"update_id": 1, "callback_query": query})
    titles = [title for title, data in keyboard if data == pressed]
    assert inbound.text == (titles[0] if titles else pressed)
    assert inbound.button_payload == pressed


@given(st.integers(min_value=1, max_value=2**40), st.integers(min_value=1), st.text())
def test_parser_gives_a_redelivered_message_the_same_id(chat_id: int, mid: int, text: str) -> None:
    first = parse_update(text_update(1, mid, text, chat=str(chat_id)))
    again = parse_update(text_update(2, mid, text, chat=str(chat_id)))
    assert [i.provider_message_id for i in first] == [i.provider_message_id for i in again]
    assert [i.text for i in first] == [text]
