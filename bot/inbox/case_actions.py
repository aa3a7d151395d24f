"""What a caseworker does to a case from its conversation page, besides replying.

Routes (every one a CSRF-protected POST; who may use them: :mod:`bot.inbox.access`):
    /inbox/cases/{id}/acknowledge        acknowledge the urgent flag (stops on-call escalation)
    /inbox/cases/{id}/checkins/send      send a check-in now (or when quiet hours end)
    /inbox/cases/{id}/checkins/schedule  every N days, or the day before a meeting
    /inbox/cases/{id}/checkins/rating    the caseworker's parallel rating
    /inbox/cases/{id}/words-used         "Dine ord blev brugt": tell the child what happened
    /inbox/cases/{id}/invite             a new enrolment code and web chat link, shown once

Success redirects back to the conversation (Post/Redirect/Get) with a ``done`` notice; a refused
form shows the page again with the section's message and the caseworker's draft kept. The
invitation is the exception: its code is shown in the response itself, once, never in a URL.
"""

from __future__ import annotations

import base64
import datetime as dt

from aiohttp import web
from markupsafe import Markup

from bot import appkeys
from bot.engine import actions
from bot.engine import checkin as machine
from bot.engine.checkins import CheckinError
from bot.errors import NotFound
from bot.inbox import access, checkin_panel, panels, transcript
from bot.inbox.auth import form_field, login_required, see_other
from bot.inbox.context import render, translator
from bot.inbox.i18n import LOCAL_ZONE
from bot.inbox.security import allows_data_images
from bot.inbox.sessions import Login
from bot.inbox.views import MAX_SUMMARY, PageState, conversation
from bot.scheduler import child_identity
from bot.storage.models import Case, ConversationState, utcnow
from consent.qr import qr_png, qr_svg

MAX_EVERY_DAYS = 365
DEFAULT_MEETING_TIME = "09:00"


def _done(case_id: str, notice: str, anchor: str) -> web.Response:
    return see_other(f"/inbox/cases/{case_id}?done={notice}#{anchor}")


async def _refuse(
    request: web.Request,
    login: Login,
    section: str,
    problem: str,
    *,
    draft: str | None = None,
    status: int = 400,
) -> web.StreamResponse:
    message = translator(request, login).t(f"{section}.error.{problem}")
    drafts = {section: draft} if draft is not None else {}
    page = PageState(errors={section: message}, drafts=drafts, status=status)
    return await conversation(request, login, page)


# -- the urgent flag -------------------------------------------------------------------------


@login_required
async def acknowledge(request: web.Request, login: Login) -> web.StreamResponse:
    decision = await access.check_case(request, login)
    if decision.case is None:
        return access.refusal(request, login, decision.status)
    case = decision.case
    done = await actions.acknowledge_urgent(
        request.config_dict[appkeys.DB],
        request.config_dict[appkeys.HUB],
        case_id=case.id,
        caseworker_id=login.caseworker_id,
    )
    if not done:  # already acknowledged (another tab, a colleague's page): nothing to say
        return see_other(f"/inbox/cases/{case.id}")
    return _done(case.id, "acknowledged", "main")


# -- check-ins -------------------------------------------------------------------------------


async def _sendable(request: web.Request, case: Case, instrument_id: str) -> bool:
    """A known instrument this child can answer (a goals check-in needs the child's goals)."""
    checkins = request.config_dict[appkeys.CHECKINS]
    instrument = checkins.instruments.get(instrument_id)
    if instrument is None:
        return False
    if checkin_panel.ratable(instrument):
        return True
    async with request.config_dict[appkeys.DB].read() as session:
        key = await request.config_dict[appkeys.KEYS].case_key(session, case.id)
        return bool(await checkins.goals(session, key, case))


@login_required
async def checkin_send(request: web.Request, login: Login) -> web.StreamResponse:
    decision = await access.check_case(request, login)
    if decision.case is None:
        return access.refusal(request, login, decision.status)
    case = decision.case
    instrument_id = form_field(await request.post(), "instrument_id")
    if not await _sendable(request, case, instrument_id):
        return await _refuse(request, login, "checkins", "instrument")
    async with request.config_dict[appkeys.DB].read() as session:
        identity = await child_identity(session, case.id)
        state = await session.get(ConversationState, case.id)
    if identity is None:
        return await _refuse(request, login, "checkins", "unreachable", status=409)
    if state is not None and state.bot_paused:
        return await _refuse(request, login, "checkins", "paused", status=409)
    when = await request.config_dict[appkeys.SCHEDULER].send_now(
        case_id=case.id, instrument_id=instrument_id, caseworker_id=login.caseworker_id
    )
    later = when is not None and when > utcnow()
    return _done(case.id, "checkin_later" if later else "checkin_sent", "checkins")


