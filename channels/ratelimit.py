"""A small asyncio limiter for a provider's send limits.

Two limits hold at once: a minimum interval between messages to the same key (Telegram: one
message per second per chat) and a global rate (Telegram: about 30 messages per second for the
whole bot). A caller says how long it is willing to wait; if its turn is further away than that,
:meth:`RateLimiter.acquire` raises :class:`~channels.errors.RateLimited` at once instead of
blocking, so one busy conversation never holds up the outbox worker serving the others.

Turns are *reserved* before sleeping: every caller that gets through computes its slot and books
it in one synchronous step (no ``await`` in between), so concurrent callers on one event loop get
distinct slots without a lock, and a caller that is turned away books nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from channels.errors import RateLimited

Clock = Callable[[], float]
"""Seconds on a monotonic scale (``time.monotonic`` in production, a fake in tests)."""
Sleep = Callable[[float], Awaitable[None]]

# Keys whose next slot has passed carry no information; they are dropped once the table grows
# past this size, so a bot that has talked to many chats does not keep them all forever.
_PRUNE_AT = 1024


class RateLimiter:
    """Per-key minimum interval plus a global rate, with an injectable clock.

    Args:
        per_key_interval: Seconds between two messages to the same key.
        global_rate: Messages per second across all keys (spaced evenly, no burst).
        clock: Monotonic time source.
        sleep: How to wait (``asyncio.sleep``); a test passes one that advances its clock.
    """

    def __init__(
        self,
        *,
        per_key_interval: float = 1.0,
        global_rate: float = 30.0,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if per_key_interval < 0 or global_rate <= 0:
            raise ValueError("per_key_interval must be >= 0 and global_rate > 0")
        self.per_key_interval = per_key_interval
        self.global_interval = 1.0 / global_rate
        self._clock = clock
        self._sleep = sleep
        self._next_for_key: dict[str, float] = {}
        self._next_global = float("-inf")
        self._prune_at = _PRUNE_AT

    def wait_needed(self, key: str) -> float:
        """Seconds until ``key`` may send, without booking anything."""
        now = self._clock()
        return self._slot(key, now) - now

    async def acquire(self, key: str, *, max_wait: float) -> None:
        """Wait for ``key``'s turn, or refuse at once if it is more than ``max_wait`` away.

        Args:
            key: What the per-key interval applies to (a chat id).
            max_wait: The longest the caller accepts to wait, in seconds.

        Raises:
            RateLimited: The turn is more than ``max_wait`` seconds away; ``retry_after`` says
                when to come back. Nothing is booked.
        """
        now = self._clock()
        start = self._slot(key, now)
        wait = start - now
        if wait > max_wait:
            raise RateLimited(
                "For mange beskeder på kort tid; beskeden sendes om lidt.",
                retry_after=wait,
                code="local_rate_limit",
            )
        self._next_for_key[key] = start + self.per_key_interval
        self._next_global = start + self.global_interval
        self._prune(now)
        if wait > 0:
            await self._sleep(wait)

    def _slot(self, key: str, now: float) -> float:
        return max(now, self._next_for_key.get(key, now), self._next_global)

    def _prune(self, now: float) -> None:
        if len(self._next_for_key) <= self._prune_at:
            return
        self._next_for_key = {k: t for k, t in self._next_for_key.items() if t > now}
        # Grow the threshold with the live set so pruning stays amortised O(1) per call.
        self._prune_at = max(_PRUNE_AT, 2 * len(self._next_for_key))
