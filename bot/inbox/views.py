"""The caseworker's pages: the case queue, a conversation, and replying to the child.

Who may open a case is decided in :mod:`bot.inbox.access` (own, covered, the team lead's team):
an unknown case answers 404, someone else's 403 with an audit event. Every view of a transcript
is audited. The actions around a
conversation (acknowledge, check-ins, "words used", invitations) are in
:mod:`bot.inbox.case_actions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import appkeys, audit
from bot.engine.conversation import first_name
from bot.errors import NotFound, ReplyWindowClosed
from bot.inbox import (
    access,
    canned,
    checkin_panel,
    handover,
    notes,
    panels,
    queue_view,
    securelink,
    transcript,
    trends,
)
from bot.inbox.auth import form_field, login_required, see_other, wants_json
from bot.inbox.context import render, translator
from bot.inbox.i18n import Translator
from bot.inbox.sessions import Login
from bot.router import last_inbound_identity_id
from bot.scheduler import child_identity
from bot.storage.models import Case, Caseworker, ChannelIdentity, ConversationState, utcnow

MAX_REPLY = 4000
MAX_SUMMARY = 1000
TRANSCRIPT_READ = "transcript.read"
# What a successful action may tell the page after its redirect (``?done=…``).
NOTICES = frozenset(
    {
        "acknowledged",
        "checkin_sent",
        "checkin_later",
        "scheduled",
        "rated",
        "words_sent",
        "handed_over",
        "note_added",
        "handled",
        "paused",
        "resumed",
    }
)


@dataclass(frozen=True, slots=True)
class PageState:
    """What a refused form hands back to the page: messages and drafts per section."""

    errors: dict[str, str] = field(default_factory=dict)
    drafts: dict[str, str] = field(default_factory=dict)
    reply_only: list[str] | None = None  # the reply window closed: offer only these channels
    status: int = 200


@login_required
async def queue_page(request: web.Request, login: Login) -> web.StreamResponse:
    return await queue_view.page(request, login)


@login_required
async def conversation_page(request: web.Request, login: Login) -> web.StreamResponse:
    return await conversation(request, login)


async def conversation(
    request: web.Request, login: Login, page: PageState | None = None
) -> web.StreamResponse:
    """The conversation with everything around it; ``page`` carries a refused form back."""
    page = page or PageState()
    case_id = request.match_info["case_id"]
    config = request.config_dict
    keys = config[appkeys.KEYS]
    tr = translator(request, login)
    # One write transaction: the audit event, the read marks and what is shown go together.
    async with config[appkeys.DB].write() as session:
        decision = await access.decide(session, login, case_id)
        case = decision.case
        if case is None:
            if decision.status == 403:
                await access.refuse(session, login, case_id, route=access.route_name(request))
            # Returning commits the refusal's audit event; nothing of the case is read.
            return access.refusal(request, login, decision.status)
        await audit.record(
            session,
            actor=login.caseworker_id,
            action=TRANSCRIPT_READ,
            case_id=case.id,
            detail={},
        )
        # A team lead looking in must not take the unread marks away from whoever works the case.
        marked = 0
        if decision.ground is not access.Ground.TEAM:
            marked = await transcript.mark_read(session, case.id)
        name = await transcript.child_name(session, keys, case)
        shown = await transcript.window(
            session, keys, case, tr, start=transcript.start_of(request.query)
        )
        lines = shown.lines
        state = await session.get(ConversationState, case.id)
        rows = await panels.identities(session, case.id)
        last_in = await last_inbound_identity_id(session, case.id)
        reachable = await child_identity(session, case.id) is not None
        key = await keys.case_key(session, case.id)
        # Decrypted once, for both the results panel and the trend charts.
        finished = await config[appkeys.CHECKINS].results(session, key, case.id)
        checkins = await checkin_panel.load(
            session, key, config[appkeys.CHECKINS], case, tr, finished
        )
        trend_views = trends.load(finished, config[appkeys.CHECKINS], tr)
        around = await _around(session, login, case, decision.ground, lines, checkins)
        case_notes = await notes.load(session, keys, case.id, tr)
        aids = await canned.reply_aids(
            session,
            case=case,
            identities=rows,
            last_in=last_in,
            texts=config[appkeys.TEXTS],
            settings=config[appkeys.SETTINGS],
            tr=tr,
            now=utcnow(),
        )
    if marked:
        _publish_read(request, case.id)
    choices = panels.reply_choices(rows, tr, only=page.reply_only)
    done = request.query.get("done", "")
    return render(
        request,
        "conversation.html",
        login=login,
        status=page.status,
        case=case,
        child_name=name,
        lines=lines,
        earlier=shown,
        last_seq=lines[-1].seq if lines else 0,
        errors=page.errors,
        drafts=page.drafts,
        max_reply=MAX_REPLY,
        max_summary=MAX_SUMMARY,
        notice=tr.t(f"notice.{done}") if done in NOTICES else None,
        urgent=panels.urgent_view(state, tr),
        channels=panels.channel_views(rows, config[appkeys.SETTINGS], tr),
        reply_choices=choices,
        reply_default=(
            None if page.reply_only is not None else _default_channel(rows, last_in, tr)
        ),
        show_reply_channel=page.reply_only is not None or len(choices) > 1,
        checkins=checkins,
        trends=trend_views,
        reachable=reachable,
        paused=bool(state and state.bot_paused),
        invitation_hours=config[appkeys.SETTINGS].invitation_hours,
        words_preview=config[appkeys.TEXTS].get(
            case.language,
            "consent.feedback",
            caseworker=first_name(login.display_name) or login.display_name,
            summary="…",
        ),
        invite_channels=[
            panels.Choice(c, tr.channel(c))
            for c in panels.invitable_channels(config[appkeys.SETTINGS])
        ],
        covering_for=around.covering_for,
        assigned_name=around.assigned_name,
        handover=around.summary,
        handover_to=around.candidates,
        time=tr.time,
        notes=case_notes,
        max_note=notes.MAX_NOTE,
        aids=aids,
    )


@dataclass(frozen=True, slots=True)
class Around:
    """Who works the case: the cover badge, the handover summary and the reassignment form."""

    assigned_name: str
    covering_for: str | None  # the away caseworker's name, when the viewer covers for them
    summary: handover.HandoverSummary | None
    candidates: list[handover.Candidate] | None  # only for the team's lead


async def _around(
    session: AsyncSession,
    login: Login,
    case: Case,
    ground: access.Ground,
    lines: list[transcript.MessageView],
    checkins: checkin_panel.CheckinPanel,
) -> Around:
    assigned = await session.get(Caseworker, case.caseworker_id)
    name = assigned.display_name if assigned is not None else ""
    lead = await access.may_reassign(session, login, case)
    return Around(
        assigned_name=name,
        covering_for=name if ground is access.Ground.COVER else None,
        summary=await handover.summary(
            session, case, login.caseworker_id, lines, checkins.results
        ),
        candidates=await handover.candidates(session, case) if lead else None,
    )


def _default_channel(
    rows: list[ChannelIdentity], last_in: str | None, tr: Translator
) -> str | None:
    """The label of the default reply choice: the channel the child wrote from last."""
    for row in rows:
        if row.id == last_in and row.status == "active":
            return tr.t("reply.channel_default", channel=tr.channel(row.channel))
    return tr.t("reply.channel_default_none")


def _publish_read(request: web.Request, case_id: str) -> None:
    # Lets the caseworker's open queue pages lower the unread badge; ids only, as always.
    request.config_dict[appkeys.HUB].publish(
        f"case:{case_id}", {"type": "read", "case_id": case_id}
    )


@login_required
async def reply(request: web.Request, login: Login) -> web.StreamResponse:
    case_id = request.match_info["case_id"]
    form = await request.post()
    text = form_field(form, "text")
    identity_id = form_field(form, "identity_id").strip() or None
    secure = form_field(form, "secure") == "1"
    tr = translator(request, login)
    decision = await access.check_case(request, login, case_id)
    case = decision.case
    if case is None:
        return access.refusal(request, login, decision.status)
    identity = None
    if identity_id is not None:
        async with request.config_dict[appkeys.DB].read() as session:
            identity = await session.get(ChannelIdentity, identity_id)

    problem = _problem(text)
    if problem is None and case.closed_at is not None:
        # Nobody on the other end any more (and after shredding, no key to write with).
        problem = "case_closed"
    if problem is None and identity_id is not None and not _usable(identity, case.id):
        problem = "bad_channel"
    message: str | None = None
    closed: ReplyWindowClosed | None = None
    if problem is None:
        router = request.config_dict[appkeys.ROUTER]
        try:
            stored = await router.reply(
                case_id=case.id,
                caseworker_id=login.caseworker_id,
                text=text.strip(),
                identity_id=identity_id,
                prepare=(
                    securelink.hook(
                        request.config_dict[appkeys.SETTINGS],
                        request.config_dict[appkeys.TEXTS],
                        case,
                    )
                    if secure
                    else None
                ),
            )
        except ReplyWindowClosed as exc:
            problem, closed = "window_closed", exc
            capabilities = router.capabilities.get(exc.channel)
            hours = panels.window_hours(capabilities.reply_window if capabilities else None)
            message = _window_message(tr, exc, hours)
        except NotFound:
            # The case is ours (checked above), so what is missing is a channel to the child.
            problem = "unreachable"
        else:
            if wants_json(request):
                return web.json_response({"message_id": stored.message_id, "seq": stored.seq})
            return see_other(f"/inbox/cases/{case.id}")

    message = message or tr.t(f"case.error.{problem}")
    status = 409 if problem in ("unreachable", "window_closed", "case_closed") else 400
    only = [i for i, _ in closed.alternatives] if closed is not None else None
    if wants_json(request):
        body: dict[str, object] = {"error": problem, "message": message}
        if only is not None:
            async with request.config_dict[appkeys.DB].read() as session:
                rows = await panels.identities(session, case.id)
            body["alternatives"] = [
                {"identity_id": c.value, "label": c.label}
                for c in panels.reply_choices(rows, tr, only=only)
            ]
        return web.json_response(body, status=status)
    state = PageState(
        errors={"reply": message}, drafts={"reply": text}, reply_only=only, status=status
    )
    return await conversation(request, login, state)


def _usable(identity: ChannelIdentity | None, case_id: str) -> bool:
    return identity is not None and identity.case_id == case_id and identity.status == "active"


def _window_message(tr: Translator, closed: ReplyWindowClosed, hours: int) -> str:
    channel = tr.channel(closed.channel)
    if closed.last_inbound_at is None:
        why = tr.t("reply.window_never", channel=channel)
    else:
        why = tr.t("reply.window_closed", channel=channel, hours=hours)
    more = "reply.window_alternative" if closed.alternatives else "reply.window_no_alternative"
    return f"{why} {tr.t(more)}"


def _problem(text: str) -> str | None:
    if not text.strip():
        return "empty"
    if len(text.strip()) > MAX_REPLY:
        return "too_long"
    return None
