"""How long a grid will take, from the training speed this machine measured (else the registry's figures)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from busadv.experiments.config import ExperimentConfig
from busadv.models.checkpoints import list_checkpoints
from busadv.models.registry import MODELS
from busadv.progress import format_seconds
from busadv.training import MODES, TrainConfig
from busadv.training.loop import VALIDATION_PGD_STEPS

FORWARD = 1 / 3  # a forward pass costs about a third of a training step (forward + backward)


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


def watch_images(n_test: int, monitor_images: int, pgd_steps: int, adversarial: bool) -> float:
    """What the per-epoch watch costs, in training-image equivalents: the clean test set forward, and for
    adversarial runs FGSM (one gradient, one forward) and PGD (a gradient per step) on the watch images."""
    cost = n_test * FORWARD
    if adversarial and monitor_images:
        watched = min(monitor_images, n_test)
        cost += watched * (1 + FORWARD) + watched * (pgd_steps + FORWARD)
    return cost


def validation_images(n_val: int, adversarial: bool) -> float:
    """What the per-epoch validation costs, in training-image equivalents: the validation images forward, and
    for adversarial runs FGSM and PGD-5 on them (busadv.training.loop.validate_epoch)."""
    cost = n_val * FORWARD
    if adversarial:
        cost += n_val * (1 + FORWARD) + n_val * (VALIDATION_PGD_STEPS + FORWARD)
    return cost


def run_seconds(run: TrainConfig, rates: dict[str, float], n_train: int, n_test: int) -> float:
    """Training one run, with its per-epoch check: a validation split carved from the `n_train` training-side
    images when the run keeps one (then the test set is not looked at), else the watch of the test set."""
    rate = rate_at(rates, run.arch, int(run.image_size or 0))
    mode = MODES.get(run.mode)
    n_val = round(n_train * float(getattr(run, "val_fraction", 0.0) or 0.0))
    if n_val:
        check = validation_images(n_val, mode.adversarial and run.epsilon > 0)
    else:
        check = watch_images(n_test, run.monitor_images, run.pgd_steps, mode.adversarial)
    per_epoch = (n_train - n_val) * mode.cost(run) + check
    return run.epochs * per_epoch / rate if rate > 0 else math.nan


def estimate_seconds(config: ExperimentConfig, rates: dict[str, float], n_train: int,
                     n_test: int | None = None) -> float:
    """Rough wall time of a grid: training and its per-epoch watch (the final evaluation is left out)."""
    n_test = n_train // 4 if n_test is None else n_test
    return sum(run_seconds(run, rates, n_train, n_test) for run in config.runs())


# Test-time cost per test image and condition, in training images, measured on BUSI with one core (SimpleCNN,
# 128 px): training 365 images/s (a 10-epoch checkpoint's own timing); PGD-10 0.035-0.062 s per image; AutoAttack
# 4.3 s per image when every image resists every member (each runs its whole budget: a collapsed model's do) and
# 0.6 s on a model whose images flip early. AutoAttack is counted at that worst case.
PGD_STEP = 2.0
AUTOATTACK = 1500.0


def evaluation_seconds(arch: str, image_size: int, conditions: Sequence[tuple[str, float]],
                       rates: dict[str, float], n_test: int, pgd_steps: int = 10) -> tuple[float, float]:
    """(all test conditions of one model, the AutoAttack part of it): AutoAttack dwarfs everything else."""
    rate = rate_at(rates, arch, image_size)
    if rate <= 0:
        return math.nan, math.nan
    cost = {"pgd": PGD_STEP * pgd_steps, "autoattack": AUTOATTACK}
    total = sum(cost.get(attack, 1 + FORWARD) if attack != "none" else FORWARD for attack, _ in conditions)
    strongest = sum(AUTOATTACK for attack, _ in conditions if attack == "autoattack")
    return n_test * total / rate, n_test * strongest / rate


def grid_conditions(config: ExperimentConfig) -> list[tuple[str, float]]:
    """What every run of a grid is tested under: the clean test set, then each attack at each test epsilon."""
    return [("none", 0.0)] + [(a, e) for a in config.test_attacks for e in config.test_epsilons if e > 0]


def grid_seconds(config: ExperimentConfig, rates: dict[str, float], n_train: int,
                 n_test: int) -> tuple[float, float]:
    """(training and testing every run of a grid, one after another; the AutoAttack part at its worst case)."""
    total = strongest = 0.0
    conditions = grid_conditions(config)
    for run in config.runs():
        evaluation, autoattack = evaluation_seconds(run.arch, int(run.image_size or 0), conditions, rates, n_test,
                                                    config.eval_pgd_steps)
        total += run_seconds(run, rates, n_train, n_test) + evaluation
        strongest += autoattack
    return total, strongest


def grid_estimate(config: ExperimentConfig, images: int, rates: dict[str, float], measured: bool) -> str:
    """A grid's rough time in words, from how many images its data holds (its test share held out), or ''."""
    n_test = math.ceil(config.test_fraction * images)
    if images - n_test <= 0:
        return ""
    return estimate_words(*grid_seconds(config, rates, images - n_test, n_test), measured)


def estimate_words(total: float, autoattack: float, measured: bool,
                   skip: str = "leave it out of the test attacks to skip it") -> str:
    """'roughly 2.0 h at …, of which AutoAttack up to 1.5 h (…)', or '' when nothing can be said.

    Why AutoAttack apart: it is counted at its worst case (every member's whole budget on every image), which
    a robust model comes near and a weak one never does, so it is the part of an estimate a user can act on."""
    if not total or not math.isfinite(total):
        return ""
    speed = "this machine's measured training speed" if measured else "the usual speed of two CPU cores"
    text = f"roughly {format_seconds(total)} at {speed}"
    if autoattack > 0.2 * total:
        text += (f", of which AutoAttack up to {format_seconds(autoattack)} (it runs its whole budget on every "
                 f"image a model resists; {skip})")
    return text
