"""Where participation entries are filed. The JSONL file sink is the default.

A sink's ``deliver`` returns only when the entry is durably filed; raising means "try again".
Delivery is at least once, so a receiver de-duplicates on the entry ``id``.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, Protocol


class SinkError(Exception):
    """The receiver did not confirm filing; the outbox tries again later.

    ``reason`` is safe to store and show: an HTTP status or an error class, never entry content.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Sink(Protocol):
    name: str

    async def deliver(self, entry: dict[str, Any]) -> None: ...

    async def aclose(self) -> None: ...


class JsonlSink:
    """Appends one JSON line per entry to ``participation-YYYY-MM-DD.jsonl``, then fsyncs."""

    name = "jsonl"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = asyncio.Lock()

    def path_for(self, entry: dict[str, Any]) -> Path:
        day = str(entry["occurred_at"])[:10]
        return self.directory / f"participation-{day}.jsonl"

    async def deliver(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
        async with self._lock:
            await asyncio.to_thread(self._append, self.path_for(entry), line.encode())

    def _append(self, path: Path, data: bytes) -> None:
        new = not path.exists()
        if new:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            # The new file's directory entry must survive a crash too.
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    async def aclose(self) -> None:
        return None


def read_entries(directory: Path) -> list[dict[str, Any]]:
    """Every entry in a JSONL sink directory, in file then line order (for tests and tools)."""
    entries: list[dict[str, Any]] = []
    for path in sorted(directory.glob("participation-*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            entries.extend(json.loads(line) for line in handle if line.strip())
    return entries
