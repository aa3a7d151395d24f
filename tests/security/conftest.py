"""The stack for the webhook security tests: as served, with a short body deadline."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.flows.conftest import Stack, flow_settings, stop_stack
from tests.ops.stack import serve, write_key_file

BODY_TIMEOUT = 0.5  # seconds; STEMME_REQUEST_BODY_TIMEOUT (10 by default)


async def served(tmp_path: Path, db_url: str) -> Stack:
    settings = flow_settings(tmp_path, db_url, request_body_timeout=BODY_TIMEOUT)
    write_key_file(settings)
    return await serve(settings)


@pytest.fixture
async def stack(tmp_path: Path, db_url: str) -> AsyncIterator[Stack]:
    """On SQLite and on PostgreSQL (storage matters: de-duplication, monotonic states)."""
    running = await served(tmp_path, db_url)
    try:
        yield running
    finally:
        await stop_stack(running)


@pytest.fixture
async def sqlite_stack(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Stack]:
    """On SQLite only, for what happens before anything is stored (sizes, parsing, timeouts)."""
    shutil.copy(sqlite_template, tmp_path / "stemme.db")
    running = await served(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'stemme.db'}")
    try:
        yield running
    finally:
        await stop_stack(running)
