"""Scenario 5: the caseworker's inbox — the queue with many cases, a long conversation.

Seeds one caseworker with ``cases`` cases (each with a message from the child) and one
conversation of ``messages`` messages, through the router; then logs in over HTTP and times
``GET /inbox/``, ``GET /inbox/cases/<id>`` (the newest messages; the page writes its audit
event in the same request) and the whole conversation (``?from=1``, every message drawn).
"""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import servers
from bench.seed import PASSWORD, WORKER, Seeder
from bot.inbox import totp

ROUNDS = 15
WHOLE_ROUNDS = 5  # every message of the long conversation: slow by design, fewer rounds
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SECRET = re.compile(r'id="totp-secret"[^>]*>([A-Z2-7 ]+)<')
SETUP = "/inbox/login/setup"


async def run(cases: int, messages: int, work: Path) -> dict[str, Any]:
    port = servers.free_port()
    data = Path(tempfile.mkdtemp(prefix="data-", dir=work))
    env = servers.stemme_env(data, port)
    seeder = await Seeder.open(servers.settings_of(env))
    started = time.perf_counter()
    try:
        children = [await seeder.child(n, sms=False) for n in range(cases)]
        for child in children:
            await seeder.child_writes(child, "Hej, kan vi tale sammen i morgen?")
        long = children[0]
        for n in range(messages - 1):
            await seeder.child_writes(long, f"Besked nummer {n} i en lang samtale.")
    finally:
        await seeder.close()
    seed_s = time.perf_counter() - started
    base = f"http://127.0.0.1:{port}"
    async with (
        servers.stemme(env, work / "stemme-inbox.log"),
        aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as web,
    ):
        async with web.get("/inbox/login") as page:
            token = CSRF.search(await page.text())
        assert token is not None
        form = {"username": WORKER, "password": PASSWORD, "csrf_token": token.group(1)}
        async with web.post("/inbox/login", data=form, allow_redirects=False) as response:
            assert response.status == 303, response.status
            assert response.headers["Location"] == SETUP, response.headers["Location"]
        # A new account: TOTP is set up on the first login, from the secret the page shows.
        async with web.get(SETUP) as page:
            text = await page.text()
        token, secret = CSRF.search(text), SECRET.search(text)
        assert token is not None and secret is not None
        code = totp.code_at(secret.group(1).replace(" ", ""), totp.current_step())
        form = {"csrf_token": token.group(1), "code": code}
        async with web.post(SETUP, data=form, allow_redirects=False) as response:
            assert response.status == 303, response.status
        queue = await _time(web, "/inbox/")
        conversation = await _time(web, f"/inbox/cases/{long.case_id}")
        whole = await _time(web, f"/inbox/cases/{long.case_id}?from=1", rounds=WHOLE_ROUNDS)
    return {
        "cases": cases,
        "messages_in_conversation": messages,
        "seed_s": round(seed_s, 1),
        "queue_page": queue,
        "conversation_page": conversation,
        "conversation_whole_page": whole,
    }


async def _time(web: aiohttp.ClientSession, path: str, *, rounds: int = ROUNDS) -> dict[str, Any]:
    samples, size = [], 0
    for _ in range(rounds + 1):
        started = time.perf_counter()
        async with web.get(path) as response:
            assert response.status == 200, (path, response.status)
            size = len(await response.read())
        samples.append(time.perf_counter() - started)
    samples = samples[1:]  # the first warms caches
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 1),
        "p90_ms": round(statistics.quantiles(samples, n=10, method="inclusive")[-1] * 1000, 1),
        "max_ms": round(max(samples) * 1000, 1),
        "bytes": size,
    }
