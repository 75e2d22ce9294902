"""How long a grid will take, from the training speed this machine measured (else the registry's figures)."""

from __future__ import annotations

import math
import os

from busadv.experiments.config import ExperimentConfig
from busadv.models.checkpoints import list_checkpoints
from busadv.models.registry import MODELS
from busadv.training import MODES

WATCH_COST = 0.6  # an adversarial epoch's FGSM+PGD watch, as a share of a standard epoch (measured by the benchmark)


def fallback_rates() -> dict[str, float]:
    return {spec.name: spec.cpu_images_per_second for spec in MODELS}


def measured_rates(folder: str | os.PathLike | None = None) -> tuple[dict[str, float], bool]:
    """(standard-training images/second per model at its default size, whether any was measured here)."""
    rates = fallback_rates()
    found: set[str] = set()
    for info in list_checkpoints(folder):  # newest first
        n_train = info.data.get("n_train")
        seconds = info.train_seconds
        if info.arch in found or info.train_config.get("mode") != "standard" or not n_train or not seconds:
            continue
        # Convolution cost grows with the pixel count: report the rate at the model's default size.
        scale = (info.image_size / MODELS.get(info.arch).default_image_size) ** 2
        rates[info.arch] = float(n_train) * int(info.train_config.get("epochs", 1)) / seconds * scale
        found.add(info.arch)
    return rates, bool(found)


def rate_at(rates: dict[str, float], arch: str, image_size: int) -> float:
    """Images/second at another size: cost grows with the pixel count."""
    spec = MODELS.get(arch)
    return rates.get(arch, spec.cpu_images_per_second) * (spec.default_image_size / image_size) ** 2


def estimate_seconds(config: ExperimentConfig, rates: dict[str, float], n_train: int) -> float:
    """Rough wall time of a grid (training, the per-epoch watch of adversarial runs, evaluation ignored)."""
    total = 0.0
    for run in config.runs():
        rate = rate_at(rates, run.arch, int(run.image_size or 0))
        mode = MODES.get(run.mode)
        factor = mode.cost(run) + (WATCH_COST if mode.adversarial and run.monitor_images else 0.0)
        total += n_train * run.epochs * factor / rate if rate > 0 else math.nan
    return total
