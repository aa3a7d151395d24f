"""Secure-link replies: the words stay here; SMS, Telegram or Messenger carry only a notice.

Datatilsynet's advice is that SMS suits reminders, not confidential content, and Telegram and
Messenger are third parties. So a caseworker can tick "send as secure link": the message row
keeps their words (the transcript and the participation entry show them as for any reply), a
``secure_link`` row keeps the notice the channel will carry ("Du har en ny besked. Læs den
her: …"), and the outbox sends that notice instead of the words. The child opens
``/s/<token>`` and reads the message on a page like the web chat's, until the link expires
(``STEMME_SECURE_LINK_DAYS``); then the page says so kindly and asks them to write.

The token is 256 random bits shown only in the notice; the database keeps its SHA-256, like
session tokens, and the notice (which holds the link) is encrypted with the case's key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import jinja2
from aiohttp import web
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import appkeys
from bot.crypto import DataKey, KeyDestroyed
from bot.engine.conversation import first_name
from bot.inbox.i18n import LOCAL_ZONE, Translator
from bot.router import BODY, MESSAGE_TABLE, ReplyHook
from bot.settings import Settings
from bot.storage.models import Case, Caseworker, ChannelIdentity, Message, SecureLink, utcnow
from prompts.texts import Texts

TABLE = "secure_link"
NOTICE = "notice"
PATH = "/s/"
WEBCHAT = "webchat"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the database keeps instead of the token (256 bits of entropy: no key needed)."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def hook(settings: Settings, texts: Texts, case: Case) -> ReplyHook:
    """The :meth:`bot.router.Router.reply` hook that stores a secure link with the reply.

    On the web chat the reply is already read in the web chat, so no link is made there.
    """

    async def prepare(
        session: AsyncSession, key: DataKey, identity: ChannelIdentity, message: Message
    ) -> None:
        if identity.channel == WEBCHAT:
            return
        token = secrets.token_urlsafe(32)
        notice = texts.get(
            case.language,
            "securelink.notice",
            link=settings.public_url(PATH + token),
            days=settings.secure_link_days,
        )
        now = utcnow()
        session.add(
            SecureLink(
                message_id=message.id,
                case_id=case.id,
                token_hash=token_hash(token),
                notice_enc=key.encrypt(notice, table=TABLE, row_id=message.id, field=NOTICE),
                created_at=now,
                expires_at=now + dt.timedelta(days=settings.secure_link_days),
            )
        )

    return prepare


async def labels(session: AsyncSession, case_id: str, tr: Translator) -> dict[str, str]:
    """Per message id, what the caseworker sees under a reply sent as a secure link."""
    query = select(SecureLink).where(col(SecureLink.case_id) == case_id)
    now = utcnow()
    found = {}
    for link in (await session.exec(query)).all():
        if link.opened_at is not None:
            found[link.message_id] = tr.t("securelink.opened", time=tr.time(link.opened_at))
        elif link.expires_at <= now:
            found[link.message_id] = tr.t("securelink.expired", time=tr.time(link.expires_at))
        else:
            found[link.message_id] = tr.t("securelink.waiting", time=tr.time(link.expires_at))
    return found


# -- the child's page ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    """A secure-link message as the child reads it."""

    language: str
    text: str
    caseworker: str
    sent_at: dt.datetime
    expires_at: dt.datetime


async def open_link(
    request: web.Request, token: str, now: dt.datetime
) -> tuple[Opened | None, str, str]:
    """The message behind ``token``, or why not: ``(found, problem, language)``.

    ``problem`` is ``""``, ``"invalid"`` or ``"expired"``. Marks the link opened once.
    """
    config = request.config_dict
    language = config[appkeys.SETTINGS].default_language
    if not _TOKEN.fullmatch(token):
        return None, "invalid", language
    wanted = token_hash(token)
    async with config[appkeys.DB].write() as session:
        link = (
            await session.exec(select(SecureLink).where(col(SecureLink.token_hash) == wanted))
        ).first()
        # The look-up found it by hash; compare again in constant time anyway.
        if link is None or not hmac.compare_digest(link.token_hash, wanted):
            return None, "invalid", language
        case = await session.get(Case, link.case_id)
        message = await session.get(Message, link.message_id)
        if case is None or message is None or case.closed_at is not None:
            return None, "invalid", language
        if link.expires_at <= now:
            return None, "expired", case.language
        try:
            text = await config[appkeys.KEYS].decrypt_text(
                session,
                case.id,
                message.body_enc,
                table=MESSAGE_TABLE,
                row_id=message.id,
                field=BODY,
            )
        except KeyDestroyed:  # the case's data was erased after its retention period
            return None, "expired", case.language
        worker = ""
        if message.caseworker_id is not None:
            row = await session.get(Caseworker, message.caseworker_id)
            worker = first_name(row.display_name) if row is not None else ""
        if link.opened_at is None:
            link.opened_at = now
    return Opened(case.language, text, worker, message.created_at, link.expires_at), "", language


async def page(request: web.Request) -> web.Response:
    """``GET /s/{token}``: the child reads a secure-link message (no script, no cache)."""
    now = utcnow()
    found, problem, language = await open_link(request, request.match_info["token"], now)
    texts = request.config_dict[appkeys.TEXTS]
    settings = request.config_dict[appkeys.SETTINGS]
    t = texts.section(language, "securelink")
    body = _PAGE.render(
        lang=language,
        t=t,
        emergency=texts.get(language, "webchat.emergency"),
        quick_exit=texts.get(language, "webchat.quick_exit"),
        quick_exit_url=settings.quick_exit_url,
        found=found,
        problem=problem,
        heading=(
            t["heading_named"].format(caseworker=found.caseworker)
            if found is not None and found.caseworker
            else t["heading"]
        ),
        sent=_local(found.sent_at) if found else "",
        until=_local(found.expires_at) if found else "",
    )
    status = {"": 200, "expired": 410, "invalid": 404}[problem]
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'none'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    # The child's words and the caseworker's must not linger in caches, referrers or indexes.
    response.headers["Cache-Control"] = "no-store, max-age=0"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _local(moment: dt.datetime) -> str:
    return moment.astimezone(LOCAL_ZONE).strftime("%d.%m.%Y %H:%M")


_PAGE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex, nofollow">
<title>{{ t.title }}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/c-static/chat.css">
</head>
<body>
<header class="bar">
  <h1>{{ heading }}</h1>
  <a class="exit" href="{{ quick_exit_url }}" rel="noreferrer">{{ quick_exit }}</a>
</header>
<p class="emergency" role="note">{{ emergency }}</p>
<main>
{% if found %}
  <ol class="lines">
    <li class="line out" dir="auto"><p class="text">{{ found.text }}</p></li>
  </ol>
  <p class="intro">{{ t.sent.format(time=sent) }} {{ t.valid_until.format(time=until) }}</p>
  <p class="intro">{{ t.answer_hint }}</p>
{% elif problem == "expired" %}
  <p class="invalid" id="expired">{{ t.expired }}</p>
{% else %}
  <p class="invalid" id="invalid">{{ t.invalid }}</p>
{% endif %}
</main>
</body>
</html>
"""
)
