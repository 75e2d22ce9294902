"""One progress callback shape for every long-running engine function (CLI, jobs and pages alike)."""

from __future__ import annotations

import math
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


def format_seconds(seconds: float | None) -> str:
    """'45 s', '12 min', '1.5 h' or '41 days'."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"
