"""Fixtures for end-to-end tests: Stemme as a real process on 127.0.0.1, always stopped."""

from __future__ import annotations

import html
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, async_playwright

from .server import HOST, DemoInfo, DemoTemplate, ExitSite, ServerProcess, rebased

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless Chromium through playwright (nothing downloaded), closed afterwards."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> DemoTemplate:
    """``stemme demo`` once per run (migrations and Argon2 take seconds); tests copy its data."""
    root = tmp_path_factory.mktemp("demo-template")
    server = ServerProcess(root / "data", root / "logs")
    info = server.demo()
    return DemoTemplate(server.data_dir, server.log_dir, info)


class _ExitHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = html.escape(self.path)
        body = f"<!doctype html><title>Vejret</title><h1>Vejret i dag</h1><p>{path}</p>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def exit_site() -> Iterator[ExitSite]:
    httpd = ThreadingHTTPServer((HOST, 0), _ExitHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="exit-site", daemon=True)
    thread.start()
    try:
        yield ExitSite(f"http://{HOST}:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def stemme(
    tmp_path: Path, demo_template: DemoTemplate, exit_site: ExitSite
) -> Iterator[tuple[ServerProcess, DemoInfo]]:
    """``stemme serve`` on a fresh copy of the demo data; stopped (group killed) afterwards."""
    shutil.copytree(demo_template.data_dir, tmp_path / "data")
    server = ServerProcess(tmp_path / "data", tmp_path / "logs", quick_exit_url=exit_site.exit_url)
    try:
        server.start()
        yield server, rebased(demo_template.info, server.base_url)
    finally:
        server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # No keep-alive: a pooled connection to a server we killed must not be reused.
    connector = aiohttp.TCPConnector(force_close=True)
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield session


@pytest.fixture
def artifacts() -> Path:
    """``tests/artifacts/`` (git-ignored): screenshots for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
