"""Background tasks through one helper that keeps a reference, names the task and logs failures."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)
_running: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
    """Start ``coro`` in the background; keep it alive until done and log if it fails."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _running.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        # Only the task name, error type and frames: exception text may quote a child's words.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        log.error("background task %s failed: %s\n%s", task.get_name(), type(exc).__name__, frames)
