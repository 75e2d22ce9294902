"""Checkpoints as plain dicts holding everything needed to use a model again.

Reading: loaded with `weights_only=True` (no code can run), then every field is checked (types,
ranges, tensor shapes against the architecture built on the meta device) before any real allocation,
so a hostile or damaged file is refused with a reason instead of a traceback or gigabytes of memory.
Writing: atomically and never over another file, so two runs can never lose each other's model.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import pickle
import re
import stat
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from busadv.data.cache import exclusive_torch_save
from busadv.data.spec import BUSI
from busadv.models.registry import MODELS, build_model
from busadv.settings import checkpoints_dir, home

FORMAT = "busadv-checkpoint"
VERSION = 2  # 2: run id and recipe stored; version 1 files still load
MAX_CHECKPOINT_BYTES = 2 * 1024**3


class CheckpointError(ValueError):
    """A file that cannot be used as a busadv model; the message names it and says why."""


class CheckpointNotSaved(CheckpointError):
    """No disk had room for a trained model. Training again would end the same way: a grid does not retry it."""

    retry = False


NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass
class CheckpointInfo:
    """What a list of checkpoints shows, read without building the model."""

    path: Path
    arch: str
    image_size: int
    classes: tuple[str, ...]
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    created: float = 0.0
    run_id: str = ""

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def train_seconds(self) -> float:
        """Summed epoch times, a refit run's second pass included: how long this machine took to train it."""
        refit = self.metrics.get("refit_history")
        epochs = [*self.history, *(refit if isinstance(refit, list) else [])]
        times = (h.get("seconds") for h in epochs if isinstance(h, dict))
        return sum(float(t) for t in times if isinstance(t, (int, float)) and not isinstance(t, bool)
                   and math.isfinite(t) and t > 0)

    @property
    def simulated(self) -> bool:
        return bool(self.data.get("simulated"))

    def describe(self) -> str:
        mode = self.train_config.get("mode", "standard")
        eps = float(self.train_config.get("epsilon", 0.0) or 0.0)
        how = "standard training" if mode == "standard" else f"{mode} training at eps={eps:.3g}"
        where = "simulated phantoms" if self.simulated else "BUSI"
        acc = self.metrics.get("clean_accuracy")
        acc_text = f", clean test accuracy {acc:.3f}" if isinstance(acc, float) else ""
        return f"{self.arch}, {how}, on {where}{acc_text}"


@dataclass
class Checkpoint(CheckpointInfo):
    model: nn.Module | None = None

    def require_model(self) -> nn.Module:
        assert self.model is not None, "checkpoint loaded without its model"
        return self.model


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in text or "Unsupported global" in text:
        return ("it contains Python objects that could run code when loaded, and busadv refuses such files. "
                "Only open checkpoints that busadv wrote")
    if isinstance(exc, (EOFError, RuntimeError)) and ("zip" in text.lower() or "central directory" in text.lower()
                                                      or isinstance(exc, EOFError)):
        return "the file is damaged or incomplete (was it cut short while copying?)"
    return "the file is not a PyTorch checkpoint or is damaged"


_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a plain file")


