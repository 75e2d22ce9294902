"""Whether a recorded process still lives: a pid plus its start time names one process for good.

At the bottom of the layers, so the job store and the Ray backend's scratch sweep ask the same question the
same way. Found without torch: /proc, else a signal 0.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path


@functools.lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def proc_start_time(pid: int) -> str | None:
    """When a process started: "<boot id>:<clock ticks since boot>" (/proc/<pid>/stat field 22).

    Why: pids are reused (also after a reboot); a pid plus its start time names one process for
    good. None where /proc is missing (not Linux) or the process is gone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return f"{_boot_id()}:{fields[19]}" if len(fields) > 19 else None


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[0]


def pid_alive(pid: int, start: str | None) -> bool:
    """True while `pid` is the very process that was recorded (not dead, a zombie, or a reuse)."""
    if pid <= 0:
        return False
    if Path("/proc/self/stat").exists():
        state = _proc_state(pid)
        if state is None or state in ("Z", "X", "x"):
            return False
        return start is None or proc_start_time(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
