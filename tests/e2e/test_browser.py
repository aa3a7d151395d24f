"""The child's page and the caseworker's inbox side by side in real headless Chromium.

The child is on a phone-sized touch screen with the link from ``stemme demo``; the caseworker
logs in at 1280x800 and opens DEMO-0001 from the queue. Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    expect,
)

from bot.inbox import totp

from .chat import query
from .server import DemoInfo, ExitSite, ServerProcess

pytestmark = pytest.mark.slow

DANISH = {"locale": "da-DK", "timezone_id": "Europe/Copenhagen"}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, **DANISH}
DESKTOP = {"viewport": {"width": 1280, "height": 800}, **DANISH}
WAIT_MS = 15_000

CHILD_LINES = "#lines li.line"
CHILD_CONFIRMED = "#lines li.line[data-seq]"
INBOX_LINES = "#transcript li.msg"

XSS_SCRIPT = "<script>window.__xss=1</script>"
XSS_IMG = '<img src=x onerror="window.__xss=2">'
XSS_REPLY = '<img src=x onerror="window.__xss=3"><b>fed</b>'


@dataclass
class Watch:
    """What a page did that it should not: dialogs, uncaught errors, CSP violations."""

    dialogs: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        async def on_dialog(dialog: Dialog) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            await dialog.dismiss()

        def on_console(message: ConsoleMessage) -> None:
            if "Content Security Policy" in message.text:
                self.csp_violations.append(message.text)

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("console", on_console)

    def assert_clean(self) -> None:
        assert self.dialogs == []
        assert self.page_errors == []
        assert self.csp_violations == []


@dataclass
class Session:
    server: ServerProcess
    demo: DemoInfo
    child_context: BrowserContext
    child: Page
    inbox_context: BrowserContext
    inbox: Page
    case_id: str
    watch: Watch
    before: list[tuple[str, str]] = field(default_factory=list)  # the consent exchange


async def open_child(context: BrowserContext, demo: DemoInfo, watch: Watch) -> Page:
    page = await context.new_page()
    watch.attach(page)
    await page.goto(demo.chat_url)
    # Connected: the status line ("Forbinder …") is cleared when the socket opens.
    await expect(page.locator("#status")).to_have_text("", timeout=WAIT_MS)
    return page


async def log_in(context: BrowserContext, demo: DemoInfo, watch: Watch) -> Page:
    """A new page, logged in as the demo caseworker (password, then the TOTP code)."""
    page = await context.new_page()
    watch.attach(page)
    await page.goto(demo.inbox_url)
    await page.wait_for_url("**/inbox/login")
    await page.fill("input[name=username]", demo.username)
    await page.fill("input[name=password]", demo.password)
    await page.click("form[action='/inbox/login'] [type=submit]")
    await enter_totp_code(page, demo.totp_secret)
    return page


async def login_and_open_case(
    context: BrowserContext, demo: DemoInfo, watch: Watch
) -> tuple[Page, str]:
    page = await log_in(context, demo, watch)
    row = page.locator("#queue tbody tr", has_text="DEMO-0001")
    await expect(row).to_have_count(1)
    await row.locator("a").click()
    await page.wait_for_url("**/inbox/cases/*")
    case_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator("#transcript")).to_have_attribute("data-case-id", case_id)
    return page, case_id


async def enter_totp_code(page: Page, secret: str) -> None:
    """The second step as the caseworker does it: the code from the app, typed and sent.

    If this time step's code was used already (an earlier login in the same half-minute), the
    page refuses it and the app's next code is typed instead.
    """
    await page.wait_for_url("**/inbox/login/code")
    now = totp.current_step()
    for step in (now, now + 1):
        await page.fill("input[name=code]", totp.code_at(secret, step))
        await page.click("form[action='/inbox/login/code'] [type=submit]")
        await page.wait_for_load_state()
        if page.url.endswith("/inbox/"):
            return
        await expect(page.locator("p.error")).to_be_visible()
    await page.wait_for_url("**/inbox/")


@pytest.fixture
async def session(
    browser: Browser, stemme: tuple[ServerProcess, DemoInfo]
) -> AsyncIterator[Session]:
    server, demo = stemme
    watch = Watch()
    inbox_context = await browser.new_context(**DESKTOP)
    child_context = await browser.new_context(**PHONE)
    try:
        inbox, case_id = await login_and_open_case(inbox_context, demo, watch)
        child = await open_child(child_context, demo, watch)
        s = Session(server, demo, child_context, child, inbox_context, inbox, case_id, watch)
        s.before = await consent(s)
        yield s
    finally:
        await child_context.close()
        await inbox_context.close()


async def child_send(page: Page, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


async def caseworker_send(page: Page, text: str) -> None:
    await page.fill("#reply-text", text)
    await page.click("#reply-form [type=submit]")
    # The page's script posts it and empties the box once the server has stored it.
    await expect(page.locator("#reply-text")).to_have_value("", timeout=WAIT_MS)


async def child_view(page: Page) -> list[tuple[int | None, str, str]]:
    """(seq or None while pending, direction class, text) for each line, in page order."""
    rows = await page.eval_on_selector_all(
        CHILD_LINES,
        """els => els.map(li => [li.dataset.seq ? Number(li.dataset.seq) : null,
                                 li.classList.contains('out') ? 'out' : 'in',
                                 li.querySelector('.text').textContent])""",
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def inbox_view(page: Page) -> list[tuple[int, str, str]]:
    rows = await page.eval_on_selector_all(
        INBOX_LINES,
        """els => els.map(li => [Number(li.dataset.seq),
                                 li.classList.contains('msg-out') ? 'out' : 'in',
                                 li.querySelector('.msg-text').textContent])""",
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def consent(s: Session) -> list[tuple[str, str]]:
    """First contact as the child meets it: the notice, JA, thanks. Returns the lines shown."""
    await child_send(s.child, "hej")
    out = s.child.locator(f"{CHILD_LINES}.out .text")
    await expect(out.first).to_contain_text("112", timeout=WAIT_MS)
    notice = await out.first.text_content() or ""
    assert "116 111" in notice and "Svar JA" in notice and "Sanne" in notice
    await child_send(s.child, "ja")
    await expect(out.nth(1)).to_contain_text("Tak", timeout=WAIT_MS)
    await s.child.wait_for_timeout(500)  # the rights note for the child's age follows the thanks
    await expect(s.inbox.locator(INBOX_LINES)).to_have_count(
        len(await child_view(s.child)), timeout=WAIT_MS
    )
    lines = [(direction, text) for _, direction, text in await inbox_view(s.inbox)]
    assert lines[:2] == [("in", "hej"), ("out", notice)] and lines[2] == ("in", "ja")
    return lines


async def mark_no_reload(*pages: Page) -> None:
    for page in pages:
        await page.evaluate("window.__sameDocument = 'yes'")


async def assert_not_reloaded(*pages: Page) -> None:
    for page in pages:
        assert await page.evaluate("window.__sameDocument") == "yes", f"{page.url} reloaded"


async def wait_for_all(s: Session, expected: list[tuple[str, str]]) -> None:
    """Both pages show exactly ``expected`` (direction, text) — each once — and agree on seq.

    The consent exchange at the start (``s.before``) is part of both views too.
    """
    expected = s.before + expected
    await expect(s.child.locator(CHILD_CONFIRMED)).to_have_count(len(expected), timeout=WAIT_MS)
    await expect(s.child.locator("#lines li.pending")).to_have_count(0, timeout=WAIT_MS)
    await expect(s.inbox.locator(INBOX_LINES)).to_have_count(len(expected), timeout=WAIT_MS)
    # A late duplicate would arrive after the count matched: give it a moment, then look.
    await s.child.wait_for_timeout(800)
    child, inbox = await child_view(s.child), await inbox_view(s.inbox)
    assert child == inbox
    seqs = [line[0] for line in inbox]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    shown = collections.Counter((direction, text) for _, direction, text in inbox)
    assert shown == collections.Counter(expected)
    # The database agrees: one row per message, same order.
    rows = query(s.server.db_path, "SELECT seq, direction FROM message ORDER BY seq")
    assert [(seq, direction) for seq, direction, _ in inbox] == rows


async def test_live_conversation_survives_dropped_connections(
    session: Session, artifacts: Path
) -> None:
    s = session
    child, inbox = s.child, s.inbox

    # The child's page: help in an emergency is always on screen; the token left the address bar.
    emergency = child.locator(".emergency")
    await expect(emergency).to_be_visible()
    await expect(emergency).to_contain_text("112")
    await expect(emergency).to_contain_text("116 111")
    assert child.url.endswith("/c/")
    assert s.demo.token not in child.url
    await expect(child.locator("#quick-exit")).to_be_visible()
    await mark_no_reload(child, inbox)

    # Live, both ways, without a reload (after the consent exchange in the fixture).
    before = [text for _, text in s.before]
    await child_send(child, "hvornår er mødet?")
    await expect(inbox.locator(f"{INBOX_LINES} .msg-text")).to_have_text(
        [*before, "hvornår er mødet?"], timeout=WAIT_MS
    )
    await caseworker_send(inbox, "Hej Kim. Tak fordi du skriver. Mødet er på tirsdag.")
    await expect(child.locator(f"{CHILD_LINES}.out .text").last).to_have_text(
        "Hej Kim. Tak fordi du skriver. Mødet er på tirsdag.", timeout=WAIT_MS
    )
    expected = [
        ("in", "hvornår er mødet?"),
        ("out", "Hej Kim. Tak fordi du skriver. Mødet er på tirsdag."),
    ]
    await wait_for_all(s, expected)
    await assert_not_reloaded(child, inbox)
    await child.screenshot(path=str(artifacts / "child-chat-phone.png"))
    await inbox.screenshot(path=str(artifacts / "inbox-conversation.png"), full_page=True)

    # A soft drop: the page's socket closes; both sides write before it is back.
    await child.evaluate("window.stemmeChat.drop()")
    await caseworker_send(inbox, "Svar mens forbindelsen var væk (1)")
    await child_send(child, "Besked mens forbindelsen var væk (1)")
    expected += [("out", "Svar mens forbindelsen var væk (1)")]
    expected += [("in", "Besked mens forbindelsen var væk (1)")]
    await wait_for_all(s, expected)

    # The phone goes offline (the socket stays open, but nothing gets through either way).
    await s.child_context.set_offline(True)
    await child_send(child, "Skrevet uden net (1)")
    await caseworker_send(inbox, "Svar mens barnet er offline (1)")
    await child.wait_for_timeout(500)
    assert "Skrevet uden net (1)" not in [t for _, _, t in await inbox_view(inbox)]
    assert "Svar mens barnet er offline (1)" not in [t for _, _, t in await child_view(child)]
    await s.child_context.set_offline(False)
    expected += [("in", "Skrevet uden net (1)"), ("out", "Svar mens barnet er offline (1)")]
    await wait_for_all(s, expected)

    # A hard drop: offline, and the socket is gone too, so reconnecting fails for a while.
    await s.child_context.set_offline(True)
    await child.evaluate("window.stemmeChat.drop()")
    await child_send(child, "Skrevet uden net (2)")
    await expect(child.locator("#lines li.pending")).to_have_count(1)
    await caseworker_send(inbox, "Svar mens barnet er offline (2)")
    await caseworker_send(inbox, "Svar mens barnet er offline (3)")
    await child.wait_for_timeout(1200)  # reconnect attempts fail while offline
    await expect(child.locator("#status")).not_to_have_text("")  # "offline" is shown
    assert "Skrevet uden net (2)" not in [t for _, _, t in await inbox_view(inbox)]
    await s.child_context.set_offline(False)
    expected += [
        ("in", "Skrevet uden net (2)"),
        ("out", "Svar mens barnet er offline (2)"),
        ("out", "Svar mens barnet er offline (3)"),
    ]
    await wait_for_all(s, expected)
    await assert_not_reloaded(child, inbox)
    await child.screenshot(path=str(artifacts / "child-chat-after-reconnect.png"))
    s.watch.assert_clean()


async def test_markup_from_the_child_is_shown_as_text(session: Session, artifacts: Path) -> None:
    s = session
    child, inbox = s.child, s.inbox

    before = [text for _, text in s.before]
    await child_send(child, XSS_SCRIPT)
    await child_send(child, XSS_IMG)
    texts = inbox.locator(f"{INBOX_LINES} .msg-text")
    await expect(texts).to_have_text([*before, XSS_SCRIPT, XSS_IMG], timeout=WAIT_MS)
    await caseworker_send(inbox, XSS_REPLY)
    await expect(child.locator(f"{CHILD_LINES}.out .text").last).to_have_text(
        XSS_REPLY, timeout=WAIT_MS
    )
    await wait_for_all(s, [("in", XSS_SCRIPT), ("in", XSS_IMG), ("out", XSS_REPLY)])

    async def assert_inert(page: Page, container: str) -> None:
        for tag in ("script", "img", "b"):
            assert await page.locator(f"{container} {tag}").count() == 0, (page.url, tag)
        assert await page.evaluate("typeof window.__xss") == "undefined", page.url

    await assert_inert(inbox, "#transcript")
    await assert_inert(child, "#lines")
    await inbox.screenshot(path=str(artifacts / "inbox-after-xss.png"), full_page=True)
    await child.screenshot(path=str(artifacts / "child-after-xss.png"))

    # The server-rendered transcript (a fresh load) and the child's history are inert too.
    await inbox.reload()
    await expect(texts).to_have_text([*before, XSS_SCRIPT, XSS_IMG, XSS_REPLY])
    await assert_inert(inbox, "#transcript")
    await child.reload()
    await expect(child.locator(f"{CHILD_LINES} .text")).to_have_text(
        [*before, XSS_SCRIPT, XSS_IMG, XSS_REPLY], timeout=WAIT_MS
    )
    await assert_inert(child, "#lines")
    await child.wait_for_timeout(300)  # an onerror would have fired by now
    s.watch.assert_clean()


async def test_quick_exit_leaves_no_way_back(
    browser: Browser, stemme: tuple[ServerProcess, DemoInfo], exit_site: ExitSite
) -> None:
    server, demo = stemme
    watch = Watch()
    context = await browser.new_context(**PHONE)
    try:
        page = await context.new_page()
        watch.attach(page)
        await page.goto(exit_site.before_url)  # whatever the child had open before
        await page.goto(demo.chat_url)
        await expect(page.locator("#status")).to_have_text("", timeout=WAIT_MS)
        await child_send(page, "jeg skal gå nu")
        # The child's line, confirmed, and the first-contact notice after it.
        await expect(page.locator(CHILD_CONFIRMED)).to_have_count(2, timeout=WAIT_MS)
        assert await page.evaluate("sessionStorage.getItem('stemme.t')") == demo.token

        await page.locator("#quick-exit").tap()
        await page.wait_for_url(exit_site.exit_url)
        await expect(page.locator("h1")).to_have_text("Vejret i dag")

        # Back goes to the page before the chat: the chat's history entry was replaced.
        await page.go_back()
        await page.wait_for_url(exit_site.before_url)
        assert page.url == exit_site.before_url

        # And the tab holds nothing of the chat: its sessionStorage on Stemme's origin is empty,
        # so opening the bare chat address shows "invalid link" instead of the conversation.
        await page.goto(f"{server.base_url}/c/")
        assert await page.evaluate("sessionStorage.length") == 0
        await expect(page.locator("#invalid")).to_be_visible()
        await expect(page.locator(CHILD_LINES)).to_have_count(0)
        watch.assert_clean()
    finally:
        await context.close()
