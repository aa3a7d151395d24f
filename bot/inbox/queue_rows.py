"""The queue's rows as HTML, each made once per change of what it shows.

A caseworker reloads the queue often, and between two loads few of their cases change. Each
row's HTML is therefore kept under everything it is made from: the row's facts
(:class:`~bot.inbox.queue.QueueItem`, a frozen value), the caseworker's language, the cover
badge and the Messenger countdown in words (the only label that moves with the clock). An
unchanged row then costs one dictionary look-up instead of a dozen labels and a template.

Like :class:`~bot.inbox.queue.NameCache` it holds the child's name: memory only, bounded in
number and idle time (``bot/inbox/recent.py``), and a renamed or erased child has a new key, so
nothing stale is shown.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web
from markupsafe import Markup

from bot.inbox.i18n import Translator
from bot.inbox.queue import QueueItem, until_label
from bot.inbox.recent import RecentCache

TEMPLATE = "_queue_row.html"

RowKey = tuple[str, QueueItem, str | None, str | None]
# (item, window label, cover name) -> the row's HTML
RowOf = Callable[[QueueItem, str | None, str | None], Markup]


class RowCache(RecentCache[RowKey, Markup]):
    """Rendered rows by what they were rendered from; least recently used ones go first."""

    def render(
        self,
        items: Sequence[QueueItem],
        tr: Translator,
        now: dt.datetime,
        *,
        covering: Mapping[str, str],
        row: RowOf,
    ) -> Markup:
        """The rows of ``items`` in their order, as one piece of HTML.

        Args:
            items: The queue, in the order the page shows it.
            tr: The caseworker's language.
            now: The time the queue was read at (for the reply-window countdown).
            covering: Case id → the away colleague's name, for cases seen through cover.
            row: Renders one row from an item, its window label and cover name (called on a
                miss only).
        """
        parts = []
        for item in items:
            window = until_label(tr, item.window_closes_at, now) if item.window_closes_at else None
            cover = covering.get(item.case_id)
            key = (tr.language, item, window, cover)
            html = self.get(key)
            if html is None:
                html = row(item, window, cover)
                self.put(key, html)
            parts.append(html)
        # Joined as plain text: Markup.join would copy every row to escape it again, and each
        # part is markup the autoescaping template made.
        return Markup("".join(parts))  # noqa: S704


ROWS: web.AppKey[RowCache] = web.AppKey("queue_rows", RowCache)
