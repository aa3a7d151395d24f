"""Browser-facing protections of the inbox: cookies, CSRF tokens, the nonce CSP, Origin checks.

Every inbox response gets a fresh CSP nonce and ``Cache-Control: no-store`` (pages hold case
data; a shared computer's back button must not show them after logout). Static files are
exempt from ``no-store`` because they hold no case data.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from bot.settings import Settings

STATIC_PREFIX = "/inbox/static/"
CSP_NONCE: web.RequestKey[str] = web.RequestKey("inbox_csp_nonce")


TOKEN_BYTES = 32
TOKEN_LENGTH = 43  # characters of url-safe base64 for TOKEN_BYTES


def new_token() -> str:
    """A bearer secret (256 bits) for a session cookie or a CSRF token."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_id(token: str) -> str:
    """What the database keeps instead of a session token: its SHA-256 in hex.

    A plain hash suffices (no key, no salt): the token has 256 bits of entropy, so a leaked
    ``inbox_session`` table cannot be turned back into usable cookies.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison; an absent or empty token never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Cookies:
    """Cookie names and attributes, decided by whether the public URL is https."""

    secure: bool

    @property
    def session(self) -> str:
        # ``__Host-`` pins the cookie to this exact host, Path=/ and Secure. On plain http
        # (the laptop demo) Chromium drops Secure cookies, so a plain name is used there.
        return "__Host-stemme" if self.secure else "stemme_session"

    @property
    def login_csrf(self) -> str:
        return "__Host-stemme-login" if self.secure else "stemme_login"

    def set(self, response: web.StreamResponse, name: str, value: str) -> None:
        response.set_cookie(
            name, value, path="/", secure=self.secure, httponly=True, samesite="Strict"
        )

    def delete(self, response: web.StreamResponse, name: str) -> None:
        response.del_cookie(name, path="/", secure=self.secure, httponly=True, samesite="Strict")


def cookies(settings: Settings) -> Cookies:
    return Cookies(secure=settings.secure_cookies)


def content_security_policy(nonce: str) -> str:
    return (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; "
        "style-src 'self'; "
        "img-src 'self' data:; "
        "connect-src 'self'; "
        "form-action 'self'; "
        "frame-ancestors 'none'; "
        "base-uri 'none'"
    )


def allows_data_images() -> bool:
    """Whether the policy lets a page show ``data:`` images (an inline QR code PNG)."""
    for directive in content_security_policy("n").split(";"):
        name, _, sources = directive.strip().partition(" ")
        if name == "img-src":
            return "data:" in sources.split()
    return False


def csp_nonce(request: web.Request) -> str:
    return request[CSP_NONCE]


@web.middleware
async def inbox_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A per-response nonce for the CSP, and no caching of anything that may hold case data."""
    nonce = secrets.token_urlsafe(18)
    request[CSP_NONCE] = nonce
    try:
        await _readable_form(request)
        response = await handler(request)
    except web.HTTPException as exc:
        # Redirects and errors are responses too; they get the same headers.
        _apply_headers(request, exc, nonce)
        raise
    _apply_headers(request, response, nonce)
    return response


async def _readable_form(request: web.Request) -> None:
    """Read a posted form up front, so a malformed one is a 400 and never a handler's 500.

    aiohttp raises ``ValueError`` for, e.g., ``multipart/form-data`` without a boundary; the
    parsed form is cached on the request, so handlers read it again for free.
    """
    if request.method != "POST" or request.content_type not in _FORM_TYPES:
        return
    try:
        await request.post()
    except ValueError:
        raise web.HTTPBadRequest(text="malformed form") from None


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _apply_headers(request: web.Request, response: web.StreamResponse, nonce: str) -> None:
    if response.prepared:  # a WebSocket: its handshake headers are already sent
        return
    response.headers["Content-Security-Policy"] = content_security_policy(nonce)
    if request.path.startswith(STATIC_PREFIX):
        response.headers["Cache-Control"] = "no-cache"
    else:
        response.headers["Cache-Control"] = "no-store"


def origin_allowed(request: web.Request, settings: Settings) -> bool:
    """Whether a WebSocket handshake's ``Origin`` is ours (cross-site WebSocket hijacking).

    Browsers always send ``Origin`` on a WebSocket handshake, so a missing header means a
    non-browser client, which cannot ride on a victim's cookie; it is allowed. A present header
    must be the configured public origin or the origin the request itself was addressed to
    (``localhost`` vs ``127.0.0.1`` in the demo); a foreign page never has either.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    allowed = {_origin(settings.public_base_url), f"{request.scheme}://{request.host}".lower()}
    return origin.lower() in allowed


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