@login_required
async def checkin_schedule(request: web.Request, login: Login) -> web.StreamResponse:
    decision = await access.check_case(request, login)
    if decision.case is None:
        return access.refusal(request, login, decision.status)
    case = decision.case
    form = await request.post()
    instrument_id = form_field(form, "instrument_id")
    if not await _sendable(request, case, instrument_id):
        return await _refuse(request, login, "checkins", "instrument")
    plan = form_field(form, "plan")
    every_days: int | None = None
    meeting_at: dt.datetime | None = None
    if plan == "every":
        raw = form_field(form, "every_days").strip()
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_EVERY_DAYS:
            return await _refuse(request, login, "checkins", "every_days")
        every_days = int(raw)
    elif plan == "meeting":
        meeting_at = _meeting(form_field(form, "meeting_date"), form_field(form, "meeting_time"))
        if meeting_at is None or meeting_at <= utcnow():
            return await _refuse(request, login, "checkins", "meeting")
    else:
        return await _refuse(request, login, "checkins", "plan")
    await request.config_dict[appkeys.SCHEDULER].add_schedule(
        case_id=case.id,
        instrument_id=instrument_id,
        caseworker_id=login.caseworker_id,
        every_days=every_days,
        meeting_at=meeting_at,
    )
    return _done(case.id, "scheduled", "checkins")


def _meeting(date_text: str, time_text: str) -> dt.datetime | None:
    """A meeting's date and local time (Europe/Copenhagen) from the form, in UTC."""
    try:
        day = dt.date.fromisoformat(date_text.strip())
        clock = dt.time.fromisoformat(time_text.strip() or DEFAULT_MEETING_TIME)
    except ValueError:
        return None
    return dt.datetime.combine(day, clock, tzinfo=LOCAL_ZONE).astimezone(dt.UTC)


@login_required
async def checkin_rating(request: web.Request, login: Login) -> web.StreamResponse:
    decision = await access.check_case(request, login)
    if decision.case is None:
        return access.refusal(request, login, decision.status)
    case = decision.case
    form = await request.post()
    checkins = request.config_dict[appkeys.CHECKINS]
    instrument = checkins.instruments.get(form_field(form, "instrument_id"))
    if instrument is None or not checkin_panel.ratable(instrument):
        return await _refuse(request, login, "rating", "instrument")
    answers = checkin_panel.parse_rating(instrument, form)
    if answers is None:
        return await _refuse(request, login, "rating", "value")
    db = request.config_dict[appkeys.DB]
    try:
        async with db.write() as session:
            row = await session.get(Case, case.id)
            assert row is not None
            key = await request.config_dict[appkeys.KEYS].case_key(session, case.id)
            await checkins.record_rating(
                session,
                key,
                case=row,
                instrument_id=instrument.id,
                answers=answers,
                caseworker_id=login.caseworker_id,
            )
    except (CheckinError, machine.CheckinError):
        return await _refuse(request, login, "rating", "value")
    return _done(case.id, "rated", "checkins")


# -- "Dine ord blev brugt" -------------------------------------------------------------------


@login_required
async def words_used(request: web.Request, login: Login) -> web.StreamResponse:
    decision = await access.check_case(request, login)
    if decision.case is None:
        return access.refusal(request, login, decision.status)
    case = decision.case
    draft = form_field(await request.post(), "summary")
    summary = draft.strip()
    if not summary:
        return await _refuse(request, login, "words", "empty", draft=draft)
    if len(summary) > MAX_SUMMARY:
        return await _refuse(request, login, "words", "too_long", draft=draft)
    config = request.config_dict
    try:
        await actions.tell_words_used(
            config[appkeys.DB],
            config[appkeys.ROUTER],
            config[appkeys.TEXTS],
            case_id=case.id,
            caseworker_id=login.caseworker_id,
            caseworker_name=login.display_name,
            summary=summary,
        )
    except NotFound:
        return await _refuse(request, login, "words", "unreachable", draft=draft, status=409)
    return _done(case.id, "words_sent", "words")


# -- invitations -----------------------------------------------------------------------------


@login_required
async def invite(request: web.Request, login: Login) -> web.StreamResponse:
    decision = await access.check_case(request, login)
    if decision.case is None:
        return access.refusal(request, login, decision.status)
    case = decision.case
    settings = request.config_dict[appkeys.SETTINGS]
    chosen = [c for c in (await request.post()).getall("channels", []) if isinstance(c, str)]
    offered = panels.invitable_channels(settings)
    channels = [c for c in offered if c in chosen]  # in our order, each once
    if not channels or len(set(chosen)) != len(channels):
        return await _refuse(request, login, "invite", "channels")
    invitation = await actions.create_invitation(
        request.config_dict[appkeys.DB],
        request.config_dict[appkeys.ENROLMENT],
        case_id=case.id,
        channels=channels,
        caseworker_id=login.caseworker_id,
    )
    tr = translator(request, login)
    link = qr = png = None
    if invitation.webchat_token is not None:
        link = settings.public_url("/c/" + invitation.webchat_token)
        # segno's SVG: our own markup (a title and one path, no style attributes), so it is
        # inlined as it is; the link itself is drawn as modules, never written out as text.
        qr = Markup(qr_svg(link))  # noqa: S704 - generated here, holds no input as markup
        if allows_data_images():
            png = "data:image/png;base64," + base64.b64encode(qr_png(link)).decode("ascii")
    async with request.config_dict[appkeys.DB].read() as session:
        name = await transcript.child_name(session, request.config_dict[appkeys.KEYS], case)
    response = render(
        request,
        "invitation.html",
        login=login,
        case=case,
        child_name=name,
        code=invitation.code,
        expires_label=tr.time(invitation.expires_at),
        channels=[tr.channel(c) for c in invitation.channels],
        chosen=invitation.channels,
        link=link,
        qr=qr,
        png=png,
        sms_number=panels.sms_number(settings),
    )
    # Shown once: never cached, whatever the middleware in front of it does.
    response.headers["Cache-Control"] = "no-store"
    return response
