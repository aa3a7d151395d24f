"""The send limiter on a fake clock: per-chat interval, global rate, wait or refuse."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels.errors import RateLimited
from channels.ratelimit import RateLimiter


class FakeClock:
    """A monotonic clock that only moves when someone sleeps (or the test advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def telegram_limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(per_key_interval=1.0, global_rate=30.0, clock=clock, sleep=clock.sleep)


async def test_first_message_to_a_chat_goes_at_once() -> None:
    clock = FakeClock()
    await telegram_limiter(clock).acquire("chat-a", max_wait=0)
    assert clock.slept == []


async def test_second_message_to_the_same_chat_waits_up_to_max_wait() -> None:
    clock = FakeClock()
    limiter = telegram_limiter(clock)
    await limiter.acquire("chat-a", max_wait=2)
    await limiter.acquire("chat-a", max_wait=2)
    assert clock.slept == [pytest.approx(1.0)]


async def test_a_longer_wait_is_refused_at_once_and_other_chats_are_not_held_up() -> None:
    clock = FakeClock()
    limiter = telegram_limiter(clock)
    await limiter.acquire("chat-a", max_wait=0.5)
    with pytest.raises(RateLimited) as refused:
        await limiter.acquire("chat-a", max_wait=0.5)
    assert refused.value.retry_after == pytest.approx(1.0)
    assert refused.value.code == "local_rate_limit"
    assert clock.slept == []  # refused without blocking
    await limiter.acquire("chat-b", max_wait=0.5)
    # Another chat only waits for the global spacing (1/30 s), not for chat-a's second.
    assert clock.slept == [pytest.approx(1 / 30)]


async def test_a_refusal_books_no_slot() -> None:
    clock = FakeClock()
    limiter = telegram_limiter(clock)
    await limiter.acquire("chat-a", max_wait=0)
    for _ in range(3):
        with pytest.raises(RateLimited):
            await limiter.acquire("chat-a", max_wait=0)
    clock.now += 1.0
    await limiter.acquire("chat-a", max_wait=0)  # not pushed back by the refused attempts
    assert limiter.wait_needed("chat-a") == pytest.approx(1.0)


async def test_concurrent_callers_get_distinct_slots() -> None:
    clock = FakeClock()
    waits: list[float] = []

    async def frozen_sleep(seconds: float) -> None:
        # Time stands still while all three are suspended, as when they really run together.
        waits.append(seconds)
        await asyncio.sleep(0)

    limiter = RateLimiter(clock=clock, sleep=frozen_sleep)
    await asyncio.gather(*(limiter.acquire("chat-a", max_wait=5) for _ in range(3)))
    assert sorted(waits) == [pytest.approx(1.0), pytest.approx(2.0)]


async def test_global_rate_spreads_many_chats_over_time() -> None:
    clock = FakeClock()
    limiter = telegram_limiter(clock)
    start = clock.now
    times = []
    for n in range(90):
        await limiter.acquire(f"chat-{n}", max_wait=10)
        times.append(clock.now - start)
    # At most 30 in any one-second window (less a hair for float rounding).
    assert max(sum(1 for t in times if w <= t < w + 1 - 1e-6) for w in times) <= 30
    assert times[-1] == pytest.approx(89 / 30)


async def test_old_chats_are_forgotten() -> None:
    clock = FakeClock()
    limiter = RateLimiter(global_rate=1e9, clock=clock, sleep=clock.sleep)
    for n in range(3000):
        await limiter.acquire(f"chat-{n}", max_wait=0.001)
    clock.now += 2
    for n in range(3000):
        await limiter.acquire(f"later-{n}", max_wait=0.001)
    assert limiter.wait_needed("chat-1") == pytest.approx(0, abs=1e-6)  # expired: free to send
    assert limiter.wait_needed("later-1") == pytest.approx(1.0, abs=1e-3)
    # The table is bounded by the chats still inside their interval, not by all chats ever.
    assert "chat-1" not in limiter._next_for_key
    assert len(limiter._next_for_key) <= 3000


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(global_rate=0)
    with pytest.raises(ValueError):
        RateLimiter(per_key_interval=-1)


@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.floats(min_value=0, max_value=1.5)),
        min_size=1,
        max_size=40,
    )
)
def test_granted_slots_respect_both_limits(requests: list[tuple[str, float]]) -> None:
    clock = FakeClock()
    limiter = telegram_limiter(clock)
    granted: list[tuple[str, float]] = []

    async def run() -> None:
        for key, gap in requests:
            clock.now += gap
            await limiter.acquire(key, max_wait=float("inf"))
            granted.append((key, clock.now))

    asyncio.run(run())
    eps = 1e-9
    for i, (key, at) in enumerate(granted):
        for other_key, other_at in granted[i + 1 :]:
            assert other_at - at >= 1 / 30 - eps
            if other_key == key:
                assert other_at - at >= 1.0 - eps
