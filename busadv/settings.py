"""Where busadv keeps its files; every location can be moved with an environment variable."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def home() -> Path:
    """State that is not a checkpoint: the job database, logs, results ($BUSADV_HOME)."""
    path = Path(os.environ.get("BUSADV_HOME", PROJECT_ROOT / ".busadv"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Decoded-image tensors ($BUSADV_CACHE, default ~/.cache/busadv)."""
    path = Path(os.environ.get("BUSADV_CACHE", Path.home() / ".cache" / "busadv"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoints_dir() -> Path:
    """Trained models ($BUSADV_CHECKPOINTS, default checkpoints/ in the project).

    Created when possible, never raised about here: a path that is a file or cannot be written is
    reported by busadv.models.checkpoints.check_writable_folder before any training, with the
    option to change, and lists of checkpoints read it as empty.
    """
    path = Path(os.environ.get("BUSADV_CHECKPOINTS", PROJECT_ROOT / "checkpoints"))
    with contextlib.suppress(OSError):
        path.mkdir(parents=True, exist_ok=True)
    return path


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else the CPU."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but no CUDA device is available; use --device cpu or auto.")
    return device
