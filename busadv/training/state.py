"""Per-epoch training state: what a killed run needs to go on from its last finished epoch.

Why: a job killed (kill -9, a crash, a reboot) at epoch 9 of 10 would otherwise lose nine epochs.
After every epoch the loop writes the model, the optimizer, every random number generator it draws
from, the epoch, the history and the time spent. The file is written beside its final name and then
renamed (busadv.data.cache.atomic_write), so a kill in the middle of a write leaves the previous
epoch's state whole. On the CPU a resumed run ends exactly where an uninterrupted one would.

The generators: torch's global one (weight initialisation, dropout), the loop's own torch.Generator
(the order of the images, random starts and noise of adversarial training) and CUDA's where present.
busadv draws nothing from numpy's or Python's global generators while training, so they are not kept.

A small JSON file beside the state says which epoch it holds, so the job store and pages can say
"resume from epoch 3" without importing torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from busadv.data.cache import atomic_torch_save, atomic_write_text
from busadv.data.imageset import ImageSet
from busadv.training.config import TrainConfig

FORMAT = "busadv-train-state"
VERSION = 1
EPOCH_KEYS = ("epoch", "epochs", "train_loss", "train_accuracy")  # what every epoch of a history must hold


class StateUnusable(ValueError):
    """A state file that cannot continue this run (damaged, another recipe, other images); says why."""


@dataclass
class TrainState:
    """What a run needs to continue after `epoch` finished epochs."""

    epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)  # schedule, weight average, best epoch so far


def sidecar(path: str | os.PathLike) -> Path:
    """The JSON file beside a state file: {"epoch": ..., "epochs": ...}, readable without torch."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def identity(config: TrainConfig, train_set: ImageSet) -> str:
    """The run a state belongs to: every setting and the exact training images and labels.

    Why the images themselves: a state of another data folder, split or offline-perturbed set must
    never be continued as if it were this run's.
    """
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    digest.update(train_set.images.contiguous().numpy().tobytes())
    digest.update(train_set.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def save_state(path: str | os.PathLike, run: str, state: TrainState, model: nn.Module,
               optimizer: torch.optim.Optimizer, generator: torch.Generator, epochs: int) -> Path:
    """Write the state after a finished epoch, atomically; then its JSON sidecar."""
    blob = {
        "format": FORMAT, "version": VERSION, "identity": run, "epoch": int(state.epoch), "epochs": int(epochs),
        "history": state.history, "seconds": float(state.seconds), "saved": time.time(), "extras": state.extras,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(), "generator": generator.get_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    target = atomic_torch_save(blob, path)
    atomic_write_text(json.dumps({"epoch": int(state.epoch), "epochs": int(epochs), "saved": blob["saved"]}),
                      sidecar(target))
    return target


def _load_blob(path: Path, run: str, epochs: int) -> dict[str, Any]:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a state that cannot be read safely is not used, whatever the reason
        raise StateUnusable(f"{path.name} cannot be read ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or blob.get("version") != VERSION:
        raise StateUnusable(f"{path.name} is not a busadv training state of this version")
    if blob.get("identity") != run:
        raise StateUnusable(f"{path.name} belongs to another run (other settings or other training images)")
    epoch = blob.get("epoch")
    if (isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= epochs
            or blob.get("epochs") != epochs):
        raise StateUnusable(f"{path.name} holds epoch {epoch!r} of {blob.get('epochs')!r}, not one of {epochs}")
    history = blob.get("history")
    if (not isinstance(history, list) or len(history) != epoch
            or not all(isinstance(h, dict) and all(isinstance(h.get(k), (int, float)) for k in EPOCH_KEYS)
                       for h in history)):
        raise StateUnusable(f"{path.name} has a history that does not match its epoch")
    for key in ("torch_rng", "generator"):
        if not isinstance(blob.get(key), torch.Tensor) or blob[key].dtype != torch.uint8:
            raise StateUnusable(f"{path.name} has no usable random-number state ({key})")
    if not isinstance(blob.get("model"), dict) or not isinstance(blob.get("optimizer"), dict):
        raise StateUnusable(f"{path.name} holds no model or optimizer state")
    return blob


def load_state(path: str | os.PathLike, run: str, model: nn.Module, optimizer: torch.optim.Optimizer,
               generator: torch.Generator, epochs: int) -> TrainState | None:
    """Restore model, optimizer and generators from a state file; None when there is none.

    StateUnusable (nothing restored: the model, optimizer and generators are as they were) when the
    file is damaged or belongs to another run.
    """
    path = Path(path)
    if not path.exists():
        return None
    blob = _load_blob(path, run, epochs)
    saved_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
    saved_optimizer = optimizer.state_dict()
    try:
        model.load_state_dict(blob["model"])
        optimizer.load_state_dict(blob["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        raise StateUnusable(f"{path.name} does not fit this model ({str(exc)[:120]})") from None
    torch.set_rng_state(blob["torch_rng"])
    generator.set_state(blob["generator"])
    cuda = blob.get("cuda_rng") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    seconds = blob.get("seconds")
    extras = blob.get("extras")
    return TrainState(epoch=blob["epoch"], history=list(blob["history"]),
                      seconds=float(seconds) if isinstance(seconds, (int, float)) else 0.0,
                      extras=extras if isinstance(extras, dict) else {})


def remove_state(path: str | os.PathLike) -> None:
    """Delete a state file and its sidecar (the run finished and its checkpoint is saved)."""
    path = Path(path)
    for file in (path, sidecar(path)):
        file.unlink(missing_ok=True)
