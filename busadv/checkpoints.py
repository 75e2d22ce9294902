"""Checkpoints as plain dicts holding everything needed to use a model again, written atomically."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from busadv.data import CLASSES, atomic_torch_save
from busadv.models import Arch, build_model
from busadv.settings import checkpoints_dir

FORMAT = "busadv-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A file that cannot be used as a busadv model; the message names it and says why."""


@dataclass
class Checkpoint:
    model: nn.Module
    arch: str
    image_size: int
    classes: tuple[str, ...]
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    created: float = 0.0
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.path.stem if self.path else f"{self.arch} (unsaved)"

    def describe(self) -> str:
        mode = self.train_config.get("mode", "standard")
        eps = self.train_config.get("epsilon", 0.0)
        how = "standard training" if mode == "standard" else f"{mode} training at eps={eps:.3g}"
        where = "simulated phantoms" if self.data.get("simulated") else "BUSI"
        acc = self.metrics.get("clean_accuracy")
        acc_text = f", clean test accuracy {acc:.3f}" if isinstance(acc, float) else ""
        return f"{self.arch}, {how}, on {where}{acc_text}"


def save_checkpoint(model: nn.Module, path: str | os.PathLike, *, arch: str, image_size: int,
                    train_config: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
                    data: dict[str, Any] | None = None, history: list[dict[str, Any]] | None = None,
                    classes: tuple[str, ...] = CLASSES) -> Path:
    """Write to a temporary file then rename: a crash mid-save leaves the previous file intact."""
    target = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = {
        "format": FORMAT, "version": VERSION, "arch": Arch.coerce(arch).value, "image_size": int(image_size),
        "classes": list(classes), "state_dict": state, "train_config": train_config or {},
        "metrics": metrics or {}, "data": data or {}, "history": history or [], "created": time.time(),
    }
    return atomic_torch_save(blob, target)


def _read(path: Path) -> dict:
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to unpickle safely means: not ours, or damaged
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a busadv checkpoint (cannot be read safely: {reason})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a busadv checkpoint (no '{FORMAT}' marker; "
                              f"plain PyTorch state dicts are not accepted)")
    if blob.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: written by a newer busadv (format {blob['version']}); upgrade busadv")
    return blob


def load_checkpoint(path: str | os.PathLike, expected_arch: str | Arch | None = None,
                    device: torch.device | str = "cpu") -> Checkpoint:
    """Load safely (weights_only) and refuse files that are not busadv checkpoints of the expected kind."""
    path = Path(path)
    blob = _read(path)
    try:
        arch = Arch.coerce(blob["arch"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if expected_arch is not None and arch is not Arch.coerce(expected_arch):
        raise CheckpointError(f"{path}: holds a {arch.value} model, not a {Arch.coerce(expected_arch).value}")
    model = build_model(arch, blob["image_size"])
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit a {arch.value} at {blob['image_size']}px "
                              f"({str(exc).splitlines()[0]})") from None
    model.to(device).eval()
    if torch.device(device).type == "cpu":
        model.to(memory_format=torch.channels_last)  # about 2x faster convolutions on CPU (see busadv.bench)
    return Checkpoint(model=model, arch=arch.value, image_size=int(blob["image_size"]),
                      classes=tuple(blob["classes"]), train_config=dict(blob["train_config"]),
                      metrics=dict(blob["metrics"]), data=dict(blob["data"]), history=list(blob["history"]),
                      created=float(blob["created"]), path=path)


@dataclass
class CheckpointInfo:
    """What a list of checkpoints shows, read without building the model."""

    path: Path
    arch: str
    image_size: int
    train_config: dict[str, Any]
    metrics: dict[str, Any]
    data: dict[str, Any]
    created: float
    train_seconds: float = 0.0  # summed epoch times: how fast this machine trained it

    @property
    def name(self) -> str:
        return self.path.stem


def list_checkpoints(folder: str | os.PathLike | None = None) -> list[CheckpointInfo]:
    """Readable checkpoints, newest first; unreadable files are left out, never raised."""
    folder = Path(folder) if folder else checkpoints_dir()
    out = []
    for path in sorted(folder.glob("*.pt")):
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:
            continue
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            continue
        out.append(CheckpointInfo(path=path, arch=blob["arch"], image_size=int(blob["image_size"]),
                                  train_config=dict(blob["train_config"]), metrics=dict(blob["metrics"]),
                                  data=dict(blob["data"]), created=float(blob["created"]),
                                  train_seconds=sum(float(h.get("seconds", 0.0)) for h in blob.get("history", []))))
    return sorted(out, key=lambda c: c.created, reverse=True)


def checkpoint_filename(train_config: dict[str, Any], simulated: bool) -> str:
    """A name that says what the model is: arch, training mode and epsilon, data, seed, time."""
    mode = train_config.get("mode", "standard")
    eps = train_config.get("epsilon", 0.0)
    eps_part = "" if mode == "standard" else f"-eps{eps:.3g}"
    data_part = "phantoms" if simulated else "busi"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{train_config.get('arch')}-{mode}{eps_part}-{data_part}-s{train_config.get('seed', 0)}-{stamp}.pt"
