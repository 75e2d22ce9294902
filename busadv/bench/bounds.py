"""Bounded costs against hostile sizes (issue 19): how memory and time grow when the input grows tenfold.

A linear cost grows about 10x for 10x the input, a quadratic one about 100x; each row's ratio is that
growth, measured in this one run, with a target of at most 20x. The absolute figures (MB, seconds) are in
the notes, beside the issue's goals (10,000 images' near-duplicate grouping < 500 MB and < 60 s on 2 cores).
"""

from __future__ import annotations

import functools
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from busadv.bench.common import MB, Row
from busadv.bench.context import Bench

SECTION = "bounds"
GROWTH_TARGET = "<= 20"


def _peak_and_seconds(fn: Callable[[], Any]) -> tuple[float, float]:
    """Peak traced Python/numpy memory (MB) and wall seconds of one call."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        fn()
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] / MB
    finally:
        tracemalloc.stop()
    return peak, seconds


def near_duplicate_rows(small: int = 1_000, large: int = 10_000) -> list[Row]:
    """near_groups on `large` random 64-bit hashes against `small`: peak memory growth (the old N x N x 64 bytes
    allocation grew 100x, 6.1 GB at 10,000)."""
    from busadv.data.duplicates import near_groups

    rng = np.random.default_rng(0)
    figures = {}
    for n in (small, large):
        hashes = torch.from_numpy(rng.integers(0, 2**63, n, dtype=np.int64))
        figures[n] = _peak_and_seconds(functools.partial(near_groups, hashes))
    (peak_s, _), (peak_l, seconds_l) = figures[small], figures[large]
    quadratic_mb = large * large * 64 / MB
    return [Row(SECTION, f"near-duplicate grouping, {large:,} vs {small:,} hashes: peak memory", busadv=peak_l,
                reference=peak_s, unit="MB", ratio=peak_l / max(peak_s, 1e-9), target=GROWTH_TARGET,
                note=f"{large:,} hashes: {peak_l:.0f} MB peak (goal < 500), {seconds_l:.2f} s (goal < 60); the "
                     f"N x N x 64-byte matrix it replaces would take {quadratic_mb:,.0f} MB").judge()]


def seed_list_rows() -> list[Row]:
    """parse_seed_list on ten ranges of 2,000 seeds against ten of 200: time growth (a list scan per seed made
    it ~100x)."""
    from busadv.training import parse_seed_list

    def text(width: int) -> str:
        return ",".join(f"{k * 10_000}-{k * 10_000 + width - 1}" for k in range(10))

    def best(width: int) -> float:
        source = text(width)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            parse_seed_list(source)
            times.append(time.perf_counter() - started)
        return min(times)

    small, large = best(200), best(2_000)
    started = time.perf_counter()
    try:
        parse_seed_list("0-1000000")
        wide = "handled"
    except ValueError:
        wide = "refused"
    wide_seconds = time.perf_counter() - started
    return [Row(SECTION, "seed list parsing, 20,000 vs 2,000 seeds: time", busadv=large * 1000, reference=small * 1000,
                unit="ms", ratio=large / max(small, 1e-9), target=GROWTH_TARGET,
                note=f"a 10^6-wide range {wide} in {wide_seconds * 1000:.2f} ms (goal < 1 s)").judge()]


def csv_rows(small_mb: int = 2, large_mb: int = 20) -> list[Row]:
    """read_rows_file on a 20 MB results CSV against a 2 MB one: peak traced memory growth and the peak itself."""
    import tempfile
    from pathlib import Path

    from busadv.results import ResultRow, read_rows_file, rows_to_csv

    row = ResultRow(run="r", seed=0, arch="simplecnn", train_mode="standard", train_epsilon=0.0, attack="fgsm",
                    test_epsilon=8 / 255, accuracy=0.7, balanced_accuracy=0.7, n=30,
                    recall={"benign": 0.8, "malignant": 0.5, "normal": 0.9},
                    confusion=[[8, 1, 1], [3, 5, 2], [0, 1, 9]])
    header, body = rows_to_csv([row]).splitlines()
    peaks = {}
    with tempfile.TemporaryDirectory() as folder:
        for size in (small_mb, large_mb):
            path = Path(folder) / f"rows-{size}.csv"
            lines = max(1, size * MB // (len(body) + 8))
            path.write_text(header + "\n" + "\n".join(body.replace("r,", f"r{k},", 1) for k in range(lines)) + "\n")
            peaks[size] = _peak_and_seconds(functools.partial(read_rows_file, path))[0]
    return [Row(SECTION, f"results CSV import, {large_mb} vs {small_mb} MB: peak memory", busadv=peaks[large_mb],
                reference=peaks[small_mb], unit="MB", ratio=peaks[large_mb] / max(peaks[small_mb], 1e-9),
                target=GROWTH_TARGET,
                note=f"{large_mb} MB read in {peaks[large_mb]:.0f} MB traced (goal < 300; the rows themselves are "
                     f"most of it)").judge()]


def section(bench: Bench | None = None) -> list[Row]:
    return near_duplicate_rows() + seed_list_rows() + csv_rows()
