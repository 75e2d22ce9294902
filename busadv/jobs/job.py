"""A job as pages and the CLI see it, the store's errors, and the conversions its columns need.

Kept apart from the store so the store module holds only the database logic. Imports no torch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from busadv.jobs.status import JobStatus


class JobStoreError(RuntimeError):
    """The job database cannot be used (not SQLite, corrupt, newer schema, unwritable)."""


class JobStateError(RuntimeError):
    """A job is not in a state that allows the request (e.g. running a job that already finished)."""


@dataclass(frozen=True)
class SavedEpoch:
    """How far a stopped training job's saved state goes: the pass it resumes in and the epochs done there."""

    epoch: int
    epochs: int
    refit: bool = False  # in a refit run's second pass (every training image, for the epochs validation chose)

    def __str__(self) -> str:
        return f"epoch {self.epoch}/{self.epochs}" + (" of the refit on every training image" if self.refit else "")


@dataclass
class Job:
    """One row of the job table, as pages and the CLI see it."""

    id: int
    kind: str
    status: JobStatus
    config: dict
    progress: float
    message: str
    epoch: int | None
    epochs: int | None
    loss: float | None
    accuracy: float | None
    eta_seconds: float | None
    result: dict | None
    error: str | None
    pid: int | None
    created: float
    started: float | None
    finished: float | None
    heartbeat: float | None
    cancel_requested: bool = False
    log_path: str | None = None
    gpu: str | None = None

    @property
    def active(self) -> bool:
        """Queued or running: pages poll only while some job is active."""
        return self.status.active

    @property
    def elapsed(self) -> float | None:
        """Seconds the job has run (so far, or in total once finished)."""
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started


def json_default(value: Any) -> Any:
    """Results hold numpy scalars, paths, tuples...: store what JSON can say, text otherwise."""
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(value)
    return str(value)


def finite(value: Any) -> float | None:
    """Floats for the progress columns; NaN/inf and non-numbers become None."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def one_line(exc: BaseException, limit: int = 500) -> str:
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
