"""What every section shares: the table's rows, interleaved timing, paired ratios and the machine's facts."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

MB = 1024 * 1024


# ============================================================================ rows and the table

@dataclass
class Row:
    """One line of the table. `target_on` says which figure the target judges: the ratio or busadv's own."""

    section: str
    name: str
    busadv: float | None = None
    reference: float | None = None
    unit: str = ""
    ratio: float | None = None
    target: str = ""            # e.g. "<= 1.05"; "" for a figure shown for reference only
    target_on: str = "ratio"    # "ratio" or "busadv" (only for exactness checks such as a max|diff| of 0)
    met: bool | None = None
    status: str = "ok"          # ok, or why there is no figure: "not installed", "not measured: ...", ...
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def judge(self, noise: float | None = None) -> Row:
        """Set `met` from the target; a miss smaller than the measured spread is marked as within noise."""
        if not self.target or self.status != "ok":
            return self
        value = self.ratio if self.target_on == "ratio" else self.busadv
        if value is None or not math.isfinite(value):
            return self
        op, limit = self.target.split()[0], float(self.target.split()[1])
        self.met = value <= limit if op == "<=" else value >= limit
        if not self.met and noise is not None and abs(value - limit) <= noise:
            self.note = (self.note + "; " if self.note else "") + f"miss within measured noise (+-{noise:.3g})"
        return self


def not_measured(section: str, name: str, reason: str, note: str = "") -> Row:
    """A row that says why a figure is missing (a page mid-port, a package not installed, ...)."""
    return Row(section, name, status=f"not measured: {reason}", note=note)


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "nan"
    a = abs(value)
    if a == 0:
        text = "0"
    elif a >= 1000:
        text = f"{value:,.0f}"
    elif a >= 100:
        text = f"{value:.0f}"
    elif a >= 10:
        text = f"{value:.1f}"
    elif a >= 0.01:
        text = f"{value:.3g}"
    else:
        text = f"{value:.2e}"
    return f"{text} {unit}".strip()


def _cells(r: Row) -> tuple[str, ...]:
    if r.status != "ok":
        busadv, ref, ratio, met = r.status, "-", "-", "-"
    else:
        busadv, ref = fmt(r.busadv, r.unit), fmt(r.reference, r.unit)
        ratio = "-" if r.ratio is None else f"{r.ratio:.3g}"
        met = {True: "yes", False: "NO", None: "-"}[r.met]
    target = f"{r.target_on} {r.target}" if r.target else "(report)"
    return r.section, r.name, busadv, ref, ratio, target, met


def format_table(rows: Sequence[Row]) -> str:
    header = ("section", "name", "busadv", "reference", "ratio", "target", "met")
    lines = [_cells(r) for r in rows]
    widths = [max(len(x[i]) for x in [header, *lines]) for i in range(len(header))]
    widths[1] = min(widths[1], 58)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), "  ".join("-" * w for w in widths)]
    for line, row in zip(lines, rows, strict=True):
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if row.note:
            out.append(" " * (widths[0] + 2) + "  note: " + row.note)
    return "\n".join(out)


def row_line(row: Row) -> str:
    """One row on one line, for progress output while the run goes on."""
    return "  ".join(c for c in _cells(row)[1:] if c not in ("-", "(report)"))


def guarded(section: str, name: str, fn: Callable[[], list[Row]], log: Callable[[str], None] = print) -> list[Row]:
    """Run one part; an exception becomes an error row (one broken part must not hide the others)."""
    started = time.perf_counter()
    try:
        rows = fn()
    except Exception as exc:  # noqa: BLE001 - reported in the table, never raised
        rows = [Row(section, name, status="error", note=f"{type(exc).__name__}: {str(exc)[:300]}")]
    for row in rows:
        log("    " + row_line(row))
    log(f"    ({name}: {time.perf_counter() - started:.0f} s)")
    return rows


# ============================================================================ timing

def stop(proc: subprocess.Popen) -> None:
    """End a server the benchmark started: politely, then for sure after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1,
                device: torch.device | None = None) -> dict[str, list[float]]:
    """Seconds per call of each function, the calls interleaved A B, B A, A B, ... after `warmup` rounds."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
            sync(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            sync(device)
            start = time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(median of a_i / b_i, half the interquartile range of those ratios: the noise band)."""
    ratios = sorted(x / y for x, y in zip(a, b, strict=True) if y > 0)
    if not ratios:
        return math.nan, math.nan
    if len(ratios) < 4:
        return median(ratios), (ratios[-1] - ratios[0]) / 2
    q = statistics.quantiles(ratios, n=4)
    return median(ratios), (q[2] - q[0]) / 2


def speedup_row(section: str, name: str, times: dict[str, list[float]], base: str, variant: str, *,
                scale: float = 1000, unit: str = "ms", per: float | None = None, note: str = "") -> Row:
    """busadv column = the variant, reference = the base; ratio = base time / variant time (a speed-up).

    Figures are median times x `scale`, or with `per` a rate: `per` items / median seconds.
    """
    ratio, noise = paired_ratio(times[base], times[variant])

    def value(key: str) -> float:
        return per / median(times[key]) if per else median(times[key]) * scale

    return Row(section, name, value(variant), value(base), unit, ratio,
               note=f"ratio = speed-up (noise +-{noise:.2g}){'; ' + note if note else ''}", extra={"noise": noise})


def with_threads(n: int, fn: Callable[[], Any]) -> Callable[[], Any]:
    """`fn` run with n torch threads, the caller's count restored afterwards."""
    def run() -> Any:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)
    return run


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Environment variables set for the duration of a block, then restored (or removed) as they were."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


# ============================================================================ the machine

def machine_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "cpu_model": model, "logical_cpus": os.cpu_count(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "mkldnn": torch.backends.mkldnn.is_available(),
        "python": platform.python_version(), "load_average_at_start": os.getloadavg(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    with contextlib.suppress(AttributeError):
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    return info


def sgemm_peak(n: int = 2048, repeats: int = 5, device: torch.device | None = None) -> float:
    """Best FLOP/s of an n x n float32 matrix product: the machine's practical compute ceiling."""
    device = device or torch.device("cpu")
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    times = interleaved({"mm": lambda: a @ b}, repeats, warmup=2, device=device)["mm"]
    return 2 * n ** 3 / min(times)


def count_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())
