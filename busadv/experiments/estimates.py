"""How long a grid will take, from the training speed this machine measured (else the registry's figures)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

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
        if info.train_config.get("refit"):  # two passes over different images and lengths: no plain rate
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
    images when the run keeps one (then the test set is not looked at), else the watch of the test set; a refit
    run's second pass is counted at its longest (validation chose the last epoch)."""
    rate = rate_at(rates, run.arch, int(run.image_size or 0))
    mode = MODES.get(run.mode)
    n_val = round(n_train * float(getattr(run, "val_fraction", 0.0) or 0.0))
    if n_val:
        check = validation_images(n_val, mode.adversarial and run.epsilon > 0)
    else:
        check = watch_images(n_test, run.monitor_images, run.pgd_steps, mode.adversarial)
    per_epoch = (n_train - n_val) * mode.cost(run) + check
    if n_val and getattr(run, "refit", False):  # the second pass, on every image, as long as it can be: all epochs
        per_epoch += n_train * mode.cost(run)
    return run.epochs * per_epoch / rate if rate > 0 else math.nan


def estimate_seconds(config: ExperimentConfig, rates: dict[str, float], n_train: int,
                     n_test: int | None = None) -> float:
    """Rough wall time of a grid: training and its per-epoch watch (the final evaluation is left out)."""
    n_test = n_train // 4 if n_test is None else n_test
    return sum(run_seconds(run, rates, n_train, n_test) for run in config.runs())


# Test-time cost per test image and condition, in training images, measured on BUSI with one core (SimpleCNN,
# 128 px): training 365 images/s (a 10-epoch checkpoint's own timing); PGD-10 0.035-0.062 s per image.
PGD_STEP = 2.0
# AutoAttack's members each run only on the images every earlier one failed to flip (busadv.attacks.autoattack):
# APGD-CE's 100 gradients on the images the model gets right, then APGD-T (2 x 100), DeepFool (~50) and Square
# (1,000 forwards, ~333 gradients) on those that resist it: 100 c + 583 r gradients per image for a clean share c
# and a robust share r. AUTOATTACK is the worst case (c = r = 1: 4.3 s per image measured). Measured in training
# images (2026-12-06, 64 BUSI test images at 4/255, one core each): 321 for a standard model (c 0.72, r 0.16;
# the formula says 363) and 744 for an FGSM-trained one (c 0.61, r 0.34; the formula says 569).
# LIKELY_SHARES are busadv's own models' (README): 292 and 730 training images per test image.
AUTOATTACK = 1500.0
AUTOATTACK_GRADIENTS = (100.0, 583.0)  # per image: on the clean-correct share, on the robust share
LIKELY_SHARES = {False: (0.75, 0.1), True: (0.7, 0.45)}  # (clean, robust) share: standard, adversarial models


def autoattack_cost(clean_share: float, robust_share: float) -> float:
    """AutoAttack's cost per test image, in training images, on a model with these shares of images right."""
    on_clean, on_robust = AUTOATTACK_GRADIENTS
    return AUTOATTACK * (on_clean * clean_share + on_robust * robust_share) / (on_clean + on_robust)


@dataclass(frozen=True)
class TimeEstimate:
    """Seconds of work, AutoAttack at its likely cost; its worst case beside it, since that is what a user can
    act on (a robust model comes near it, a weak one never does)."""

    seconds: float = 0.0
    autoattack: float = 0.0        # AutoAttack's likely part of `seconds`
    autoattack_worst: float = 0.0  # AutoAttack if every image resisted every member

    def __add__(self, other: TimeEstimate) -> TimeEstimate:
        return TimeEstimate(self.seconds + other.seconds, self.autoattack + other.autoattack,
                            self.autoattack_worst + other.autoattack_worst)

    def plus(self, seconds: float) -> TimeEstimate:
        return TimeEstimate(self.seconds + seconds, self.autoattack, self.autoattack_worst)