def _open_regular(path: Path) -> int:
    """A descriptor on path, only if it is (or links to) a regular file; never blocks.

    Why: a FIFO named *.pt blocks open() until a writer comes (the Home page hung), and a device such as
    /dev/zero never ends. stat() follows links, so a link to either is caught too; O_NONBLOCK and the
    fstat() of what was opened close the gap when the file is swapped in between.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not stat.S_ISREG(mode):
        raise CheckpointError(f"{path}: not a regular file ({_kind(mode)}); busadv opens only checkpoint files")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode):
        os.close(fd)
        raise CheckpointError(f"{path}: not a regular file ({_kind(opened.st_mode)}); busadv opens only checkpoint "
                              f"files")
    if opened.st_size > MAX_CHECKPOINT_BYTES:
        os.close(fd)
        raise CheckpointError(f"{path}: {opened.st_size / 1024**3:.1f} GB is larger than any busadv checkpoint")
    return fd


def _load_blob(path: Path, mmap: bool = False) -> dict[str, Any]:
    fd = _open_regular(path)
    try:
        with os.fdopen(fd, "rb") as file:
            # mmap needs a name: /proc/self/fd/N names the very file checked above (Linux); elsewhere the path.
            by_fd = Path(f"/proc/self/fd/{fd}")
            source: Any = (by_fd if by_fd.exists() else path) if mmap else file
            blob = torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - any failure to read safely is a refusal with a reason
        raise CheckpointError(f"{path}: not usable as a busadv checkpoint: {_reason(exc)}.") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a busadv checkpoint (it has no '{FORMAT}' marker; plain PyTorch "
                              f"state dicts are not accepted).")
    return blob


def _check(condition: bool, path: Path, problem: str) -> None:
    if not condition:
        raise CheckpointError(f"{path}: not usable as a busadv checkpoint: {problem}.")


def _validate(blob: dict[str, Any], path: Path) -> CheckpointInfo:
    """Every field checked for type and range; nothing is allocated here."""
    version = blob.get("version", 0)
    _check(isinstance(version, int), path, "its format version is not a whole number")
    if version > VERSION:
        raise CheckpointError(f"{path}: written by a newer busadv (format {version}); upgrade busadv to open it.")
    arch = blob.get("arch")
    _check(isinstance(arch, str) and arch in MODELS, path,
           f"unknown model {str(arch)[:40]!r} (known: {', '.join(MODELS.names())})")
    spec = MODELS.get(str(arch))
    size = blob.get("image_size")
    _check(isinstance(size, int) and not isinstance(size, bool), path, "its image size is not a whole number")
    try:
        spec.check_image_size(int(size))  # type: ignore[arg-type]
    except ValueError as exc:
        raise CheckpointError(f"{path}: not usable as a busadv checkpoint: {exc}.") from None
    classes = blob.get("classes", list(BUSI.classes))
    _check(isinstance(classes, (list, tuple)) and 2 <= len(classes) <= 100
           and all(isinstance(c, str) and 0 < len(c) <= 40 for c in classes), path,
           "its class names are not a list of 2 to 100 short names")
    folded = [c.strip().casefold() for c in classes]
    _check(len(set(folded)) == len(folded), path,
           f"its class names must differ from each other, got {', '.join(map(str, classes))[:120]}")
    _check(isinstance(blob.get("state_dict"), dict), path, "it holds no weights (state_dict)")
    for key, kind in (("train_config", dict), ("metrics", dict), ("data", dict), ("history", list)):
        _check(isinstance(blob.get(key, kind()), kind), path, f"its '{key}' field is not a {kind.__name__}")
    history = blob.get("history", [])
    _check(all(isinstance(h, dict) for h in history), path, "its training history is not a list of epochs")
    created = blob.get("created")
    if not isinstance(created, (int, float)) or isinstance(created, bool) or not 0 <= created < 1e11:
        created = path.stat().st_mtime  # older or hand-made files: the file's own time
    run_id = blob.get("run_id", "")
    return CheckpointInfo(path=path, arch=spec.name, image_size=int(size), classes=tuple(classes),  # type: ignore[arg-type]
                          train_config=dict(blob.get("train_config", {})), metrics=dict(blob.get("metrics", {})),
                          data=dict(blob.get("data", {})), history=list(history), created=float(created),
                          run_id=run_id if isinstance(run_id, str) else "")


def _check_weights(state: dict[str, Any], info: CheckpointInfo) -> None:
    """The weights' names and shapes against the architecture built on the meta device (no memory used)."""
    with torch.device("meta"):
        reference = build_model(info.arch, info.image_size, num_classes=len(info.classes)).state_dict()
    problems = []
    for key, expected in reference.items():
        got = state.get(key)
        if not isinstance(got, torch.Tensor):
            problems.append(f"missing {key}")
        elif tuple(got.shape) != tuple(expected.shape):
            problems.append(f"{key} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
        elif got.dtype != expected.dtype:
            problems.append(f"{key} is {got.dtype}, expected {expected.dtype}")
        if len(problems) >= 3:
            break
    extra = sorted(set(state) - set(reference))
    if extra:
        problems.append(f"unexpected entries such as {extra[0]}")
    if problems:
        raise CheckpointError(f"{info.path}: weights do not fit a {info.arch} at {info.image_size}px "
                              f"({'; '.join(problems[:3])}).")
    for key in reference:
        tensor = state[key]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{info.path}: not usable as a busadv checkpoint: its weights hold NaN or infinite "
                                  f"values ({key}), so every answer would be 'nan'; training diverged or the file "
                                  f"was damaged: train the model again.")


def check_classes(info: CheckpointInfo, data_classes: tuple[str, ...] | list[str]) -> None:
    """The model's classes must be the data's, in the same order: else every score counts the wrong labels."""
    if tuple(info.classes) != tuple(data_classes):
        raise CheckpointError(f"{info.path}: its classes ({', '.join(info.classes)[:120]}) do not match the data's "
                              f"({', '.join(data_classes)[:120]}); use data with the model's classes or another "
                              f"model.")


def read_checkpoint_info(path: str | os.PathLike) -> CheckpointInfo:
    """Metadata only (memory-mapped): for lists and tables."""
    path = Path(path)
    return _validate(_load_blob(path, mmap=True), path)


def load_checkpoint(path: str | os.PathLike, expected_arch: str | None = None,
                    device: torch.device | str = "cpu") -> Checkpoint:
    """Load safely and refuse files that are not busadv checkpoints of the expected kind."""
    path = Path(path)
    blob = _load_blob(path)
    info = _validate(blob, path)
    if expected_arch is not None and info.arch != MODELS.coerce(expected_arch):
        raise CheckpointError(f"{path}: holds a {info.arch} model, not a {MODELS.coerce(expected_arch)}")
    _check_weights(blob["state_dict"], info)
    model = build_model(info.arch, info.image_size, num_classes=len(info.classes))
    model.load_state_dict(blob["state_dict"])
    model.to(device).eval()
    if torch.device(device).type == "cpu":
        model.to(memory_format=torch.channels_last)  # about 2x faster convolutions on CPU (see the benchmark)
    return Checkpoint(**{k: getattr(info, k) for k in info.__dataclass_fields__}, model=model)


