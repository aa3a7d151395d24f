"""A bounded memory-only cache whose entries also leave once nobody has used them for a while.

The queue keeps decrypted children's names and rendered rows so a reload decrypts and draws
only what changed. Such an entry is never *shown* stale (its key is the ciphertext or what the
row shows, so a renamed, erased or shredded child has a new key or none), but an entry nobody
asks for again would otherwise stay in the server's memory until enough newer ones pushed it
out. Here it also goes once it has not been used for ``idle`` seconds: after a case is
crypto-shredded, no decrypted copy of its child's name outlives that in a running server.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

IDLE_SECONDS = 15 * 60.0


class RecentCache(Generic[K, V]):
    """Least recently used entries go first: beyond ``size``, or when idle for ``idle`` s."""

    def __init__(
        self,
        size: int = 8192,
        *,
        idle: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._size = size
        self._idle = idle
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        now = self._clock()
        self._expire(now)
        found = self._entries.get(key)
        if found is None:
            return None
        self._entries[key] = (found[0], now)
        self._entries.move_to_end(key)
        return found[0]

    def put(self, key: K, value: V) -> None:
        now = self._clock()
        self._entries[key] = (value, now)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        self._expire(now)

    def _expire(self, now: float) -> None:
        # In use order, so the idle ones are at the front: stop at the first recent one.
        entries = self._entries
        while entries:
            key, (_, used) = next(iter(entries.items()))
            if now - used < self._idle:
                return
            del entries[key]
