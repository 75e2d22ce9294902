"""Everything that decides a training run, checked before any work starts; stored inside every checkpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from busadv.attacks.epsilon import check_epsilon, format_epsilon
from busadv.data.split import DEFAULT_SPLIT_POLICY, check_split_policy
from busadv.models.registry import MODELS
from busadv.training.modes import MODES

MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 4096
MAX_SEED = 2**32 - 1
MAX_SEED_RANGE = 10_000  # one range's width (first-last)
LABEL_SOURCES = ("true", "predicted")
MIN_CRITICAL_WEIGHT, MAX_CRITICAL_WEIGHT = 0.1, 10.0
CLASS_BALANCE: dict[str, str] = {
    "none": "plain cross-entropy over the images as they come",
    "loss": "cross-entropy weighted by inverse class frequency",
    "sampler": "batches drawn so that every class is seen equally often",
}
FALLBACK: dict[str, Any] = {"adv_labels": "true", "random_start": False, "clean_mix": 0.0, "warmup_epochs": 0,
                            "class_balance": "none", "trades_beta": 0.0}
# Settings that do not change what a run learns (where it runs, what it watches): left out of its recipe.
NOT_RECIPE = ("seed", "device", "data", "monitor_images", "deterministic")


@dataclass(kw_only=True)
class ModeSettings:
    """The recipe settings a training mode gives defaults for: one declaration for every place that carries them
    (a run's TrainConfig, a grid's ExperimentConfig, a result row). None takes the mode's default
    (busadv.training.modes), then FALLBACK."""

    adv_labels: str | None = None      # "true" (the study) or "predicted" (avoids label leaking)
    random_start: bool | None = None   # adversarial examples from a random start (Wong et al. 2020)
    clean_mix: float | None = None     # weight of the clean loss beside the adversarial loss (0 = adversarial only)
    warmup_epochs: int | None = None   # epsilon ramps up from 0 over this many epochs
    class_balance: str | None = None   # "none", "loss" (inverse-frequency class weights) or "sampler"
    trades_beta: float | None = None   # weight of TRADES' robustness term


MODE_SETTINGS: tuple[str, ...] = tuple(f.name for f in fields(ModeSettings))

AUGMENTATIONS: dict[str, str] = {
    "none": "the images as they are (the study)",
    "ultrasound": "left-right flip, small rotation, shift and zoom, gain and contrast jitter (never up-down: depth "
                  "runs down a B-mode image)",
}
OPTIMIZERS: dict[str, str] = {"adam": "Adam (the study)", "adamw": "AdamW: Adam with decoupled weight decay"}
SCHEDULES: dict[str, str] = {
    "constant": "the learning rate stays where it starts (the study)",
    "onecycle": "one cycle: warm up to the learning rate over the first 3 tenths of the steps, then anneal to ~0",
    "cosine": "linear warm-up over the first epoch, then cosine decay to 0",
}
SELECTIONS: dict[str, str] = {
    "last": "the model after the last epoch (the study)",
    "best": "the epoch with the best validation score, averaged over it and the two epochs before and counted only "
            "after the warm-up: clean balanced accuracy for standard training, balanced accuracy under PGD-5 at "
            "the training epsilon for adversarial training",
    "best-both": "as best, but an adversarial run is scored by the mean of its clean and its PGD-5 balanced accuracy "
                 "on validation (robust accuracy alone peaks early on some splits, before the model has learnt "
                 "its clean task)",
    "best-sensitive": "as best-both, less the shortfall of malignant sensitivity on validation (under PGD-5 for "
                      "adversarial training, clean for standard) below 0.5: an epoch that misses most cancers is "
                      "not chosen for its balanced accuracy alone",
}
CHOOSING_SELECTIONS = ("best", "best-both", "best-sensitive")  # the selections that need a validation split
# The settings a grid may choose among on validation (`experiment --choose-among NAME=V1,V2`), with their types:
# training settings only, none that changes what a validation score measures
# (busadv.training.epoch_count.SCORE_FIELDS).
CHOOSABLE_LEVERS: dict[str, type] = {
    "critical_weight": float, "clean_mix": float, "weight_decay": float, "ema_decay": float, "lr": float,
    "trades_beta": float, "warmup_epochs": int, "batch_size": int, "augment": str, "optimizer": str,
    "schedule": str, "class_balance": str}
SENSITIVITY_FLOOR = 0.5  # select=best-sensitive: the malignant sensitivity below which an epoch's score is docked


@dataclass(kw_only=True)
class TrainingLevers:
    """How carefully a run is trained, beside what it learns from: recorded in every checkpoint and result row.

    The defaults here are the study's recipe (nothing added), so a checkpoint or result file written before
    these settings existed reads as what it was; `BEST_LEVERS` is what `train` and grids use unless told.
    """

    augment: str = "none"          # on-the-fly augmentation of every batch, before any attack (AUGMENTATIONS)
    optimizer: str = "adam"        # OPTIMIZERS
    weight_decay: float = 0.0      # decoupled (AdamW) or L2 (Adam)
    schedule: str = "constant"     # SCHEDULES
    ema_decay: float = 0.0         # exponential moving average of the weights, evaluated and saved; 0 = off
    val_fraction: float = 0.0      # share of the training side held out to choose the epoch; 0 = none
    select: str = "last"           # SELECTIONS; all but "last" need a validation split
    patience: int = 0              # stop after this many epochs without a better validation score; 0 = never
    refit: bool = False            # then train again on every training image for the epochs validation chose
    # The seeds whose runs' pooled validation chose `epochs` ("5-9"; busadv.training.epoch_count), for a run
    # trained that many epochs on every training image; "" = the epoch count was not chosen that way.
    epochs_chosen_on: str = ""
    # The selection (SELECTIONS) whose pooled validation scores chose that count; "" = not recorded (runs and rows
    # from before it was; they chose by best-both). Two grids chosen on the same seeds by different rules are
    # different recipes.
    epochs_chosen_by: str = ""
    # The settings whose values the same seeds' pooled validation chose among, with the values tried
    # ("critical_weight 1, 1.5, 2"); "" = none were (the recipe's values were set by hand).
    levers_chosen_among: str = ""
    # The critical class's (malignant's on BUSI) share of the loss, times this, on top of class_balance: missing a
    # cancer is a worse error than a false alarm. 1 = as class_balance sets it.
    critical_weight: float = 1.0


LEVERS: tuple[str, ...] = tuple(f.name for f in fields(TrainingLevers))
STUDY_LEVERS: dict[str, Any] = {f.name: f.default for f in fields(TrainingLevers)}
# Measured on BUSI (README, "Models worth attacking"): the recipe `train` and grids use unless told otherwise.
@dataclass(kw_only=True)
class BestLevers(TrainingLevers):
    """The levers at busadv's best measured values: the defaults of a run (TrainConfig) and of a grid."""

    augment: str = "ultrasound"
    optimizer: str = "adamw"
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    ema_decay: float = 0.995
    val_fraction: float = 0.15
    select: str = "best-both"   # measured on BUSI: clean +0.04, AutoAttack +0.03 over "best" (README)
    patience: int = 0


