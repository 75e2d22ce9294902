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


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (field 3 on), or None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def _start_of(fields: list[str]) -> str | None:
    return f"{_boot_id()}:{fields[19]}" if len(fields) > 19 else None


def proc_start_time(pid: int) -> str | None:
    """When a process started: "<boot id>:<clock ticks since boot>" (/proc/<pid>/stat field 22).

    Why: pids are reused (also after a reboot); a pid plus its start time names one process for
    good. None where /proc is missing (not Linux) or the process is gone.
    """
    fields = _stat_fields(pid)
    return _start_of(fields) if fields is not None else None


def _proc_state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def pid_alive(pid: int, start: str | None) -> bool:
    """True while `pid` is the very process that was recorded (not dead, a zombie, or a reuse)."""
    if pid <= 0:
        return False
    if Path("/proc/self/stat").exists():
        fields = _stat_fields(pid)  # read once: state and start time of the same instant
        if not fields or fields[0] in ("Z", "X", "x"):
            return False
        return start is None or _start_of(fields) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
