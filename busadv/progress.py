"""One progress callback shape for every long-running engine function (CLI, jobs and pages alike)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class ProgressEvent:
    fraction: float
    message: str = ""
    epoch: int | None = None
    epochs: int | None = None
    loss: float | None = None
    accuracy: float | None = None
    eta_seconds: float | None = None


class Cancelled(Exception):
    """The user asked the job to stop."""


ProgressFn = Callable[[ProgressEvent], None]


def ignore_progress(event: ProgressEvent) -> None:
    """The default reporter: long functions always have someone to report to."""
