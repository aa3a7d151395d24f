"""What the inbox's handlers share: templates, texts, session limits, open WebSockets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from bot import appkeys
from bot.inbox.i18n import Translations, Translator
from bot.inbox.security import Cookies, cookies, csp_nonce
from bot.inbox.sessions import Limits, Login

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(slots=True)
class Inbox:
    templates: jinja2.Environment
    translations: Translations
    limits: Limits
    cookies: Cookies
    sockets: set[web.WebSocketResponse] = field(default_factory=set)


INBOX: web.AppKey[Inbox] = web.AppKey("inbox", Inbox)


def make_templates() -> jinja2.Environment:
    # Autoescape is what keeps a child's "<script>" inert; it is on for every .html template.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build(app: web.Application) -> Inbox:
    settings = app[appkeys.SETTINGS]
    return Inbox(
        templates=make_templates(),
        translations=Translations.load(default=settings.default_language),
        limits=Limits.of(settings),
        cookies=cookies(settings),
    )


def inbox(request: web.Request) -> Inbox:
    return request.config_dict[INBOX]


def translator(request: web.Request, login: Login | None) -> Translator:
    return inbox(request).translations.for_language(login.language if login else None)


def render(
    request: web.Request,
    template: str,
    *,
    login: Login | None,
    status: int = 200,
    **context: Any,
) -> web.Response:
    """A server-rendered page in the caseworker's language, carrying this response's nonce."""
    tr = translator(request, login)
    page = (
        inbox(request)
        .templates.get_template(template)
        .render(t=tr.t, lang=tr.language, nonce=csp_nonce(request), login=login, **context)
    )
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


def error_page(request: web.Request, *, login: Login | None, status: int) -> web.Response:
    kind = "not_found" if status == 404 else "forbidden"
    return render(request, "error.html", login=login, status=status, kind=kind)
