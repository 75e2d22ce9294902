"""Files written so that readers never see half of one and concurrent writers never collide.

Why unique temporary names: two processes writing the same target (two jobs saving results, two
servers building one cache) would otherwise share one temporary file and corrupt each other.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import torch


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(target: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write with `write(tmp)` beside the target, then rename over it: all or nothing."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(target)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def atomic_torch_save(obj: object, target: str | os.PathLike) -> Path:
    return atomic_write(target, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(text: str, target: str | os.PathLike) -> Path:
    return atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def exclusive_torch_save(obj: object, target: str | os.PathLike) -> Path:
    """Save to a name no other file has: an existing file is never replaced (FileExistsError instead).

    Why: a checkpoint is a run's only copy of its model; two runs that chose the same name must not
    silently overwrite each other. The rename is done with a hard link, which fails if the name exists.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(target)
    try:
        torch.save(obj, tmp)
        os.link(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def load_cached(path: Path) -> dict | None:
    """A cache blob, or None when absent or damaged (a damaged cache is deleted, never trusted)."""
    if not path.exists():
        return None
    try:
        blob = torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable cache file is rebuilt
        path.unlink(missing_ok=True)
        return None
    return blob if isinstance(blob, dict) else None
