"""SIGTERM and SIGINT during a grid (issue 19 F13): every worker ends within 10 s and every finished run's rows are
kept in the results store, also when the signal comes after the last run finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.hostile
ROOT = Path(__file__).resolve().parent.parent
GRID = {"archs": ["simplecnn"], "modes": ["standard"], "seeds": [0, 1], "epochs": 1, "image_sizes": {"simplecnn": 16},
        "test_attacks": ["fgsm"], "test_epsilons": [8 / 255], "workers": 1, "device": "cpu"}


def _stored_runs() -> set[str]:
    from busadv.results import load_store

    rows, problems = load_store()
    assert not problems
    return {row.run for row in rows}


def test_an_interrupt_after_the_last_run_finished_keeps_every_row(monkeypatch):
    from busadv.experiments import ExperimentConfig, runner

    def interrupted(rows):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "summarize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.run(ExperimentConfig(**GRID))
    runs = _stored_runs()
    assert len(runs) == 2 and all(run.endswith(("-001", "-002")) for run in runs)


def test_an_interrupt_between_runs_keeps_the_finished_runs_rows():
    from busadv.experiments import ExperimentConfig, runner

    def progress(event):
        if "done (1 of 2" in event.message:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run(ExperimentConfig(**GRID), progress=progress)
    (run,) = _stored_runs()
    assert run.endswith("-001")


def _descendants(pid: int) -> set[int]:
    """Every process below pid (children's children too), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_every_worker_of_an_experiment_within_10_seconds(tmp_path, sig):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # 1000 epochs, so that the grid cannot finish before the signal is sent (with 50, on the phantoms' cache, it
    # ended about 4 s after its workers started). Ctrl-C is restored in the child: a shell that starts a test run
    # in the background (`.ci/run &`) hands every process below it SIGINT ignored, and Python keeps it so.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a handler: the child starts with the default
    process = subprocess.Popen(
        [sys.executable, "-m", "busadv", "experiment", "--models", "simplecnn", "--modes", "standard", "--seeds",
         "0-3", "--epochs", "1000", "--image-sizes", "simplecnn=16", "--test-attacks", "fgsm", "--test-epsilons",
         "8/255", "--workers", "2", "--device", "cpu"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    signal.signal(signal.SIGINT, previous)
    try:
        deadline = time.monotonic() + 90
        workers: set[int] = set()
        while time.monotonic() < deadline and len(workers) < 2:
            time.sleep(0.5)
            assert process.poll() is None, process.communicate()[1]
            workers = {pid for pid in _descendants(process.pid)
                       if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()}
        assert len(workers) >= 2, "the pool's workers never started"
        time.sleep(2)  # let them import torch and start training
        everything = _descendants(process.pid)
        process.send_signal(sig)
        stopped = time.monotonic()
        _, err = process.communicate(timeout=30)
        while _alive(everything) and time.monotonic() - stopped < 10:
            time.sleep(0.2)
        assert not _alive(everything), f"still running {time.monotonic() - stopped:.0f} s after the signal"
        assert process.returncode in (130, 143)
        assert "Traceback" not in err, err
        assert err.splitlines()[-1].startswith(("interrupted", "terminated (SIGTERM)")), err
    finally:
        if process.poll() is None:
            process.kill()
        for pid in _alive(_descendants(process.pid)):
            os.kill(pid, signal.SIGKILL)
