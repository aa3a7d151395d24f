"""Live updates inside one process: the inbox and web chat subscribe to topics.

Events carry ids, never message text; subscribers load (and authorise) what they show.
Topics: ``case:<case id>`` for a conversation, ``caseworker:<id>`` for a caseworker's queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

log = logging.getLogger(__name__)
Event = dict[str, Any]


class Hub:
    """In-process publish/subscribe with bounded queues (a slow reader drops, never blocks)."""

    def __init__(self, *, queue_size: int = 1000) -> None:
        self._subscribers: defaultdict[str, set[asyncio.Queue[Event]]] = defaultdict(set)
        self._queue_size = queue_size
        self._published: defaultdict[str, int] = defaultdict(int)

    def generation(self, topic: str) -> int:
        """How many events ``topic`` has had: a read started now has seen all their commits."""
        return self._published.get(topic, 0)

    def publish(self, topic: str, event: Event) -> None:
        self._published[topic] += 1
        for queue in list(self._subscribers.get(topic, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("live update dropped for a slow subscriber on %s", topic.split(":")[0])

    @asynccontextmanager
    async def subscribe(self, topics: Iterable[str]) -> AsyncIterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(self._queue_size)
        names = list(topics)
        for name in names:
            self._subscribers[name].add(queue)
        try:
            yield queue
        finally:
            for name in names:
                subs = self._subscribers.get(name)
                if subs is not None:
                    subs.discard(queue)
                    if not subs:
                        del self._subscribers[name]
