"""Peak resident memory of training each model and of the app with ResNet50 loaded, each in its own process.

The parent is large by now, and Linux carries a process's RSS high-water mark over fork and exec: a child
started straight from here reports at least the parent's peak as its own ru_maxrss. A small launcher
process starts the child instead, so the child's ru_maxrss (read with os.wait4, for that child alone)
is its own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from busadv.bench.common import MB, Row
from busadv.bench.context import RESNET, SIMPLE, Bench
from busadv.bench.training import engine_steps, train_config
from busadv.data import load_busi
from busadv.settings import PROJECT_ROOT

_LAUNCHER = (
    "import json, os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True)\n"
    "out = p.stdout.read()\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "sys.stdout.write(out)\n"
    "print(json.dumps({'exit': os.waitstatus_to_exitcode(status), 'ru_maxrss_kb': usage.ru_maxrss}))\n"
)


def child_command(args: Sequence[str]) -> list[str]:
    """`python -m busadv.bench --child ...`: one measured piece of work in a fresh process."""
    return [sys.executable, "-m", "busadv.bench", "--child", *args]


def run_child(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 600) -> dict[str, Any]:
    """Run a child through the launcher; its JSON line plus its own peak RSS in MB."""
    cmd = [sys.executable, "-c", _LAUNCHER, *child_command(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT, env={**os.environ, **(env or {})},
                          timeout=timeout, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or len(lines) < 2:
        raise RuntimeError(f"child {' '.join(args)} failed: {proc.stderr.strip()[-400:]}")
    launcher = json.loads(lines[-1])
    if launcher["exit"] != 0:
        raise RuntimeError(f"child {' '.join(args)} exited {launcher['exit']}: {proc.stderr.strip()[-400:]}")
    result = json.loads(lines[-2])
    result["maxrss_mb"] = launcher["ru_maxrss_kb"] * 1024 / MB
    return result


def _vm_hwm_mb() -> float | None:
    """This process's own resident high-water mark (Linux), a cross-check of ru_maxrss."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
    return None


def child_main(argv: Sequence[str]) -> None:
    """Entry point of the measured subprocesses; prints one JSON line."""
    import resource

    parser = argparse.ArgumentParser(prog="python -m busadv.bench --child")
    parser.add_argument("what", choices=["baseline", "train", "app"])
    parser.add_argument("--data")
    parser.add_argument("--arch", default=SIMPLE)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mode", default="standard")
    parser.add_argument("--checkpoint")
    parser.add_argument("--threads", type=int)
    a = parser.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    info: dict[str, Any] = {"what": a.what}
    if a.what in ("baseline", "train"):
        data = load_busi(a.data, a.size)
        info["images"] = len(data)
        if a.what == "train":
            train_set = data.subset(torch.arange(min(len(data), a.batches * a.batch_size)))
            config = train_config(a.arch, a.size, a.mode, batch_size=a.batch_size)
            _, epoch = engine_steps(config, [train_set], torch.device("cpu"))
            start, wall = time.perf_counter(), time.time()
            epoch()
            info["images_per_s"] = len(train_set) / (time.perf_counter() - start)
            info["trained_images"], info["train_window"] = len(train_set), (wall, time.time())
    if a.what == "app":
        import streamlit  # noqa: F401 - the app's own import

        from busadv.explorer import PerturbationProbe
        from busadv.models.checkpoints import load_checkpoint

        ckpt = load_checkpoint(a.checkpoint)
        probe = PerturbationProbe(ckpt.require_model(), torch.rand(1, 1, ckpt.image_size, ckpt.image_size), 0)
        probe.probabilities("fgsm", 8 / 255)
        probe.strip("fgsm", [0.0, 2 / 255, 8 / 255, 0.05])
    info["self_ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB
    info["vm_hwm_mb"] = _vm_hwm_mb()
    print(json.dumps(info))


def bench_memory(folder: Path, resnet_checkpoint: Path | None, quick: bool) -> list[Row]:
    rows = []
    base = run_child(["baseline", "--data", str(folder), "--size", "128"])["maxrss_mb"]
    rows.append(Row("memory", "peak RSS: import torch + busadv, load data (baseline)", base, None, "MB"))
    # ResNet50's FGSM child (+300 MB, 45 s) is left out, and everything but SimpleCNN standard in --quick.
    plans = [(SIMPLE, 128, "standard", 2 if quick else 3)]
    if not quick:
        plans += [(SIMPLE, 128, "fgsm", 3), (RESNET, 224, "standard", 1)]
    for arch, size, mode, batches in plans:
        name = f"peak RSS: {mode} training {arch} {size}px, batch 32"
        try:
            res = run_child(["train", "--data", str(folder), "--arch", arch, "--size", str(size),
                             "--batches", str(batches), "--mode", mode])
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            rows.append(Row("memory", name, status="error", note=str(exc)[:200]))
            continue
        rows.append(Row("memory", name, res["maxrss_mb"], base, "MB", res["maxrss_mb"] / base,
                        note=f"reference = baseline; {res['images_per_s']:.1f} img/s in that child", extra=res))
    name = "peak RSS: app (import streamlit, load ResNet50, one probe)"
    if resnet_checkpoint is None:
        rows.append(Row("memory", name, status="skipped"))
        return rows
    try:
        import streamlit  # noqa: F401
    except ImportError:
        rows.append(Row("memory", name, status="not installed"))
        return rows
    res = run_child(["app", "--checkpoint", str(resnet_checkpoint)])
    rows.append(Row("memory", name, res["maxrss_mb"], base, "MB", res["maxrss_mb"] / base,
                    note="reference = baseline", extra=res))
    return rows


def section(bench: Bench) -> list[Row]:
    bench.data(224)  # the children find both sizes in the decoded-image cache
    return bench_memory(bench.folder, bench.checkpoint(RESNET), bench.plan.quick)