def list_checkpoints(folder: str | os.PathLike | None = None) -> list[CheckpointInfo]:
    """Readable checkpoints, newest first; unusable files are left out, never raised."""
    folder = Path(folder) if folder else checkpoints_dir()
    out = []
    for path in sorted(folder.glob("*.pt")):
        try:
            out.append(read_checkpoint_info(path))
        except (CheckpointError, OSError):
            continue
    return sorted(out, key=lambda c: c.created, reverse=True)


def recipe_digest(values: dict[str, Any]) -> str:
    """A short hash of a recipe: runs that differ in any setting get different names."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:8]


def checkpoint_filename(train_config: dict[str, Any], simulated: bool, run_id: str = "") -> str:
    """A name that says what the model is (arch, mode, epsilon, data, seed) and is unique per run."""
    mode = train_config.get("mode", "standard")
    eps = float(train_config.get("epsilon", 0.0) or 0.0)
    eps_part = "" if mode == "standard" else f"-eps{eps:.3g}"
    data_part = "phantoms" if simulated else "busi"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    unique = re.sub(r"[^A-Za-z0-9]", "", run_id)[-6:] or os.urandom(3).hex()
    return (f"{train_config.get('arch')}-{mode}{eps_part}-{data_part}-s{train_config.get('seed', 0)}"
            f"-{recipe_digest(train_config)}-{stamp}-{unique}.pt")


def save_checkpoint(model: nn.Module, path: str | os.PathLike, *, arch: str, image_size: int,
                    train_config: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
                    data: dict[str, Any] | None = None, history: list[dict[str, Any]] | None = None,
                    classes: tuple[str, ...] = BUSI.classes, run_id: str = "") -> Path:
    """Write atomically under a name no other file has; an existing name gets a numbered sibling."""
    target = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    blob = {
        "format": FORMAT, "version": VERSION, "arch": MODELS.coerce(arch), "image_size": int(image_size),
        "classes": list(classes), "state_dict": state, "train_config": train_config or {},
        "metrics": metrics or {}, "data": data or {}, "history": history or [], "created": time.time(),
        "run_id": run_id,
    }
    try:
        return _save_beside(blob, target)
    except OSError as exc:
        if exc.errno not in NO_ROOM:
            raise
        return _rescue(blob, target, exc)


def _save_beside(blob: dict[str, Any], target: Path) -> Path:
    """A temporary file beside the target, linked into place under a name no other file has."""
    for attempt in range(100):
        candidate = target if attempt == 0 else target.with_name(f"{target.stem}-{attempt + 1}{target.suffix}")
        try:
            return exclusive_torch_save(blob, candidate)
        except FileExistsError:
            continue
    raise CheckpointError(f"{target}: 100 files with this name exist already; choose another folder.")


def rescue_folders() -> list[Path]:
    """Where a model goes when its folder's disk is full: $BUSADV_HOME, then the system's temporary folder."""
    folders = []
    with contextlib.suppress(ValueError):  # BUSADV_HOME unusable: the temporary folder alone
        folders.append(home() / "rescued-checkpoints")
    return [*folders, Path(tempfile.gettempdir()) / "busadv-rescued-checkpoints"]


def _rescue(blob: dict[str, Any], target: Path, first: OSError) -> Path:
    """The model saved somewhere with room, and a warning that says where and what to free; never lost quietly."""
    buffer = io.BytesIO()
    torch.save(blob, buffer)
    need = f"{buffer.getbuffer().nbytes / 1024**2:.1f} MB"
    tried = [f"{target.parent} ({first.strerror or first})"]
    for folder in rescue_folders():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            saved = _save_beside(blob, folder / target.name)
        except OSError as exc:
            tried.append(f"{folder} ({exc.strerror or exc})")
            continue
        warnings.warn(f"{target.parent} is full, so the model ({need}) was saved to {saved} instead; free at least "
                      f"{need} in {target.parent} and move the file there (or point BUSADV_CHECKPOINTS at a disk "
                      f"with room)", stacklevel=3)
        return saved
    raise CheckpointNotSaved(f"{target}: not saved, no room for the model ({need}): free at least {need} on one of "
                             f"these disks (old checkpoints, caches) or point BUSADV_CHECKPOINTS at a disk with room, "
                             f"then train again. Tried: {'; '.join(tried)}")


def check_writable_folder(folder: str | os.PathLike, what: str = "checkpoints folder") -> Path:
    """Before any training: the folder exists (or can be made) and accepts new files."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what} {folder} is a file, not a folder; point BUSADV_CHECKPOINTS elsewhere.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".busadv-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"{what} {folder} is not writable ({exc.strerror or exc}); fix its permissions or point "
                         f"BUSADV_CHECKPOINTS elsewhere.") from None
    return folder
