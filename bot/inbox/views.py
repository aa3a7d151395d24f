"""The caseworker's pages: the case queue, a conversation, and replying to the child.

A case that is not yours answers 404, exactly like one that does not exist, so the inbox never
confirms that a case id is real. Every view of a transcript is audited.
"""

from __future__ import annotations

from aiohttp import web

from bot import appkeys, audit
from bot.errors import NotFound
from bot.inbox import transcript
from bot.inbox.auth import form_field, login_required, see_other, wants_json
from bot.inbox.context import error_page, render, translator
from bot.inbox.sessions import Login

MAX_REPLY = 4000
TRANSCRIPT_READ = "transcript.read"


@login_required
async def queue_page(request: web.Request, login: Login) -> web.StreamResponse:
    keys = request.config_dict[appkeys.KEYS]
    async with request.config_dict[appkeys.DB].read() as session:
        rows = await transcript.queue(session, keys, login.caseworker_id)
    tr = translator(request, login)
    return render(request, "queue.html", login=login, rows=rows, time=tr.time, unread=tr.unread)


@login_required
async def conversation_page(request: web.Request, login: Login) -> web.StreamResponse:
    return await _conversation(request, login)


async def _conversation(
    request: web.Request,
    login: Login,
    *,
    error: str | None = None,
    draft: str = "",
    status: int = 200,
) -> web.StreamResponse:
    case_id = request.match_info["case_id"]
    keys = request.config_dict[appkeys.KEYS]
    tr = translator(request, login)
    # One write transaction: the audit event, the read marks and what is shown go together.
    async with request.config_dict[appkeys.DB].write() as session:
        case = await transcript.own_case(session, case_id, login.caseworker_id)
        if case is None:
            return error_page(request, login=login, status=404)
        await audit.record(
            session,
            actor=login.caseworker_id,
            action=TRANSCRIPT_READ,
            case_id=case.id,
            detail={},
        )
        marked = await transcript.mark_read(session, case.id)
        name = await transcript.child_name(session, keys, case)
        lines = await transcript.messages(session, keys, case, tr)
    if marked:
        _publish_read(request, case.id)
    return render(
        request,
        "conversation.html",
        login=login,
        status=status,
        case=case,
        child_name=name,
        lines=lines,
        last_seq=lines[-1].seq if lines else 0,
        error=error,
        draft=draft,
        max_reply=MAX_REPLY,
    )


def _publish_read(request: web.Request, case_id: str) -> None:
    # Lets the caseworker's open queue pages lower the unread badge; ids only, as always.
    request.config_dict[appkeys.HUB].publish(
        f"case:{case_id}", {"type": "read", "case_id": case_id}
    )


@login_required
async def reply(request: web.Request, login: Login) -> web.StreamResponse:
    case_id = request.match_info["case_id"]
    text = form_field(await request.post(), "text")
    async with request.config_dict[appkeys.DB].read() as session:
        case = await transcript.own_case(session, case_id, login.caseworker_id)
    if case is None:
        if wants_json(request):
            return web.json_response({"error": "not_found"}, status=404)
        return error_page(request, login=login, status=404)

    problem = _problem(text)
    if problem is None:
        try:
            stored = await request.config_dict[appkeys.ROUTER].reply(
                case_id=case.id, caseworker_id=login.caseworker_id, text=text.strip()
            )
        except NotFound:
            # The case is ours (checked above), so what is missing is a channel to the child.
            problem = "unreachable"
        else:
            if wants_json(request):
                return web.json_response({"message_id": stored.message_id, "seq": stored.seq})
            return see_other(f"/inbox/cases/{case.id}")

    message = translator(request, login).t(f"case.error.{problem}")
    status = 409 if problem == "unreachable" else 400
    if wants_json(request):
        return web.json_response({"error": problem, "message": message}, status=status)
    return await _conversation(request, login, error=message, draft=text, status=status)


def _problem(text: str) -> str | None:
    if not text.strip():
        return "empty"
    if len(text.strip()) > MAX_REPLY:
        return "too_long"
    return None
