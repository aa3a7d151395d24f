"""The caseworker's side over plain HTTP: log in (both factors), find a case, reply by form."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import aiohttp

from bot.inbox import totp

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_SECRET = re.compile(r'id="totp-secret"[^>]*>([A-Z2-7 ]+)<')
CODE_PATH = "/inbox/login/code"
SETUP_PATH = "/inbox/login/setup"
_CASE_ROW = re.compile(
    r'<a href="/inbox/cases/(?P<case_id>[^"]+)"[^>]*>.*?</a>.*?<td>(?P<case_ref>[^<]+)</td>',
    re.S,
)


def csrf_token(page: str) -> str:
    match = _CSRF.search(page)
    assert match is not None, f"no CSRF token on the page:\n{page[:2000]}"
    return html.unescape(match[1])


@dataclass
class InboxClient:
    """A logged-in browser-like HTTP client (its own cookie jar; cookies on 127.0.0.1 too)."""

    session: aiohttp.ClientSession
    base_url: str

    @classmethod
    def new(cls, base_url: str) -> InboxClient:
        session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # unsafe: accept cookies for an IP host
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=15),
        )
        return cls(session, base_url)

    async def close(self) -> None:
        await self.session.close()

    async def login(self, username: str, password: str, *, totp_secret: str) -> None:
        """Password, then the TOTP code (or, on a first login, setup from the page's secret)."""
        async with self.session.get(f"{self.base_url}/inbox/login") as response:
            assert response.status == 200
            token = csrf_token(await response.text())
        form = {"csrf_token": token, "username": username, "password": password}
        async with self.session.post(
            f"{self.base_url}/inbox/login", data=form, allow_redirects=False
        ) as response:
            assert response.status == 303, await response.text()
            step = response.headers["Location"]
        assert step in (CODE_PATH, SETUP_PATH), step
        async with self.session.get(f"{self.base_url}{step}") as response:
            assert response.status == 200
            page = await response.text()
        if step == SETUP_PATH:
            match = _SECRET.search(page)
            assert match is not None, page[:2000]
            totp_secret = match[1].replace(" ", "")
        now = totp.current_step()
        # This step's code, or the next one's if this one was used by an earlier login.
        for code in (totp.code_at(totp_secret, now), totp.code_at(totp_secret, now + 1)):
            form = {"csrf_token": csrf_token(page), "code": code}
            async with self.session.post(
                f"{self.base_url}{step}", data=form, allow_redirects=False
            ) as response:
                if response.status == 303:
                    assert response.headers["Location"] == "/inbox/"
                    return
                assert response.status == 401, await response.text()
                page = await response.text()
        raise AssertionError(f"no TOTP code was accepted:\n{page[:2000]}")

    async def case_id(self, case_ref: str) -> str:
        async with self.session.get(f"{self.base_url}/inbox/") as response:
            assert response.status == 200
            page = await response.text()
        for match in _CASE_ROW.finditer(page):
            if html.unescape(match["case_ref"]).strip() == case_ref:
                return html.unescape(match["case_id"])
        raise AssertionError(f"case {case_ref} is not in the queue:\n{page}")

    async def conversation(self, case_id: str) -> str:
        async with self.session.get(f"{self.base_url}/inbox/cases/{case_id}") as response:
            assert response.status == 200
            return await response.text()

    async def reply(self, case_id: str, text: str) -> None:
        token = csrf_token(await self.conversation(case_id))
        async with self.session.post(
            f"{self.base_url}/inbox/cases/{case_id}/reply",
            data={"csrf_token": token, "text": text},
            allow_redirects=False,
        ) as response:
            assert response.status == 303, await response.text()
