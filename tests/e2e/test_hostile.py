"""A corpus of hostile child messages, sent through the web chat, shown in real Chromium.

Each message goes the real way (the child's WebSocket, the router, encryption, storage); the
inbox's queue and conversation are then rendered in headless Chromium, once server-rendered and
once arriving live through the inbox's own WebSocket. Checked: every message reads back as the
exact text it was, no script ran (a ``window.__xss`` trap, dialogs, CSP reports), no element
was injected, nothing overflows the message list or the page, and right-to-left overrides stay
inside their message. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from .chat import child_socket
from .inbox import InboxClient
from .server import DemoInfo, ServerProcess
from .test_browser import DESKTOP, WAIT_MS, Watch

pytestmark = pytest.mark.slow

LONG_WORD = "W" * 1999  # the web chat's limit is 2,000 characters
CORPUS = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=2">',
    '<svg onload="window.__xss=3"><circle r="40"/></svg>',
    '<a href="javascript:window.__xss=4">klik her</a>',
    "javascript:window.__xss=5",
    '"><script>window.__xss=6</script>',
    "</textarea></p></li></ol><script>window.__xss=7</script>",
    '<iframe srcdoc="<script>parent.__xss=8</script>"></iframe>',
    '<div style="position:fixed;inset:0;width:9999px;background:red">CSS</div>',
    "<style>body{display:none} .msg{width:9999px}</style>",
    "\u202eRLO uden afslutning: gnirts desrever",
    "\u2067RLI uden afslutning \u202b og RLE",
    "ny linje\u2028og afsnit\u2029slut",
    "h\u200be\u200bj \u200d\u2060\ufeff nul-bredde",
    LONG_WORD,
    "😀" * 400,
    "👨\u200d👩\u200d👧\u200d👦" * 120,
    "Z̷̢̛͓̜̙̱̼̠̦ͨ̈́̏͌ͭa̶̧͚̖͎̹̲͈͂̓l̸͙̼͕̒ͮg̵̛̰̜̈̇o̶̥̅",
    "&lt;script&gt;alert(1)&lt;/script&gt; &amp;amp; &#x3C;b&#x3E;fed&#x3C;/b&#x3E;",
    "{{7*7}} {% raw %} ${7*7} #{7*7} <%= 7*7 %> {{ config }}",
]
LIVE = ["<img src=x onerror=\"window.__xss='live'\">", "\u202elive override"]
TRAP = """
  window.__xssHits = [];
  Object.defineProperty(window, "__xss", {
    configurable: false,
    get: function () { return undefined; },
    set: function (value) { window.__xssHits.push(String(value)); }
  });
"""


async def send_as_child(server: ServerProcess, demo: DemoInfo, texts: list[str]) -> None:
    ids = itertools.count(1)
    async with (
        aiohttp.ClientSession() as http,
        child_socket(http, server.ws_base, demo.token) as child,
    ):
        await child.hello()
        for text in texts:
            client_id = f"hostile-{len(text)}-{next(ids):04d}"
            await child.send(client_id, text)
            await child.wait_ack(client_id)
        # Bad input gets a clear error, not a crash: 5,000 characters is over every limit.
        await child.send("hostile-too-long-0001", "X" * 5000)
        while True:
            reply = await child.next_message()
            if reply.get("type") == "error":
                assert reply["error"] == "too_long"
                break


async def logged_in_page(browser: Browser, server: ServerProcess, demo: DemoInfo) -> Page:
    """A desktop page carrying the session of the shared HTTP login helper."""
    client = InboxClient.new(server.base_url)
    try:
        await client.login(demo.username, demo.password, totp_secret=demo.totp_secret)
        cookies = [
            {"name": c.key, "value": c.value, "url": server.base_url}
            for c in client.session.cookie_jar
        ]
    finally:
        await client.close()
    context = await browser.new_context(**DESKTOP)
    await context.add_cookies(cookies)
    await context.add_init_script(TRAP)
    return await context.new_page()


async def assert_nothing_ran_or_overflowed(page: Page, watch: Watch, container: str) -> None:
    assert await page.evaluate("window.__xssHits") == []
    watch.assert_clean()
    injected = await page.evaluate(
        """sel => {
             const root = document.querySelector(sel);
             return Array.from(root.querySelectorAll(
               'script, img, svg, iframe, style, a[href^="javascript"], [onerror], [onload]'
             )).length;
           }""",
        container,
    )
    assert injected == 0
    widths = await page.evaluate(
        """sel => {
             const root = document.querySelector(sel);
             const doc = document.documentElement;
             return [root.scrollWidth, root.clientWidth, doc.scrollWidth, doc.clientWidth];
           }""",
        container,
    )
    assert widths[0] <= widths[1] + 1, widths  # the list itself does not scroll sideways
    assert widths[2] <= widths[3] + 1, widths  # nor does the page
    visible = await page.evaluate("getComputedStyle(document.body).display")
    assert visible != "none"


async def test_hostile_messages_render_as_text_run_nothing_and_break_no_layout(
    browser: Browser, stemme: tuple[ServerProcess, DemoInfo], artifacts: Path
) -> None:
    server, demo = stemme
    await send_as_child(server, demo, CORPUS)
    page = await logged_in_page(browser, server, demo)
    watch = Watch()
    watch.attach(page)

    await page.goto(demo.inbox_url)
    await expect(page.locator("#queue")).to_be_visible()
    row = page.locator("#queue tbody tr", has_text="DEMO-0001")
    await expect(row).to_have_count(1)
    await page.screenshot(path=str(artifacts / "hostile-queue.png"), full_page=True)
    await assert_nothing_ran_or_overflowed(page, watch, "#queue")

    await row.locator("a").click()
    await page.wait_for_url("**/inbox/cases/*")
    await expect(page.locator("#transcript")).to_be_visible()
    shown = await page.eval_on_selector_all(
        "#transcript li.msg-in .msg-text", "els => els.map(e => e.textContent)"
    )
    for text in CORPUS:
        assert text in shown, f"not shown verbatim: {text[:40]!r}"
    await assert_nothing_ran_or_overflowed(page, watch, "#transcript")

    # Each message is its own bidi island: an unterminated override inside one does not turn
    # the labels of the next message around (author before time, left to right).
    isolation = await page.eval_on_selector_all(
        "#transcript li.msg-in .msg-text",
        """els => els.map(e => [e.getAttribute('dir'), getComputedStyle(e).unicodeBidi])""",
    )
    assert all(d == "auto" and b == "isolate" for d, b in isolation), isolation
    order = await page.eval_on_selector_all(
        "#transcript li.msg .msg-meta",
        """els => els.map(m => {
             const a = m.querySelector('.msg-author').getBoundingClientRect();
             const t = m.querySelector('time').getBoundingClientRect();
             return a.left < t.left;
           })""",
    )
    assert order and all(order), order
    await page.screenshot(path=str(artifacts / "hostile-conversation.png"), full_page=True)

    # The same again, arriving live: the page's script must also put them in as text.
    await send_as_child(server, demo, LIVE)
    await page.wait_for_function(
        """texts => {
             const shown = Array.from(document.querySelectorAll('#transcript .msg-text'))
               .map(e => e.textContent);
             return texts.every(t => shown.includes(t));
           }""",
        arg=LIVE,
        timeout=WAIT_MS,
    )
    await assert_nothing_ran_or_overflowed(page, watch, "#transcript")
    await page.context.close()
