"""The queue's rows as the page shows them: every label made once, in the caseworker's language.

The template then only places and escapes strings; with 1,000 cases, calling translation and
time helpers from the template for every badge cost more than everything else on the page.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from markupsafe import Markup

from bot import appkeys
from bot.inbox import access, queue, queue_rows
from bot.inbox.context import inbox, render, translator
from bot.inbox.i18n import Translator
from bot.inbox.queue import QueueItem
from bot.inbox.sessions import Login
from bot.storage.models import utcnow


@dataclass(frozen=True, slots=True)
class RowView:
    case_id: str
    case_ref: str
    name: str
    unread: int
    urgent: bool
    unanswered: bool
    closed: bool
    urgent_label: str
    timer_label: str | None
    waiting_label: str | None
    quiet: bool
    checkin_label: str | None
    window_label: str | None
    unread_label: str
    channels: list[tuple[str, str]]  # (channel, label), paused ones labelled so
    paused: list[tuple[str, str]]
    last_iso: str | None
    last_label: str | None
    cover_label: str | None


@dataclass(frozen=True, slots=True)
class Labels:
    """The texts every row shares, translated once per page."""

    urgent: str
    quiet: str
    closed: str
    no_activity: str
    handled: str


def labels(tr: Translator) -> Labels:
    return Labels(
        urgent=tr.t("queue.urgent"),
        quiet=tr.t("queue.quiet_now"),
        closed=tr.t("queue.closed"),
        no_activity=tr.t("queue.no_activity"),
        handled=tr.t("handled.button"),
    )


class ChannelNames:
    """Channel names in the caseworker's language, each translated once per page."""

    def __init__(self, tr: Translator) -> None:
        self._tr = tr
        self._names: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if name not in self._names:
            self._names[name] = self._tr.channel(name)
        return self._names[name]


def row_view(
    item: QueueItem,
    tr: Translator,
    *,
    window: str | None,
    cover: str | None,
    shared: Labels,
    channel: ChannelNames,
) -> RowView:
    """One row's labels; ``window`` is the time left to reply on Messenger, in words."""
    reasons = tr.reasons(item.urgent_reasons) if item.urgent else []
    return RowView(
        case_id=item.case_id,
        case_ref=item.case_ref,
        name=item.child_name if item.child_name is not None else tr.t("queue.name_erased"),
        unread=item.unread,
        urgent=item.urgent,
        unanswered=item.unanswered,
        closed=item.closed,
        urgent_label=f"{shared.urgent}: {', '.join(reasons)}" if reasons else shared.urgent,
        timer_label=(
            tr.t("queue.timer", time=tr.time(item.timer_due_at)) if item.timer_due_at else None
        ),
        waiting_label=(
            tr.t("queue.waiting", time=tr.time(item.waiting_since)) if item.waiting_since else None
        ),
        quiet=item.quiet_now,
        checkin_label=(
            tr.t("queue.next_checkin", time=tr.time(item.next_checkin_at))
            if item.next_checkin_at
            else None
        ),
        window_label=tr.t("queue.window_closes", duration=window) if window else None,
        unread_label=tr.unread(item.unread),
        channels=[(c, channel(c)) for c in item.channels],
        paused=[(c, tr.t("queue.channel_paused", channel=channel(c))) for c in item.paused],
        last_iso=item.last_activity.isoformat() if item.last_activity else None,
        last_label=tr.time(item.last_activity) if item.last_activity else None,
        cover_label=tr.t("cover.badge", name=cover) if cover else None,
    )


async def page(request: web.Request, login: Login) -> web.StreamResponse:
    """``GET /inbox/``: the caseworker's own cases and those of colleagues they cover."""
    now = utcnow()
    async with request.config_dict[appkeys.DB].read() as session:
        covered = await access.covered_for(session, login.caseworker_id, now=now)
        rows = await queue.load(
            session,
            request.config_dict[appkeys.KEYS],
            [login.caseworker_id, *covered],
            now=now,
            names=request.config_dict[queue.NAMES],
        )
        covering = await access.covering_badges(session, covered)
    tr = translator(request, login)
    shared = labels(tr)
    channel = ChannelNames(tr)
    template = inbox(request).templates.get_template(queue_rows.TEMPLATE)
    macro = template.module.row  # type: ignore[attr-defined]

    def row(item: QueueItem, window: str | None, cover: str | None) -> Markup:
        view = row_view(item, tr, window=window, cover=cover, shared=shared, channel=channel)
        html: Markup = macro(view, shared)  # autoescaped by the template
        return html

    html = request.config_dict[queue_rows.ROWS].render(rows, tr, now, covering=covering, row=row)
    return render(
        request, "queue.html", login=login, rows=bool(rows), rows_html=html, labels=shared
    )
