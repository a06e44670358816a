"""The bounded histogram: bucket precision and window percentiles from two snapshots."""

from __future__ import annotations

import random

from loopprof._histogram import N_BUCKETS, Histogram, bucket_index, bucket_value_us, window_percentiles_ms


def test_bucket_error_is_below_one_percent_and_indices_are_bounded() -> None:
    for v in [0, 1, 127, 128, 255, 256, 999, 1000, 50_000, 123_456, 10**7, 2**40]:
        i = bucket_index(v)
        assert 0 <= i < N_BUCKETS
        if v < 2**32:
            assert abs(bucket_value_us(i) - v) <= max(0.5, 0.008 * v)


def test_window_percentiles_diff_two_snapshots() -> None:
    h = Histogram()
    for _ in range(1000):
        h.record_us(100_000)  # 100 ms before the window
    first = h.snapshot()
    rng = random.Random(1)
    values = sorted(rng.uniform(1, 10) for _ in range(1000))  # ms, in the window
    for v in values:
        h.record_us(int(v * 1000))
    (p50, p99), mx, n = window_percentiles_ms(first, h.snapshot(), (0.5, 0.99))
    assert n == 1000
    assert abs(p50 - values[499]) < 0.1
    assert abs(p99 - values[989]) < 0.1
    assert mx is not None and abs(mx - values[-1]) < 0.1  # not the 100 ms from before the window


def test_empty_window_is_not_measured() -> None:
    h = Histogram()
    h.record_us(5)
    s = h.snapshot()
    assert window_percentiles_ms(s, s) == ([None, None, None], None, 0)
    assert window_percentiles_ms(None, None)[2] == 0
