"""The PDF sink: printable journal notes in a directory, for filing in the ESDH system.

Two layouts (``STEMME_CASELOG_PDF_PER``):

- ``entry``: one note per entry, ``notat-<case>-<date>-nr<seq>.pdf``;
- ``day``: one note per case and day (Europe/Copenhagen), ``notat-<case>-<date>.pdf``, rendered
  again with every entry of that day each time one arrives. The day's entries are kept next to
  it in ``.notat-<case>-<date>.json`` so the note can be rebuilt; it holds what the note shows
  (no verbatim text unless the policy allows it).

Both are idempotent: the same entry again gives the same file (in day mode the entry replaces
its earlier copy by id). Every file is written 0600 to a temporary name, fsynced and renamed
into place, and the directory is fsynced, so a reader never sees half a file and a crash loses
nothing that was confirmed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bot.caselog.pdf_render import local_time, render
from bot.caselog.sinks import SinkError
from prompts.instruments import Instrument

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def case_slug(case_ref: str) -> str:
    """A case reference made safe for a file name; a hash is added when characters were lost."""
    slug = _SAFE.sub("_", case_ref)[:60].lstrip(".") or "sag"
    if slug != case_ref:
        slug += "-" + hashlib.sha256(case_ref.encode()).hexdigest()[:8]
    return slug


class PdfSink:
    """Writes a journal note per entry, or per case and day, into ``directory``."""

    name = "pdf"

    def __init__(
        self,
        directory: Path,
        *,
        per_day: bool = False,
        verbatim: bool = False,
        instruments: Mapping[str, Instrument] | None = None,
    ) -> None:
        """Set up the sink; the directory is made (0700) on the first entry.

        Args:
            directory: Where the notes go.
            per_day: One note per case and day instead of one per entry.
            verbatim: Whether the child's words may be printed (the municipality's policy).
            instruments: Loaded instruments, to print the check-in questions' wording.
        """
        self.directory = directory
        self.per_day = per_day
        self._verbatim = verbatim
        self._instruments = instruments or {}
        self._lock = asyncio.Lock()

    def path_for(self, entry: Mapping[str, Any]) -> Path:
        """The note's file for ``entry``."""
        stem = f"notat-{case_slug(str(entry['case_ref']))}-{local_time(entry).date().isoformat()}"
        if not self.per_day:
            stem += f"-nr{int(entry['seq']):05d}"
        return self.directory / f"{stem}.pdf"

    async def deliver(self, entry: dict[str, Any]) -> None:
        kept = dict(entry)
        if not self._verbatim:
            kept.pop("text", None)  # not even in the day's side file
        async with self._lock:
            try:
                await asyncio.to_thread(self._write, kept)
            except Exception as exc:  # a disk or rendering failure: try again later
                raise SinkError(f"pdf: {type(exc).__name__}") from None

    def _write(self, entry: dict[str, Any]) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.path_for(entry)
        entries = [entry]
        if self.per_day:
            side = target.with_name(f".{target.stem}.json")
            day = _read_side(side)
            day[str(entry["id"])] = entry
            _write_atomic(side, json.dumps(day, ensure_ascii=False, sort_keys=True).encode())
            entries = list(day.values())
        pdf = render(entries, instruments=self._instruments, verbatim=self._verbatim)
        _write_atomic(target, pdf)

    async def aclose(self) -> None:
        return None


def _read_side(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise OSError(f"{path.name} is not a day file")  # retried; an operator must look
    return data


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once: temp file 0600, fsync, rename, fsync the dir."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
