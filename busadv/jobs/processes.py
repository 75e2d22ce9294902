"""Worker processes: how many may run, which GPU each gets, and how to stop one (busadv.pids says whether one lives).

Found without torch (pages import this on every rerun): /proc and nvidia-smi only.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from busadv.settings import max_jobs_setting


def visible_gpus() -> list[str]:
    """GPU ids a worker may be pinned to (values for CUDA_VISIBLE_DEVICES), found without torch."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if "torch" in sys.modules:  # already paid for: ask it (it honours CUDA_VISIBLE_DEVICES)
        try:
            count = sys.modules["torch"].cuda.device_count()
        except Exception:  # noqa: BLE001 - a broken CUDA setup means "no GPU", not a crash
            count = 0
    else:
        count = _gpu_count_without_torch()
    if env is not None:
        ids = [part.strip() for part in env.split(",") if part.strip()]
        if "-1" in ids:
            ids = ids[: ids.index("-1")]
        return ids[:count] if count else []
    return [str(i) for i in range(count)]


@functools.lru_cache(maxsize=1)
def _gpu_count_without_torch() -> int:
    """NVIDIA GPUs in this machine: /proc/driver/nvidia, else `nvidia-smi -L`; 0 when neither."""
    proc = Path("/proc/driver/nvidia/gpus")
    try:
        count = sum(1 for _ in proc.iterdir())
        if count:
            return count
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], check=False, capture_output=True, text=True, timeout=10).stdout
            return sum(1 for line in out.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            pass
    return 0


def max_concurrent() -> int:
    """How many jobs may run at once: $BUSADV_MAX_JOBS, else one per GPU, else half the CPU cores.

    Why: two CPU trainings on a 2-core machine only slow each other down; on GPUs each worker gets
    its own card.
    """
    setting = max_jobs_setting()  # a bad value: SettingError naming the variable, before any job is queued
    if setting is not None:
        return setting
    gpus = visible_gpus()
    if gpus:
        return len(gpus)
    return max(1, (os.cpu_count() or 1) // 2)


# ----------------------------------------------------------------------------------------------
# Processes


# Popen objects of workers this process started: polled so that finished workers do not linger as
# zombies in a long-lived dispatcher (the Streamlit server).
_CHILDREN: dict[int, subprocess.Popen] = {}
_CHILDREN_LOCK = threading.Lock()


def collect_children() -> None:
    with _CHILDREN_LOCK:
        for pid, popen in list(_CHILDREN.items()):
            if popen.poll() is not None:
                del _CHILDREN[pid]



def terminate(pid: int) -> None:
    """SIGTERM a worker and its process group (it leads its own session when dispatch started it)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    except OSError:
        pass


def track_child(popen: subprocess.Popen) -> None:
    """Remember a worker this process started, so collect_children can reap it when it ends."""
    with _CHILDREN_LOCK:
        _CHILDREN[popen.pid] = popen
