"""Actions that change what the queue asks of the caseworker: mark handled, pause a channel.

Routes (CSRF-protected POSTs; who may use them: :mod:`bot.inbox.access`):
    /inbox/cases/{id}/handled                      nothing to answer: out of the "unanswered"
                                                   part of the queue until the child writes again
    /inbox/cases/{id}/channels/{identity}/pause    no bot prompts, replies or check-ins on that
                                                   channel (messages from the child still arrive)
    /inbox/cases/{id}/channels/{identity}/resume   the channel works again

Each is audited with ids only. None is a participation entry: they are the caseworker's way of
organising work, not an exchange with the child.

A paused channel has the status ``paused``: every path that picks a channel for the child takes
only ``active`` ones (reply choices, check-ins, the default reply channel), and the outbox
fails anything still queued for it with a reason the caseworker can read. The router keeps
storing what the child writes from it, and the safety check still runs on it.
"""

from __future__ import annotations

from aiohttp import web

from bot import appkeys, audit
from bot.inbox import access
from bot.inbox.auth import form_field, login_required, see_other
from bot.inbox.context import translator
from bot.inbox.sessions import Login
from bot.inbox.views import PageState, conversation
from bot.storage.models import ChannelIdentity, ConversationState, utcnow

HANDLED = "case.handled"
PAUSED = "channel.paused"
RESUMED = "channel.resumed"
WEBCHAT = "webchat"


@login_required
async def mark_handled(request: web.Request, login: Login) -> web.StreamResponse:
    decision = await access.check_case(request, login)
    if decision.case is None:
        return access.refusal(request, login, decision.status)
    case = decision.case
    back_to_queue = form_field(await request.post(), "next") == "queue"
    async with request.config_dict[appkeys.DB].write() as session:
        state = await session.get(ConversationState, case.id)
        if state is not None:
            state.handled_at = utcnow()
            await audit.record(
                session, actor=login.caseworker_id, action=HANDLED, case_id=case.id, detail={}
            )
    if back_to_queue:
        return see_other("/inbox/")
    return see_other(f"/inbox/cases/{case.id}?done=handled")


@login_required
async def pause_channel(request: web.Request, login: Login) -> web.StreamResponse:
    return await _set_status(request, login, old="active", new="paused", action=PAUSED)


@login_required
async def resume_channel(request: web.Request, login: Login) -> web.StreamResponse:
    return await _set_status(request, login, old="paused", new="active", action=RESUMED)


async def _set_status(
    request: web.Request, login: Login, *, old: str, new: str, action: str
) -> web.StreamResponse:
    decision = await access.check_case(request, login)
    if decision.case is None:
        return access.refusal(request, login, decision.status)
    case = decision.case
    identity_id = request.match_info["identity_id"]
    refused = False
    async with request.config_dict[appkeys.DB].write() as session:
        identity = await session.get(ChannelIdentity, identity_id)
        if identity is None or identity.case_id != case.id:
            # Another case's channel (or none): the same answer as a case that does not exist.
            return access.refusal(request, login, 404)
        if new == "paused" and identity.channel == WEBCHAT:
            # The web chat is the child's own safe channel and opens only while active: pausing
            # it would lock the child out of writing at all.
            refused = True
        elif identity.status == old:
            identity.status, identity.status_reason = new, None
            await audit.record(
                session,
                actor=login.caseworker_id,
                action=action,
                case_id=case.id,
                detail={"identity": identity.id, "channel": identity.channel},
            )
    if refused:
        message = translator(request, login).t("channels.error.webchat_pause")
        return await conversation(
            request, login, PageState(errors={"channels": message}, status=409)
        )
    # Already in that state (a second tab, a double click) is not an error.
    notice = "paused" if new == "paused" else "resumed"
    return see_other(f"/inbox/cases/{case.id}?done={notice}#channels")
