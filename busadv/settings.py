"""Where busadv keeps its files; every location can be moved with an environment variable.

Every variable is checked at start (`check_environment`, called by the CLI, the job CLI and the app) and a bad
value is one line naming the variable and the fix, before any work: a file where a folder belongs, a folder
that cannot be made or written, a job limit that is not a whole number.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HOME_ENV, CACHE_ENV, DATA_ENV, MAX_JOBS_ENV = "BUSADV_HOME", "BUSADV_CACHE", "BUSADV_DATA", "BUSADV_MAX_JOBS"
MAX_JOBS_LIMIT = 256
DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


class SettingError(ValueError):
    """An environment variable or option with a value busadv cannot use; the message names it and the fix."""


def _setting(name: str) -> str | None:
    """The variable's value; unset and empty both mean "use the default"."""
    value = os.environ.get(name, "").strip()
    return value or None


def _folder(name: str, default: Path, what: str) -> Path:
    """$name (else default) as an existing, writable folder, made when missing; else SettingError."""
    raw = _setting(name)
    path = Path(raw).expanduser() if raw else default
    fix = f"point {name} at a folder busadv may write to" + ("" if raw is None else f", or unset it for {default}")
    shown = f"{name}={path}" if raw else f"{name} (unset: {path})"
    if path.exists() and not path.is_dir():
        raise SettingError(f"{shown} is a file, not a folder for {what}; {fix}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingError(f"{shown} cannot be made ({exc.strerror or exc}); {fix}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SettingError(f"{shown} cannot be written (permission denied); {fix}")
    return path


def home() -> Path:
    """State that is not a checkpoint: the job database, logs, results ($BUSADV_HOME)."""
    return _folder(HOME_ENV, PROJECT_ROOT / ".busadv", "busadv's jobs and results")


def cache_dir() -> Path:
    """Decoded-image tensors ($BUSADV_CACHE, default ~/.cache/busadv)."""
    return _folder(CACHE_ENV, Path.home() / ".cache" / "busadv", "decoded images")


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


def data_folder_setting() -> Path | None:
    """$BUSADV_DATA when set: it must be an existing folder (whether it holds BUSI is the loader's to say)."""
    raw = _setting(DATA_ENV)
    if raw is None:
        return None
    path = Path(raw).expanduser()
    fix = f"point {DATA_ENV} at the unzipped BUSI folder, or unset it for the simulated phantoms"
    if not path.exists():
        raise SettingError(f"{DATA_ENV}={path}: no such folder; {fix}")
    if not path.is_dir():
        raise SettingError(f"{DATA_ENV}={path} is a file, not a folder; {fix}")
    return path


def max_jobs_setting() -> int | None:
    """$BUSADV_MAX_JOBS as a whole number 1-256, None when unset (the job runner then picks)."""
    raw = _setting(MAX_JOBS_ENV)
    if raw is None:
        return None
    fix = f"set it to a whole number from 1 to {MAX_JOBS_LIMIT} (jobs run at once), or unset it"
    if not re.fullmatch(r"\+?\d{1,4}", raw) or not 1 <= int(raw) <= MAX_JOBS_LIMIT:
        raise SettingError(f"{MAX_JOBS_ENV}={raw[:40]!r} is not a whole number from 1 to {MAX_JOBS_LIMIT}; {fix}")
    return int(raw)


def check_environment() -> None:
    """Every busadv variable with a value that cannot work: SettingError for the first, before any work."""
    home()
    cache_dir()
    data_folder_setting()
    max_jobs_setting()


def environment_problem() -> str | None:
    """check_environment's one line, or None: for the app's start, which shows it instead of a traceback."""
    try:
        check_environment()
    except SettingError as exc:
        return str(exc)
    return None


def check_device(requested: str) -> str:
    """The device's name checked for spelling (not availability): auto, cpu, cuda or cuda:N."""
    text = str(requested).strip().lower()
    if not re.fullmatch(r"auto|cpu|cuda(:\d{1,2})?", text):
        raise SettingError(f"{str(requested)[:40]!r} is not a device busadv runs on; use {DEVICE_CHOICES}")
    return text


def pick_device(requested: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else the CPU."""
    import torch

    text = check_device(requested)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingError("CUDA was requested but no CUDA device is available; use --device cpu or auto.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SettingError(f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s); use cuda:0 "
                               f"to cuda:{torch.cuda.device_count() - 1}, cpu or auto")
    return device
