"""Shared hypothesis strategies."""

from __future__ import annotations

from hypothesis import strategies as st

from taskyard.domain.retry import Jitter, RetryPolicy

jitters = st.sampled_from(list(Jitter))


@st.composite
def retry_policies(draw: st.DrawFn) -> RetryPolicy:
    base_s = draw(st.floats(min_value=0.001, max_value=3600, allow_nan=False))
    factor = draw(st.floats(min_value=1.0, max_value=10.0, allow_nan=False))
    max_s = draw(st.floats(min_value=base_s, max_value=base_s * 1e6, allow_nan=False))
    return RetryPolicy(base_s=base_s, factor=factor, max_s=max_s, jitter=draw(jitters))


attempt_numbers = st.integers(min_value=1, max_value=5000)
priorities = st.integers(min_value=-100, max_value=100)
queue_names = st.sampled_from(["default", "mail", "reports"])
