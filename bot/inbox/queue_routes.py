"""The routes of the queue and conversation tools (notes, handled, paused channels, links).

Routes:
    POST /inbox/cases/{case_id}/notes                      add an internal note
    POST /inbox/cases/{case_id}/handled                    mark handled
    POST /inbox/cases/{case_id}/channels/{identity_id}/pause | …/resume
    GET  /s/{token}                                        the child reads a secure-link reply

The child's page is on the main application, outside ``/inbox``: the child has no inbox session
and must not get the inbox's cookies or its pages' headers.
"""

from __future__ import annotations

from aiohttp import web

from bot.inbox import notes_views, queue, queue_actions, queue_rows, securelink


def add_routes(inbox: web.Application, app: web.Application) -> None:
    """Add these routes to the inbox sub-application and (the child's page) the main one."""
    inbox[queue.NAMES] = queue.NameCache()
    inbox[queue_rows.ROWS] = queue_rows.RowCache()
    inbox.router.add_post("/cases/{case_id}/notes", notes_views.add_note)
    inbox.router.add_post("/cases/{case_id}/handled", queue_actions.mark_handled)
    channel = "/cases/{case_id}/channels/{identity_id}"
    inbox.router.add_post(channel + "/pause", queue_actions.pause_channel)
    inbox.router.add_post(channel + "/resume", queue_actions.resume_channel)
    app.router.add_get(securelink.PATH + "{token}", securelink.page)
