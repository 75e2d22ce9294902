"""Shared by the scanner-corruption and transfer tests: tiny real checkpoints and a real job worker run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

WORKER_DEADLINE = 180.0  # a worker imports torch and evaluates; the machine is shared


def tiny_checkpoint(tmp_path_factory, mode: str = "standard", seed: int = 0, size: int = 32) -> Path:
    """A real SimpleCNN on the phantoms (a few epochs: one leaves it answering one class), in folders of its own."""
    base = tmp_path_factory.mktemp(f"ckpt-{mode}-{seed}-{size}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BUSADV_HOME", str(base / "home"))
        mp.setenv("BUSADV_CHECKPOINTS", str(base / "checkpoints"))
        mp.setenv("BUSADV_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        mp.delenv("BUSADV_DATA", raising=False)
        from busadv.experiments import train_job

        config = {"epochs": 4, "image_size": size, "device": "cpu", "seed": seed, "mode": mode,
                  "test_epsilons": "8/255", "test_attacks": ["fgsm"], "monitor_images": 0}
        if mode != "standard":
            config["epsilon"] = 8 / 255
        return Path(train_job(config)["checkpoint"])


def run_in_worker(tmp_path: Path, kind: str, config: dict):
    """Submit a job to a real worker process and wait for it to end; the finished Job."""
    from busadv.jobs import JobStore

    store = JobStore(tmp_path / "jobs.sqlite")
    job_id = store.submit(kind, config)
    end = time.monotonic() + WORKER_DEADLINE
    while time.monotonic() < end:
        job = store.get(job_id)
        if not job.active:
            assert job.status == "done", f"{job.status}: {job.error}\n" + "\n".join(store.logs(job_id))
            return job
        store.dispatch()
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {WORKER_DEADLINE} s:\n" + "\n".join(store.logs(job_id)))
