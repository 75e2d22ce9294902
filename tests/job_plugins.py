"""Test-only job kinds, registered through $BUSADV_PLUGINS (conftest sets it; workers inherit it).

'sleep' lets the job tests exercise workers, progress, cancel and crashes without torch.
"""

from __future__ import annotations

import logging
import time

from busadv.jobs.kinds import JOB_KINDS, JobKind, register_job_kind
from busadv.progress import ProgressEvent, ProgressFn


def sleep_job(config: dict, progress: ProgressFn) -> dict:
    """`steps` steps of `seconds` each over `epochs` epochs; `fail` raises half-way."""
    steps = int(config.get("steps", 5))
    seconds = float(config.get("seconds", 0.01))
    epochs = max(1, int(config.get("epochs", steps or 1)))
    fail = bool(config.get("fail", False))
    print(f"sleep job: {steps} steps of {seconds} s", flush=True)
    logging.getLogger("busadv.jobs").info("sleep job starting")
    for step in range(steps):
        if fail and step >= steps // 2:
            raise RuntimeError(f"sleep job failed on purpose at step {step + 1}")
        time.sleep(seconds)
        epoch = step * epochs // max(steps, 1) + 1
        epoch_end = (step + 1) * epochs // max(steps, 1) >= epoch
        fraction = (step + 1) / steps
        progress(ProgressEvent(fraction, f"step {step + 1}/{steps}", epoch=epoch, epochs=epochs, loss=1.0 / (step + 1)))
        if epoch_end:
            progress(ProgressEvent(fraction, f"epoch {epoch}/{epochs} done", epoch=epoch, epochs=epochs,
                                   loss=1.0 / (step + 1), accuracy=fraction))
    if fail:
        raise RuntimeError("sleep job failed on purpose")
    return {"steps": steps, "seconds": steps * seconds}


if "sleep" not in JOB_KINDS:
    register_job_kind(JobKind("sleep", "Sleep (test only)", "tests.job_plugins:sleep_job"))