def evaluation_seconds(arch: str, image_size: int, conditions: Sequence[tuple[str, float]],
                       rates: dict[str, float], n_test: int, pgd_steps: int = 10,
                       adversarial: bool = False) -> TimeEstimate:
    """All test conditions of one model; AutoAttack dwarfs everything else, and depends on how robust the
    model is (`adversarial`: trained to be, so most of its images resist the first members)."""
    rate = rate_at(rates, arch, image_size)
    if rate <= 0:
        return TimeEstimate(math.nan, math.nan, math.nan)
    likely = autoattack_cost(*LIKELY_SHARES[adversarial])
    cheap = {"pgd": PGD_STEP * pgd_steps}
    n_autoattack = sum(attack == "autoattack" for attack, _ in conditions)
    other = sum(FORWARD if attack == "none" else cheap.get(attack, 1 + FORWARD)
                for attack, _ in conditions if attack != "autoattack")
    return TimeEstimate(n_test * (other + n_autoattack * likely) / rate, n_test * n_autoattack * likely / rate,
                        n_test * n_autoattack * AUTOATTACK / rate)


def trained_to_resist(run: TrainConfig) -> bool:
    return MODES.get(run.mode).adversarial and run.epsilon > 0


def grid_conditions(config: ExperimentConfig) -> list[tuple[str, float]]:
    """What every run of a grid is tested under: the clean test set, then each attack at each test epsilon."""
    return [("none", 0.0)] + [(a, e) for a in config.test_attacks for e in config.test_epsilons if e > 0]


def grid_seconds(config: ExperimentConfig, rates: dict[str, float], n_train: int, n_test: int) -> TimeEstimate:
    """Training and testing every run of a grid, one after another (with epochs_chosen_on, the choosing seeds'
    runs first; the grid's own are counted at its `epochs`, as their counts are not chosen yet)."""
    total = stage_seconds(config, config.runs(), rates, n_train, n_test)
    if config.epochs_chosen_on:
        total += stage_seconds(config.epoch_chooser(), config.choosing_runs(), rates, n_train, n_test)
    return total


def stage_seconds(grid: ExperimentConfig, runs: Sequence[TrainConfig], rates: dict[str, float], n_train: int,
                  n_test: int) -> TimeEstimate:
    """Training `runs` and testing each as `grid` tests its runs, one after another."""
    total = TimeEstimate()
    conditions = grid_conditions(grid)
    for run in runs:
        evaluation = evaluation_seconds(run.arch, int(run.image_size or 0), conditions, rates, n_test,
                                        grid.eval_pgd_steps, trained_to_resist(run))
        total += evaluation.plus(run_seconds(run, rates, n_train, n_test))
    return total


def choosing_share(config: ExperimentConfig, images: int = 780) -> float:
    """The share of a grid's time its epoch-choosing stage takes (0 without one), for the progress bar.

    Why by cost and not by runs: the choosing runs validate every epoch but are tested clean only, while the
    grid's own runs face AutoAttack, so counting runs made the first stage's bar, and its ETA, run slow. Every
    term grows with the image count alike, so a nominal BUSI-sized set gives the share."""
    if not config.epochs_chosen_on:
        return 0.0
    n_test = max(1, math.ceil(config.test_fraction * images))
    n_train = max(1, images - n_test)
    first = stage_seconds(config.epoch_chooser(), config.choosing_runs(), {}, n_train, n_test).seconds
    total = grid_seconds(config, {}, n_train, n_test).seconds
    if not (math.isfinite(first) and math.isfinite(total)) or total <= 0:
        planned = len(config.choosing_runs())
        return planned / (planned + len(config.runs()))
    return min(max(first / total, 0.01), 0.99)


def grid_estimate(config: ExperimentConfig, images: int, rates: dict[str, float], measured: bool) -> str:
    """A grid's rough time in words, from how many images its data holds (its test share held out), or ''."""
    n_test = math.ceil(config.test_fraction * images)
    if images - n_test <= 0:
        return ""
    return estimate_words(grid_seconds(config, rates, images - n_test, n_test), measured)


def estimate_words(estimate: TimeEstimate, measured: bool,
                   skip: str = "leave it out of the test attacks to skip it") -> str:
    """'roughly 2.0 h at …, of which AutoAttack about 1.0 h (up to 2.5 h …)', or '' when nothing can be said.

    Why AutoAttack apart: how long it takes depends on how robust the models turn out, which no one knows
    before, so its likely time and its worst case are both said, with how to skip it."""
    total = estimate.seconds
    if not total or not math.isfinite(total):
        return ""
    speed = "this machine's measured training speed" if measured else "the usual speed of two CPU cores"
    text = f"roughly {format_seconds(total)} at {speed}"
    if estimate.autoattack_worst > 0.2 * total:
        text += (f", of which AutoAttack about {format_seconds(estimate.autoattack)} (up to "
                 f"{format_seconds(estimate.autoattack_worst)} if the models resist it on every image; {skip})")
    return text
