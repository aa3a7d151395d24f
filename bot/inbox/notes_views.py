"""``POST /inbox/cases/{case_id}/notes``: add an internal note (see :mod:`bot.inbox.notes`)."""

from __future__ import annotations

from aiohttp import web

from bot import appkeys
from bot.inbox import access, notes
from bot.inbox.auth import form_field, login_required, see_other
from bot.inbox.context import translator
from bot.inbox.sessions import Login
from bot.inbox.views import PageState, conversation


@login_required
async def add_note(request: web.Request, login: Login) -> web.StreamResponse:
    decision = await access.check_case(request, login)
    if decision.case is None:
        return access.refusal(request, login, decision.status)
    case = decision.case
    draft = form_field(await request.post(), "text")
    problem = notes.problem(draft)
    if problem is not None:
        message = translator(request, login).t(f"notes.error.{problem}")
        page = PageState(errors={"notes": message}, drafts={"notes": draft}, status=400)
        return await conversation(request, login, page)
    async with request.config_dict[appkeys.DB].write() as session:
        await notes.add(
            session,
            request.config_dict[appkeys.KEYS],
            case_id=case.id,
            caseworker_id=login.caseworker_id,
            text=draft,
        )
    return see_other(f"/inbox/cases/{case.id}?done=note_added#notes")
