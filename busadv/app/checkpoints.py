"""The saved models: a cached list, the words that name them, the home table, cached model loading.

Caches are keyed by the checkpoint files' names and modification times, so a model that a job has
just saved (or replaced) shows up at the next rerun, and a stale model is never served.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from busadv.app.dataset import load_images
from busadv.attacks import attack_label, format_epsilon
from busadv.data import ImageSet, data_setting
from busadv.experiments import measured_rates, test_split_for
from busadv.models import MODELS, imagenet_weights_available
from busadv.models.checkpoints import Checkpoint, CheckpointInfo, list_checkpoints, load_checkpoint
from busadv.settings import checkpoints_dir, pick_device
from busadv.training import MODES


def mtime_ns(path: str | Path) -> int:
    """A file's version for cache keys (0 when it is gone)."""
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return 0


def _stamp(folder: Path) -> tuple[tuple[str, int], ...]:
    """The checkpoint files' names and versions: a cache key that changes when any of them does."""
    return tuple(sorted((p.name, mtime_ns(p)) for p in folder.glob("*.pt")))


@st.cache_resource(max_entries=8, show_spinner=False)
def _infos(folder: str, stamp: tuple[tuple[str, int], ...]) -> list[CheckpointInfo]:
    return list_checkpoints(folder)


def checkpoint_infos() -> list[CheckpointInfo]:
    """Readable checkpoints in the checkpoints folder, newest first (cached until a file changes)."""
    folder = checkpoints_dir()
    return _infos(str(folder), _stamp(folder))


@st.cache_data(max_entries=8, show_spinner=False)
def _rates(folder: str, stamp: tuple[tuple[str, int], ...]) -> tuple[dict[str, float], bool]:
    return measured_rates(folder)


def training_rates() -> tuple[dict[str, float], bool]:
    """(training images/second per model, whether this machine measured them) for time estimates."""
    folder = checkpoints_dir()
    return _rates(str(folder), _stamp(folder))


# --------------------------------------------------------------------------- words for a model

def is_collapsed(info: CheckpointInfo) -> bool:
    """Whether the model answered one class for (almost) every clean test image when it was trained."""
    return bool(info.metrics.get("collapsed"))


def training_text(train_config: dict[str, Any]) -> str:
    """'standard training' or 'FGSM training at ε=0.031 (8/255), predicted labels'."""
    mode = str(train_config.get("mode", "standard"))
    if not (mode in MODES and MODES.get(mode).adversarial):
        return "standard training" if mode == "standard" else f"{mode} training"
    labels = ", predicted labels" if train_config.get("adv_labels") == "predicted" else ""
    return f"{mode.upper()} training at ε={format_epsilon(float(train_config.get('epsilon', 0)))}{labels}"


def _when(info: CheckpointInfo) -> str:
    return dt.datetime.fromtimestamp(info.created).strftime("%Y-%m-%d %H:%M") if info.created else ""


def checkpoint_label(info: CheckpointInfo) -> str:
    """'simplecnn · standard · phantoms · 83% balanced · seed 0 · 128px · 2025-01-01 12:00' for pickers."""
    tc = info.train_config
    mode = str(tc.get("mode", "standard"))
    how = mode if mode == "standard" else f"{mode}-trained ε={format_epsilon(float(tc.get('epsilon', 0)))}"
    data = "phantoms" if info.simulated else "BUSI"
    balanced = info.metrics.get("clean_balanced_accuracy")
    score = f" · {balanced:.0%} balanced accuracy" if isinstance(balanced, (int, float)) else ""
    warn = " · ⚠ answers one class" if is_collapsed(info) else ""
    return (f"{info.arch} · {how} · {data}{score}{warn} · seed {tc.get('seed', 0)} · {info.image_size}px · "
            f"{_when(info)}")


def checkpoint_heading(info: CheckpointInfo) -> str:
    """'simplecnn, FGSM training at ε=0.031 (8/255), seed 0': a model in a heading, where the picker says the rest."""
    return f"{info.arch}, {training_text(info.train_config)}, seed {info.train_config.get('seed', 0)}"


def explorer_order(infos: Sequence[CheckpointInfo], simulated: bool) -> list[CheckpointInfo]:
    """The order the explorer offers models in: the best first example first.

    A model trained on the active kind of data (simulated or real), that did not collapse, with
    standard training and the best clean balanced accuracy: a fresh FGSM-trained model that answers
    one class for everything is a poor first example.
    """
    def score(info: CheckpointInfo) -> float:
        value = info.metrics.get("clean_balanced_accuracy", info.metrics.get("clean_accuracy"))
        return float(value) if isinstance(value, (int, float)) and not math.isnan(value) else 0.0

    return sorted(infos, key=lambda i: (i.simulated != simulated, is_collapsed(i),
                                        i.train_config.get("mode", "standard") != "standard", -score(i)))


def contrasting(info: CheckpointInfo, others: Sequence[CheckpointInfo]) -> CheckpointInfo:
    """The model to compare `info` with first: the healthiest one trained another way, else the healthiest other.

    `others` come in explorer_order (healthiest first); a collapsed model is never chosen while a sound one
    exists, whatever its training.
    """
    mode = info.train_config.get("mode", "standard")
    sound = [o for o in others if not is_collapsed(o)] or list(others)
    return next((o for o in sound if o.train_config.get("mode", "standard") != mode), sound[0])


def healthiest(infos: Sequence[CheckpointInfo]) -> list[CheckpointInfo]:
    """Models healthiest first for pickers outside the explorer (the per-image search): those on the active kind of
    data, not collapsed, best clean balanced accuracy."""
    return explorer_order(infos, data_setting() is None)


