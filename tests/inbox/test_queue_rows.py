"""The queue's rows: waiting time after a reply, and rows drawn again only when they change."""

from __future__ import annotations

import dataclasses
import datetime as dt

from markupsafe import Markup, escape
from sqlmodel import select

from bot.inbox import queue
from bot.inbox.i18n import Translations
from bot.inbox.queue import QueueItem
from bot.inbox.queue_rows import RowCache
from bot.storage.models import Caseworker, utcnow
from tests.inbox.conftest import InboxHarness
from tests.inbox.test_queue import rows

NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


async def _worker_id(inbox: InboxHarness, username: str) -> str:
    async with inbox.db.read() as session:
        found = (
            await session.exec(select(Caseworker.id).where(Caseworker.username == username))
        ).first()
    assert found is not None
    return found


async def test_waiting_counts_from_the_first_message_after_the_last_reply(
    inbox: InboxHarness,
) -> None:
    await inbox.caseworker("anna")
    anna = await _worker_id(inbox, "anna")
    again = await inbox.case("anna", ref="R-AGAIN", child="Alma")
    answered = await inbox.case("anna", ref="R-ANSWERED", child="Bo")
    never = await inbox.case("anna", ref="R-NEVER", child="Cai")
    await inbox.child_writes(again, "hej")
    await inbox.router.reply(case_id=again.case_id, caseworker_id=anna, text="hej med dig")
    after = await inbox.child_writes(again, "jeg har et spørgsmål")
    await inbox.child_writes(again, "er du der?")
    await inbox.child_writes(answered, "tak")
    await inbox.router.reply(case_id=answered.case_id, caseworker_id=anna, text="selv tak")
    first = await inbox.child_writes(never, "hallo")
    await inbox.child_writes(never, "hallo igen")
    created = {m.id: m.created_at for m in await inbox.messages(again.case_id)}
    created |= {m.id: m.created_at for m in await inbox.messages(never.case_id)}

    async with inbox.db.read() as session:
        found = {
            item.case_ref: item
            for item in await queue.load(session, inbox.keys, [anna], now=utcnow())
        }
    assert found["R-AGAIN"].waiting_since == created[after.message_id]
    assert found["R-AGAIN"].unread == 3
    assert found["R-NEVER"].waiting_since == created[first.message_id]
    assert found["R-ANSWERED"].waiting_since is None
    assert found["R-ANSWERED"].unread == 1


async def test_the_queue_page_draws_a_row_again_when_it_changes(inbox: InboxHarness) -> None:
    await inbox.caseworker("anna")
    anna = await _worker_id(inbox, "anna")
    case = await inbox.case("anna", ref="R-LIVE", child="Dana")
    other = await inbox.case("anna", ref="R-OTHER", child="Eli")
    await inbox.child_writes(case, "hej")
    await inbox.child_writes(other, "hej")
    client = await inbox.logged_in("anna")

    async def row() -> str:
        return dict(rows(await (await client.get("/inbox/")).text()))[case.case_id]

    assert "1 ulæst" in await row()
    await inbox.child_writes(case, "hallo?")
    assert "2 ulæste" in await row()
    assert (await client.get(f"/inbox/cases/{case.case_id}")).status == 200  # reads them
    assert "Ingen ulæste" in await row()
    assert 'data-role="waiting"' in await row()
    await inbox.router.reply(case_id=case.case_id, caseworker_id=anna, text="her er jeg")
    assert 'data-role="waiting"' not in await row()
    assert "1 ulæst" in dict(rows(await (await client.get("/inbox/")).text()))[other.case_id]


def _item(ref: str, *, unread: int = 0, window: dt.datetime | None = None) -> QueueItem:
    return QueueItem(
        case_id=f"id-{ref}",
        case_ref=ref,
        child_name="Mika",
        unread=unread,
        last_activity=NOW,
        closed=False,
        urgent=False,
        urgent_reasons=None,
        timer_due_at=None,
        waiting_since=None,
        channels=("webchat",),
        paused=(),
        quiet_now=False,
        next_checkin_at=None,
        window_closes_at=window,
    )


class Drawn:
    """A row function that writes what it was given and counts how often it was asked."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, item: QueueItem, window: str | None, cover: str | None) -> Markup:
        self.calls += 1
        return Markup("<tr>{}|{}|{}|{}</tr>").format(item.case_ref, item.unread, window, cover)


def test_each_row_is_drawn_once_until_what_it_shows_changes() -> None:
    translations = Translations.load(default="da")
    da, en = translations.for_language("da"), translations.for_language("en")
    cache, draw = RowCache(), Drawn()
    items = [_item("A"), _item("B"), _item("<C>")]

    page = cache.render(items, da, NOW, covering={}, row=draw)
    assert page == "<tr>A|0|None|None</tr><tr>B|0|None|None</tr><tr>&lt;C&gt;|0|None|None</tr>"
    assert draw.calls == 3
    assert cache.render(items, da, NOW, covering={}, row=draw) == page
    assert draw.calls == 3  # nothing changed: nothing drawn

    changed = [items[0], dataclasses.replace(items[1], unread=2), items[2]]
    assert "<tr>B|2|None|None</tr>" in cache.render(changed, da, NOW, covering={}, row=draw)
    assert draw.calls == 4
    # Another language and a cover badge are other rows, never the cached ones.
    cache.render(items[:1], en, NOW, covering={}, row=draw)
    assert draw.calls == 5
    covered = cache.render(items[:1], da, NOW, covering={"id-A": "Bent"}, row=draw)
    assert covered == "<tr>A|0|None|Bent</tr>"
    assert draw.calls == 6


def test_the_reply_window_countdown_redraws_its_row_as_time_passes() -> None:
    da = Translations.load(default="da").for_language("da")
    cache, draw = RowCache(), Drawn()
    item = _item("M", window=NOW + dt.timedelta(hours=3))
    first = cache.render([item], da, NOW, covering={}, row=draw)
    later = cache.render([item], da, NOW + dt.timedelta(minutes=5), covering={}, row=draw)
    assert draw.calls == 2
    assert first != later
    assert escape("3 t 0 min") in first and escape("2 t 55 min") in later


def test_the_cache_is_bounded() -> None:
    da = Translations.load(default="da").for_language("da")
    cache, draw = RowCache(size=2), Drawn()
    cache.render([_item("A"), _item("B"), _item("C")], da, NOW, covering={}, row=draw)
    assert len(cache) == 2
    cache.render([_item("A")], da, NOW, covering={}, row=draw)  # the oldest went first
    assert draw.calls == 4
