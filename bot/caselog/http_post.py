"""What the HTTP sinks share: one client session, the TLS and timeout settings, and the rule
that only a 2xx answer counts as filed.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp

from bot.caselog.sinks import SinkError

USER_AGENT = "Stemme-caselog/1"


class HttpPoster:
    """POSTs a body to one URL; raises :class:`SinkError` unless the answer is a 2xx.

    The error's reason names the sink and an HTTP status or an error class, never content.
    Redirects are not followed: a receiver that moved must be reconfigured, not guessed.
    """

    def __init__(
        self,
        sink: str,
        url: str,
        *,
        timeout: float,
        ca_file: Path | None,
        session: aiohttp.ClientSession | None,
    ) -> None:
        self.sink = sink
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else None
        )
        self._session = session
        self._own_session = session is None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def post(self, body: bytes, headers: dict[str, str]) -> None:
        try:
            async with self._client().post(
                self.url,
                data=body,
                headers={**headers, "User-Agent": USER_AGENT},
                timeout=self._timeout,
                ssl=self._ssl if self._ssl is not None else True,
                allow_redirects=False,
            ) as response:
                if not 200 <= response.status < 300:
                    raise SinkError(f"{self.sink}: HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SinkError(f"{self.sink}: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
