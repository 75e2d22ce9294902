"""Hostile input, round two (issue 19): the engine side. Each case is refused in one line naming the input and the
fix, or handled; never a traceback, a hang, a lost model or a silent wrong number."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.hostile


# ------------------------------------------------------------------------------------------- F15 seed lists

def _best_of(repeats: int, call) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def test_seed_lists_parse_in_linear_time():
    """Ten times the seeds must cost about ten times the time (a list scan per seed made it a hundred)."""
    from busadv.training import parse_seed_list

    small = ",".join(f"{k * 10_000}-{k * 10_000 + 199}" for k in range(10))     # 2,000 seeds
    large = ",".join(f"{k * 10_000}-{k * 10_000 + 1_999}" for k in range(10))   # 20,000 seeds
    assert len(parse_seed_list(large)) == 20_000
    ratio = _best_of(3, lambda: parse_seed_list(large)) / _best_of(3, lambda: parse_seed_list(small))
    assert ratio < 35, f"10x the seeds took {ratio:.0f}x the time: quadratic"


def test_a_million_wide_seed_range_is_refused_at_once_saying_the_limit():
    from busadv.training import parse_seed_list

    with pytest.raises(ValueError) as info:
        parse_seed_list("0-1000000")
    message = str(info.value)
    assert message.startswith("seeds: '0-1000000' ") and "1,000,001 seeds" in message and "10,001" in message


def test_a_reversed_seed_range_says_so_and_how_to_write_it():
    from busadv.training import parse_seed_list

    with pytest.raises(ValueError) as info:
        parse_seed_list("0,9-3", "seeds")
    message = str(info.value)
    assert message.startswith("seeds: '9-3' ") and "backwards" in message and "3-9" in message
    assert "not a whole number" not in message