BEST_LEVERS: dict[str, Any] = {f.name: f.default for f in fields(BestLevers)}
BEST_TRAINING: dict[str, Any] = {"epochs": 40, "lr": 2e-3, "class_balance": "loss", **BEST_LEVERS}
# The study's own training: Adam at 1e-3, 10 epochs, batch 32, plain cross-entropy, nothing added.
STUDY_TRAINING: dict[str, Any] = {"epochs": 10, "batch_size": 32, "lr": 1e-3, "class_balance": "none",
                                  **STUDY_LEVERS}
TRAINING_RECIPES = ("best", "study")


def recipe_training(recipe: str) -> dict[str, Any]:
    """The training settings a named recipe fixes: "study" the study's, anything else busadv's best."""
    return dict(STUDY_TRAINING if recipe == "study" else BEST_TRAINING)


def lever_value_text(value: Any) -> str:
    """A value chosen among as recorded and shown: 1.5, 2, 'none' (floats without trailing zeros)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def chosen_among_text(values: Mapping[str, Sequence[Any]]) -> str:
    """'critical_weight 1, 1.5, 2; clean_mix 0.3, 0.5': what a run records its values were chosen among."""
    return "; ".join(f"{name} {', '.join(map(lever_value_text, tried))}" for name, tried in values.items())


def check_levers(levers: TrainingLevers, seed: int | None = None) -> list[str]:
    """What is wrong with a run's levers, one message each (empty: all fine); epochs_chosen_on is rewritten in
    its short form. A run whose epoch count other seeds chose trains it on every training image and keeps the last
    epoch; its own `seed` among them would mean it chose on itself after all."""
    problems = []
    for name, allowed in (("augment", AUGMENTATIONS), ("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                          ("select", SELECTIONS)):
        if getattr(levers, name) not in allowed:
            problems.append(f"{name} must be one of {', '.join(allowed)}, got {str(getattr(levers, name))[:40]!r}")
    if not (isinstance(levers.weight_decay, (int, float)) and not isinstance(levers.weight_decay, bool)
            and 0.0 <= levers.weight_decay <= 1.0):
        problems.append(f"weight_decay must be in [0, 1], got {levers.weight_decay!r}")
    if not (isinstance(levers.ema_decay, (int, float)) and not isinstance(levers.ema_decay, bool)
            and (levers.ema_decay == 0 or 0.5 <= levers.ema_decay < 1.0)):
        problems.append(f"ema_decay must be 0 (off) or in [0.5, 1), got {levers.ema_decay!r}")
    if not (isinstance(levers.val_fraction, (int, float)) and not isinstance(levers.val_fraction, bool)
            and 0.0 <= levers.val_fraction <= 0.5):
        problems.append(f"val_fraction must be in [0, 0.5], got {levers.val_fraction!r}")
    if not (isinstance(levers.patience, int) and not isinstance(levers.patience, bool)
            and 0 <= levers.patience <= MAX_EPOCHS):
        problems.append(f"patience must be a whole number >= 0, got {levers.patience!r}")
    if not (isinstance(levers.critical_weight, (int, float)) and not isinstance(levers.critical_weight, bool)
            and MIN_CRITICAL_WEIGHT <= levers.critical_weight <= MAX_CRITICAL_WEIGHT):
        problems.append(f"critical_weight must be in [{MIN_CRITICAL_WEIGHT:g}, {MAX_CRITICAL_WEIGHT:g}], "
                        f"got {str(levers.critical_weight)[:40]!r}")
    if levers.select in CHOOSING_SELECTIONS and not levers.val_fraction:
        problems.append(f"select={levers.select} chooses the epoch on a validation split: "
                        "set val_fraction > 0 (e.g. 0.15)")
    if levers.patience and not levers.val_fraction:
        problems.append("patience stops on the validation score: set val_fraction > 0 (e.g. 0.15)")
    if not isinstance(levers.epochs_chosen_on, str):
        problems.append(f"epochs_chosen_on must be seeds like 5-9, got {str(levers.epochs_chosen_on)[:40]!r}")
    elif levers.epochs_chosen_on:
        try:
            chosen_on = parse_seed_list(levers.epochs_chosen_on, "epochs_chosen_on")
        except ValueError as exc:
            problems.append(str(exc))
        else:
            if chosen_on:
                levers.epochs_chosen_on = format_seed_list(chosen_on)
                problems += _chosen_epochs_problems(levers, chosen_on, seed)
            else:
                problems.append("epochs_chosen_on names no seed")
    if levers.epochs_chosen_by not in ("", *CHOOSING_SELECTIONS):
        problems.append(f"epochs_chosen_by must be one of {', '.join(CHOOSING_SELECTIONS)}, got "
                        f"{str(levers.epochs_chosen_by)[:40]!r}")
    elif levers.epochs_chosen_by and not levers.epochs_chosen_on:
        problems.append("epochs_chosen_by says how other seeds' validation chose the epoch count: set "
                        "epochs_chosen_on to those seeds too")
    if not isinstance(levers.levers_chosen_among, str) or len(levers.levers_chosen_among) > 200:
        problems.append(f"levers_chosen_among must be text like 'critical_weight 1, 2' (at most 200 characters), "
                        f"got {str(levers.levers_chosen_among)[:40]!r}")
    elif levers.levers_chosen_among and not levers.epochs_chosen_on:
        problems.append("levers_chosen_among says which values other seeds' validation chose among: set "
                        "epochs_chosen_on to those seeds too")
    if not isinstance(levers.refit, bool):
        problems.append(f"refit must be true or false, got {str(levers.refit)[:40]!r}")
    elif levers.refit and not (levers.val_fraction and levers.select in CHOOSING_SELECTIONS):
        problems.append("refit trains again for the number of epochs validation chose: set val_fraction > 0 "
                        f"and select to {' or '.join(CHOOSING_SELECTIONS)}")
    return problems


def _chosen_epochs_problems(levers: TrainingLevers, chosen_on: list[int], seed: int | None) -> list[str]:
    problems = []
    if levers.val_fraction or levers.select != "last" or levers.refit or levers.patience:
        problems.append("a run whose epoch count other seeds chose trains on every training image for it: "
                        "set val_fraction 0, select last, no refit and no patience")
    if seed is not None and seed in chosen_on:
        problems.append(f"seed {seed} is among the seeds that chose its epoch count "
                        f"({levers.epochs_chosen_on}): choose on other seeds")
    return problems


@dataclass
class TrainConfig(ModeSettings, BestLevers):
    """One run. Built with no arguments it is busadv's best measured recipe; `TrainConfig.study(...)` is the
    study's own (Adam 1e-3, 10 epochs, no augmentation, last epoch)."""

    # The best recipe's class balance (None: the mode's own, which is plain cross-entropy for every built-in mode).
    class_balance: str | None = BEST_TRAINING["class_balance"]
    arch: str = "simplecnn"
    mode: str = "standard"
    epsilon: float = 0.0           # training epsilon, [0, 1] pixel scale; ignored by standard training
    epochs: int = BEST_TRAINING["epochs"]
    batch_size: int = 32
    lr: float = BEST_TRAINING["lr"]  # the peak of a schedule
    seed: int = 0
    image_size: int | None = None  # None: the model's default (SimpleCNN 128, ResNet50 224)
    test_fraction: float = 0.2
    split_policy: str = DEFAULT_SPLIT_POLICY
    pgd_steps: int = 7             # steps of PGD/TRADES training and of the per-epoch PGD watch
    pretrained: bool = False
    device: str = "auto"
    data: str | None = None        # BUSI folder; None: $BUSADV_DATA, else the simulated phantoms
    monitor_images: int = 64       # test images (stratified) attacked after each epoch of adversarial training
    deterministic: bool = False    # on CUDA: deterministic cuDNN kernels instead of the fastest ones

    def __post_init__(self) -> None:
        problems: list[str] = check_levers(self, self.seed if isinstance(self.seed, int) else None)

        def check(condition: bool, message: str) -> None:
            if not condition:
                problems.append(message)

        try:
            spec = MODELS.get(self.arch)
            self.arch = spec.name
            if self.image_size is None:
                self.image_size = spec.default_image_size
            spec.check_image_size(self.image_size)
            if self.pretrained and spec.pretrained_available is None:
                problems.append(f"{spec.name} has no pretrained weights")
        except (ValueError, TypeError) as exc:
            problems.append(str(exc))
        try:
            mode = MODES.get(self.mode)
            self.mode = mode.name
        except ValueError as exc:
            problems.append(str(exc))
            mode = None
        for name, fallback in FALLBACK.items():
            if getattr(self, name) is None:
                setattr(self, name, (mode.defaults if mode else {}).get(name, fallback))
        try:
            self.epsilon = check_epsilon(self.epsilon)
        except (ValueError, TypeError) as exc:
            problems.append(f"training epsilon: {exc}")
        if mode is not None and mode.adversarial and not self.epsilon > 0:
            problems.append(f"{self.mode} training needs an epsilon in (0, 1], got {self.epsilon}")
        if mode is not None and not mode.adversarial:
            self.epsilon = 0.0
        check(isinstance(self.epochs, int) and 1 <= self.epochs <= MAX_EPOCHS,
              f"epochs must be a whole number from 1 to {MAX_EPOCHS}, got {self.epochs}")
        check(isinstance(self.batch_size, int) and 1 <= self.batch_size <= MAX_BATCH_SIZE,
              f"batch size must be a whole number from 1 to {MAX_BATCH_SIZE}, got {self.batch_size}")
        check(isinstance(self.lr, (int, float)) and 0 < self.lr <= 10,
              f"learning rate must be in (0, 10], got {self.lr}")
        check(isinstance(self.seed, int) and 0 <= self.seed <= MAX_SEED,
              f"seed must be a whole number from 0 to {MAX_SEED}, got {self.seed}")
        check(isinstance(self.test_fraction, (int, float)) and 0 < self.test_fraction < 1,
              f"test fraction must be between 0 and 1, got {self.test_fraction}")
        try:
            self.split_policy = check_split_policy(self.split_policy)
        except ValueError as exc:
            problems.append(str(exc))
        check(self.adv_labels in LABEL_SOURCES, f"adv_labels must be 'true' or 'predicted', got {self.adv_labels!r}")
        check(isinstance(self.clean_mix, (int, float)) and 0.0 <= self.clean_mix < 1.0,
              f"clean_mix must be in [0, 1), got {self.clean_mix}")
        check(isinstance(self.warmup_epochs, int) and 0 <= self.warmup_epochs <= MAX_EPOCHS,
              f"warmup_epochs must be a whole number >= 0, got {self.warmup_epochs}")
        check(self.class_balance in CLASS_BALANCE,
              f"class_balance must be one of {', '.join(CLASS_BALANCE)}, got {self.class_balance!r}")
        check(isinstance(self.trades_beta, (int, float)) and 0 <= self.trades_beta <= 100,
              f"trades_beta must be in [0, 100], got {self.trades_beta}")
        if mode is not None and mode.prepare is not None and self.clean_mix:
            problems.append(f"{mode.name} trains on the perturbed set only; clean_mix does not apply")
        check(isinstance(self.pgd_steps, int) and 1 <= self.pgd_steps <= 1000,
              f"PGD steps must be a whole number from 1 to 1000, got {self.pgd_steps}")
        check(isinstance(self.monitor_images, int) and 0 <= self.monitor_images <= 100_000,
              f"monitor_images must be a whole number >= 0, got {self.monitor_images}")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def recorded(cls, values: dict[str, Any]) -> TrainConfig:
        """A run as a checkpoint or state recorded it: levers it does not name predate them (the study's), and so
        does a class balance it does not name (the mode's own, as runs were trained then)."""
        return cls.from_dict({**STUDY_LEVERS, "class_balance": None, **values})

    @classmethod
    def study(cls, **values: Any) -> TrainConfig:
        """The study's recipe: Adam at 1e-3, 10 epochs, batch 32, no augmentation, the last epoch's model."""
        return cls.from_dict({**STUDY_TRAINING, **values})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def recipe(self) -> dict[str, Any]:
        """The settings that change what a run learns: runs that differ in any of them are never averaged."""
        return {k: v for k, v in self.to_dict().items() if k not in NOT_RECIPE}

    def describe(self) -> str:
        if not MODES.get(self.mode).adversarial:
            return f"{self.arch}, standard training"
        return f"{self.arch}, {self.mode} training at eps={format_epsilon(self.epsilon)}"


