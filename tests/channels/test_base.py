from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from channels.base import DeliveryState

S = DeliveryState


@given(st.lists(st.sampled_from(list(S)), max_size=12))
def test_delivery_state_never_moves_backwards(reports: list[DeliveryState]) -> None:
    state = S.QUEUED
    for report in reports:
        after = state.advance(report)
        if state.final:
            assert after == state  # final states are final
        assert after.rank >= state.rank
        state = after


def test_delivery_state_examples() -> None:
    assert S.QUEUED.advance(S.DELIVERED) == S.DELIVERED
    assert S.DELIVERED.advance(S.SENT) == S.DELIVERED  # late "sent" report ignored
    assert S.SENT.advance(S.FAILED) == S.FAILED
    assert S.DELIVERED.advance(S.UNDELIVERED) == S.DELIVERED  # stale failure ignored
    assert S.READ.advance(S.FAILED) == S.READ
    assert S.FAILED.advance(S.DELIVERED) == S.FAILED
