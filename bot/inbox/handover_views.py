"""The handover form on the case page.

Route (CSRF-protected POST; only the lead of the case's team, see :mod:`bot.inbox.access`):
    /inbox/cases/{id}/handover   ``to`` = the new caseworker's id

Anyone else who may see the case (its caseworker, a colleague covering) is refused with 403 and
the attempt is audited, like a case they may not see at all.
"""

from __future__ import annotations

from aiohttp import web

from bot import appkeys
from bot.inbox import access
from bot.inbox.auth import form_field, login_required, see_other
from bot.inbox.context import translator
from bot.inbox.handover import HandoverRefused, reassign
from bot.inbox.sessions import Login
from bot.inbox.views import PageState, conversation


@login_required
async def handover_submit(request: web.Request, login: Login) -> web.StreamResponse:
    """``POST /inbox/cases/{case_id}/handover``: reassign, then back to the case page."""
    decision = await access.check_case(request, login)
    if decision.case is None:
        return access.refusal(request, login, decision.status)
    case = decision.case
    config = request.config_dict
    async with config[appkeys.DB].read() as session:
        allowed = await access.may_reassign(session, login, case)
    if not allowed:
        async with config[appkeys.DB].write() as session:
            await access.refuse(session, login, case.id, route=access.route_name(request))
        return access.refusal(request, login, 403)
    target = form_field(await request.post(), "to").strip()
    try:
        await reassign(
            config[appkeys.DB],
            config[appkeys.ROUTER],
            config[appkeys.TEXTS],
            case_id=case.id,
            to_caseworker_id=target,
            by_caseworker_id=login.caseworker_id,
        )
    except HandoverRefused as refused:
        message = translator(request, login).t(f"handover.error.{refused.reason}")
        return await conversation(
            request, login, PageState(errors={"handover": message}, status=400)
        )
    return see_other(f"/inbox/cases/{case.id}?done=handed_over#main")