def parse_seed_list(text: str | list | tuple, option: str = "seeds") -> list[int]:
    """'0, 1, 2' or '0-4' -> [0, 1, 2, 3, 4]; the message names the option and the bad entry.

    Linear in the number of seeds (a set remembers the ones seen); one range holds at most
    MAX_SEED_RANGE + 1 seeds, so a typo like 0-1000000 is refused before any list is built.
    """
    parts = list(text) if isinstance(text, (list, tuple)) else str(text).replace(";", ",").split(",")
    out: list[int] = []
    seen: set[int] = set()
    for part in parts:
        item = str(part).strip()
        if not item:
            continue
        try:
            if "-" in item[1:]:
                first, last = (int(v) for v in item.split("-", 1))
            else:
                first = last = int(item)
        except ValueError:
            raise ValueError(f"{option}: {item[:20]!r} is not a whole number or a range like 0-4") from None
        for value in (first, last):
            if not 0 <= value <= MAX_SEED:
                raise ValueError(f"{option}: {value} is outside 0 to {MAX_SEED}")
        if last < first:
            raise ValueError(f"{option}: {item[:20]!r} runs backwards; write the smaller seed first: {last}-{first}")
        if last - first > MAX_SEED_RANGE:
            raise ValueError(f"{option}: {item[:30]!r} spans {last - first + 1:,} seeds; one range holds at most "
                             f"{MAX_SEED_RANGE + 1:,}")
        for value in range(first, last + 1):
            if value not in seen:
                seen.add(value)
                out.append(value)
    return out


def format_seed_list(seeds: list[int] | tuple[int, ...]) -> str:
    """[5, 6, 7, 8, 9, 12] -> '5-9, 12': the short form parse_seed_list reads back."""
    parts: list[str] = []
    ordered = sorted(set(seeds))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if j == i else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ", ".join(parts)
