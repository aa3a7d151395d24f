"""Login throttling: after 5 failures for a username within 15 minutes, refuse it for 15 minutes.

Foundation version: kept in this process's memory, so it is per process and forgotten on a
restart. A later issue moves it into the database so several app processes share it.
Keys are the case-folded username, whether or not the account exists, so the lock-out itself
says nothing about which usernames are real.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60.0
LOCKOUT_SECONDS = 15 * 60.0
# Bounds memory under a spray of made-up usernames; stale entries are dropped first.
MAX_TRACKED = 10_000


@dataclass(slots=True)
class _Record:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class LoginThrottle:
    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW_SECONDS,
        lockout: float = LOCKOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self._clock = clock
        self._records: dict[str, _Record] = {}

    def is_locked(self, username: str) -> bool:
        record = self._records.get(_key(username))
        return record is not None and record.locked_until > self._clock()

    def failed(self, username: str) -> None:
        now = self._clock()
        if len(self._records) >= MAX_TRACKED:
            self._prune(now)
        record = self._records.setdefault(_key(username), _Record())
        record.failures = [t for t in record.failures if now - t < self.window]
        record.failures.append(now)
        if len(record.failures) >= self.max_failures:
            record.locked_until = now + self.lockout
            record.failures.clear()

    def succeeded(self, username: str) -> None:
        self._records.pop(_key(username), None)

    def _prune(self, now: float) -> None:
        stale = [
            key
            for key, record in self._records.items()
            if record.locked_until <= now and all(now - t >= self.window for t in record.failures)
        ]
        for key in stale:
            del self._records[key]
        if len(self._records) >= MAX_TRACKED:
            # Still full of live entries: forget the oldest half rather than grow without bound.
            for key in list(self._records)[: MAX_TRACKED // 2]:
                del self._records[key]


def _key(username: str) -> str:
    return username.strip().casefold()
