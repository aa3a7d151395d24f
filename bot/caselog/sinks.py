"""Where participation entries are filed. The JSONL file sink is the default.

A sink's ``deliver`` returns only when the entry is durably filed; raising means "try again".
Delivery is at least once, so a receiver de-duplicates on the entry ``id``. The outbox hands a
sink a case's entries in order through :func:`deliver_many`: a sink with its own
``deliver_many`` files them together (the JSONL sink: one write and one fsync), any other gets
them one by one.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class SinkError(Exception):
    """The receiver did not confirm filing; the outbox tries again later.

    ``reason`` is safe to store and show: an HTTP status or an error class, never entry content.

    ``filed`` counts the entries at the start of a batch that were filed before the failure.
    """

    def __init__(self, reason: str, *, filed: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.filed = filed


class Sink(Protocol):
    name: str

    async def deliver(self, entry: dict[str, Any]) -> None: ...

    async def aclose(self) -> None: ...


async def deliver_many(sink: Sink, entries: Sequence[dict[str, Any]]) -> None:
    """File ``entries`` (one case's, in order) with ``sink``; all or a leading part of them.

    Raises:
        SinkError: Not all were filed; ``filed`` says how many at the start were. Any other
            error of the sink is turned into one, its reason the error's class name.
    """
    batch = getattr(sink, "deliver_many", None)
    if batch is not None:
        try:
            await batch(entries)
        except SinkError:
            raise
        except Exception as exc:
            raise SinkError(type(exc).__name__) from exc
        return
    await one_by_one(sink.deliver, entries)


async def one_by_one(
    deliver: Callable[[dict[str, Any]], Awaitable[None]], entries: Sequence[dict[str, Any]]
) -> None:
    """Hand ``entries`` to ``deliver`` in order; a failure says how many were filed before it."""
    for filed, entry in enumerate(entries):
        try:
            await deliver(entry)
        except SinkError as exc:
            raise SinkError(exc.reason, filed=filed) from exc
        except Exception as exc:
            raise SinkError(type(exc).__name__, filed=filed) from exc


@dataclass(slots=True)
class _Batch:
    """One caller's lines waiting for the file writer, and what became of them."""

    paths: list[Path]
    lines: list[bytes]
    done: bool = False
    error: SinkError | None = None


class JsonlSink:
    """Appends one JSON line per entry to ``participation-YYYY-MM-DD.jsonl``, then fsyncs.

    Batches of concurrent callers (the outbox files many cases at once) share one ``write`` and
    one ``fsync`` per file: whoever holds the lock writes everything queued so far, and the
    others find their lines written (group commit, as for the database). Each caller returns
    only once its own lines are on disk.
    """

    name = "jsonl"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = asyncio.Lock()
        self._queued: list[_Batch] = []

    def path_for(self, entry: dict[str, Any]) -> Path:
        day = str(entry["occurred_at"])[:10]
        return self.directory / f"participation-{day}.jsonl"

    async def deliver(self, entry: dict[str, Any]) -> None:
        await self._write([entry])

    async def deliver_many(self, entries: Sequence[dict[str, Any]]) -> None:
        """File ``entries`` in order with one write and one fsync per day file.

        A subclass that overrides :meth:`deliver` (to wrap or refuse it) keeps having every
        entry go through it.

        Raises:
            SinkError: A file could not be written; ``filed`` counts the entries before the
                first one in a file that was not written.
        """
        if type(self).deliver is not JsonlSink.deliver:
            await one_by_one(self.deliver, entries)
            return
        await self._write(entries)

    async def _write(self, entries: Sequence[dict[str, Any]]) -> None:
        batch = _Batch(
            paths=[self.path_for(entry) for entry in entries],
            lines=[
                (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode()
                for entry in entries
            ],
        )
        self._queued.append(batch)
        async with self._lock:
            if not batch.done:  # nobody wrote it while we waited: write all that is queued
                taken, self._queued = self._queued, []
                try:
                    await asyncio.to_thread(self._write_batches, taken)
                except BaseException:
                    # Cancelled: what the thread did not finish goes back for the next writer.
                    self._queued[:0] = [b for b in taken if not b.done]
                    raise
        if batch.error is not None:
            raise batch.error

    def _write_batches(self, batches: list[_Batch]) -> None:
        by_file: dict[Path, list[bytes]] = {}
        for batch in batches:
            for path, line in zip(batch.paths, batch.lines, strict=True):
                by_file.setdefault(path, []).append(line)
        failed: dict[Path, str] = {}
        for path, lines in by_file.items():
            try:
                self._append(path, b"".join(lines))
            except OSError as exc:
                failed[path] = type(exc).__name__
        for batch in batches:
            batch.done = True
            for filed, path in enumerate(batch.paths):
                if path in failed:
                    # The entries before the first one whose file was not written are filed
                    # (at least once: a retry may repeat some after it, in another file).
                    batch.error = SinkError(failed[path], filed=filed)
                    break

    def _append(self, path: Path, data: bytes) -> None:
        new = not path.exists()
        if new:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:  # a regular file takes it all at once; a full disk raises
                view = view[os.write(fd, view) :]
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
