"""The baseline: a bare aiohttp server that reads the same requests and answers 200.

``python -m bench.baseline PORT``. It reads the Twilio form (and the web chat JSON) exactly as
far as a handler must to answer, nothing more: no signature check, no database. Stemme's
full path is reported as a ratio of this, measured by the same load generator in the same run.
"""

from __future__ import annotations

import sys

from aiohttp import web

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


async def sms(request: web.Request) -> web.Response:
    form = await request.post()
    if "MessageSid" not in form:
        return web.Response(status=400)
    return web.Response(text=EMPTY_TWIML, content_type="text/xml")


async def webchat(request: web.Request) -> web.Response:
    data = await request.json()
    if not isinstance(data, dict) or "client_id" not in data:
        return web.Response(status=400)
    return web.Response(status=200)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application(client_max_size=256 * 1024)
    app.router.add_post("/webhooks/twilio/sms", sms)
    app.router.add_post("/c/{token}/messages", webchat)
    app.router.add_get("/healthz", healthz)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
