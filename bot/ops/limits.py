"""A deadline for receiving a request's body, so a slow client cannot hold a handler forever.

aiohttp has no such timeout: ``keepalive_timeout`` covers the wait for a request, not a body
that trickles in a byte at a time. Every handler reads its body before it touches the database
or answers, so the middleware below bounds that read: the request gets 408 and the connection is
closed when the body has not fully arrived ``STEMME_REQUEST_BODY_TIMEOUT`` seconds after the
headers. The deadline is lifted the moment the body's last byte arrives (the stream's end), so a
handler that then waits on the database is never cut off. Other requests are served meanwhile
(one slow client costs one idle coroutine). The reverse proxy should have its own limit too
(Caddy ``timeouts read_body``; nginx ``client_body_timeout``).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger(__name__)


def body_deadline(seconds: float) -> Middleware:
    """Middleware answering 408 when a request body takes longer than ``seconds`` to arrive."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists or request.content.is_eof():
            # No body, or all of it came with the headers (a webhook's form mostly does): no
            # deadline to set, and none of a timer's cost on every request.
            return await handler(request)
        waiting = True

        def body_arrived() -> None:
            if waiting:  # the stream can end after the handler returned (e.g. 413 unread)
                deadline.reschedule(None)

        try:
            async with asyncio.timeout(seconds) as deadline:
                request.content.on_eof(body_arrived)  # runs at once if the body is all here
                try:
                    return await handler(request)
                finally:
                    waiting = False
        except TimeoutError:
            if request.content.is_eof():
                raise  # the body arrived: this timeout came from the handler's own work
            log.warning("request body not received in %.0f s: %s", seconds, request.path)
            response = web.Response(status=408, text="request timeout")
            response.force_close()
            return response

    return middleware