# --------------------------------------------------------------------------- the home table

TABLE_EPSILON = 8 / 255  # the home table's one attacked figure: the field's usual small epsilon
ATTACKED_COLUMN = "under FGSM 8/255"
CHECK_COLUMN = "check"


def _percent(label: str, help: str, width: int = 68) -> Any:
    return st.column_config.TextColumn(label, help=help, width=width)


# st.dataframe column settings for checkpoint_table: whole percentages (no false precision), short headers and
# widths that fit beside the sidebar on a 1280 px screen with no sideways scrolling, "-" in an empty cell, and
# a help line per column that says the rest.
CHECKPOINT_COLUMNS: dict[str, Any] = {
    "model": st.column_config.TextColumn("model", help="Architecture and input size (square, pixels)", width=122),
    "training": st.column_config.TextColumn("training", width=165),
    "data": st.column_config.TextColumn("data", help="The images the model learned from: simulated phantoms or "
                                                     "real BUSI ultrasound", width=52),
    "balanced accuracy": _percent(
        "balanced", "Balanced accuracy on the clean held-out test images: the mean of the per-class recalls. Chance "
        "is 33% whatever the class sizes ('-': not recorded by older busadv versions)"),
    "accuracy": _percent(
        "accuracy", "Clean held-out test images: the share answered correctly. A model that always answers the "
        "most common class scores that class's share", width=60),
    "sensitivity": _percent(
        "sensitivity", "Malignant sensitivity on the clean held-out test images: the share of malignant images "
        "called malignant ('-': not recorded by older busadv versions)", width=70),
    ATTACKED_COLUMN: _percent(
        "FGSM 8/255", "Balanced accuracy on the held-out test images under FGSM at "
        f"ε={format_epsilon(TABLE_EPSILON)}, when measured after training ('-': not measured)", width=80),
    CHECK_COLUMN: st.column_config.TextColumn(
        CHECK_COLUMN, help="⚠ collapsed: the model answers one class for at least 90% of the clean test images, "
        "so its accuracy is that class's share, not skill", width=80),
    "seed": st.column_config.TextColumn("seed", width=40),
    "trained": st.column_config.TextColumn("trained", width=76),
}
EMPTY = "-"


def _attacked(info: CheckpointInfo, attack: str, eps: float) -> str | None:
    for condition in info.metrics.get("conditions") or []:
        if condition.get("attack") == attack and math.isclose(float(condition.get("test_epsilon", -1)), eps,
                                                              abs_tol=1e-9):
            return _percentage(condition.get("balanced_accuracy"))
    return None


def _percentage(value: Any) -> str | None:
    """A stored fraction as a whole percentage for the table ('62%'); None when not recorded."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return None
    return f"{round(100 * float(value))}%"


def checkpoint_table(infos: Sequence[CheckpointInfo]) -> list[dict[str, Any]]:
    """Rows for st.dataframe, one per saved model: what it is and how well it did on its held-out images, as text
    ('62%'; '-' where nothing was recorded)."""
    rows = [{
        "model": f"{info.arch} {info.image_size}px",
        "training": training_text(info.train_config),
        "data": "phantoms" if info.simulated else "BUSI",
        "balanced accuracy": _percentage(info.metrics.get("clean_balanced_accuracy")),
        "accuracy": _percentage(info.metrics.get("clean_accuracy")),
        "sensitivity": _percentage(info.metrics.get("clean_sensitivity")),
        ATTACKED_COLUMN: _attacked(info, "fgsm", TABLE_EPSILON),
        CHECK_COLUMN: "⚠ collapsed" if is_collapsed(info) else "",
        "seed": info.train_config.get("seed"),
        "trained": _when(info)[5:],  # '12-05 16:13': the year would only widen the table
    } for info in infos]
    return [{key: EMPTY if value is None or value == "" else str(value) for key, value in row.items()} for row in rows]


def resnet_note() -> str:
    """Whether ResNet50 can start from ImageNet weights here; busadv never downloads them."""
    pretrained = [m.label for m in MODELS if m.pretrained_available is not None]
    if not pretrained:
        return ""
    names = " and ".join(pretrained)
    if imagenet_weights_available():
        return f"{names} can start from the ImageNet weights found in torchvision's cache."
    return (f"{names} trains **from scratch** here: no ImageNet weights are in torchvision's cache and busadv never "
            "downloads them (copy them there, or set TORCH_HOME, to use them).")


# --------------------------------------------------------------------------- loading

@st.cache_resource(max_entries=6, show_spinner="Loading model…")
def load_model(path: str, version: int) -> Checkpoint:
    """A checkpoint and its model, once per file version (the version in the key drops stale ones)."""
    return load_checkpoint(path, device=pick_device("auto"))


def model_for(info: CheckpointInfo) -> Checkpoint:
    """The loaded model of a listed checkpoint."""
    return load_model(str(info.path), mtime_ns(info.path))


@st.cache_resource(max_entries=8, show_spinner=False)
def _test_images(path: str, version: int, data: str | None) -> tuple[ImageSet, str]:
    checkpoint = load_model(path, version)
    return test_split_for(checkpoint, load_images(checkpoint.image_size))


def test_images_for(info: CheckpointInfo) -> tuple[ImageSet, str]:
    """(images to browse, which images they are): the model's own held-out split when the data matches."""
    return _test_images(str(info.path), mtime_ns(info.path), data_setting())


def condition_text(attack: str, eps: float) -> str:
    """'clean' or 'FGSM ε=0.031 (8/255)'."""
    return "clean" if attack == "none" else f"{attack_label(attack)} ε={format_epsilon(eps)}"
