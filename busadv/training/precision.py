"""bfloat16 autocast where the hardware runs it natively: CPUs with AMX-BF16 or AVX512-BF16, and CUDA GPUs.

Why guarded: without those instructions oneDNN emulates bf16 arithmetic and training runs several times
*slower* than fp32 (the benchmark's precision section measures it on such a CPU), so autocast is only
worth turning on where `bf16_support` says it is native. Accuracy parity with fp32 (within seed noise)
is what the benchmark checks before anyone relies on it: attack gradients are small numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import torch

NATIVE_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def bf16_support(device: torch.device | str) -> tuple[bool, str]:
    """(whether bf16 runs natively on `device`, the reason in words)."""
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return True, f"{torch.cuda.get_device_name(device)} runs bf16 natively"
        return False, "this GPU has no native bf16"
    native = [f for f in NATIVE_CPU_FLAGS if f in cpu_flags()]
    if native:
        return True, f"the CPU has {' and '.join(native)}"
    have = [f for f in ("avx512f", "avx2", "fma") if f in cpu_flags()]
    return False, (f"the CPU has neither AMX-BF16 nor AVX512-BF16 (it has {', '.join(have) or 'neither'}): "
                   "bf16 would be emulated, slower than fp32")


@contextlib.contextmanager
def autocast(device: torch.device | str, enabled: bool = True) -> Iterator[None]:
    """bf16 autocast on `device` when enabled *and* native there; otherwise fp32, unchanged."""
    device = torch.device(device)
    if not enabled or not bf16_support(device)[0]:
        yield
        return
    with torch.autocast(device.type, dtype=torch.bfloat16):
        yield


@contextlib.contextmanager
def forced_autocast(device: torch.device | str) -> Iterator[None]:
    """bf16 autocast even where it is emulated: only for measuring what the guard saves (the benchmark)."""
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        yield
