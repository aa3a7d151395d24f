"""The queue's caches forget what nobody used for a while (a shredded child's name included)."""

from __future__ import annotations

from bot.inbox.queue import NameCache
from bot.inbox.recent import RecentCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_nobody_asks_for_leaves_after_the_idle_time() -> None:
    clock = Clock()
    names = NameCache(idle=60, clock=clock)
    names.put(b"shredded-case-ciphertext", "Testbarn (fiktiv)")
    names.put(b"live-case-ciphertext", "Andet Barn (fiktiv)")
    clock.now += 50
    assert names.get(b"live-case-ciphertext") == "Andet Barn (fiktiv)"  # in use: kept
    clock.now += 20  # the first one idle for 70 s, the second for 20 s
    assert names.get(b"live-case-ciphertext") == "Andet Barn (fiktiv)"
    assert len(names) == 1  # the idle one is gone from memory, not merely hidden
    assert names.get(b"shredded-case-ciphertext") is None


def test_the_least_recently_used_entry_goes_first_beyond_the_size() -> None:
    cache: RecentCache[str, int] = RecentCache(2, clock=Clock())
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)
