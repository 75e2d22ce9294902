"""A grid of runs (models x training modes x training epsilons x seeds), checked before any run starts."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from busadv.attacks import ATTACKS, STUDY_EPSILONS, check_epsilon
from busadv.data.split import DEFAULT_SPLIT_POLICY
from busadv.experiments.backends import BACKENDS, DEFAULT_BACKEND
from busadv.models.registry import MODELS
from busadv.registry import parse_name_list
from busadv.training import MODES, TrainConfig, format_seed_list, parse_seed_list
from busadv.training.config import (
    BEST_TRAINING,
    CHOOSABLE_LEVERS,
    CHOOSING_SELECTIONS,
    LEVERS,
    STUDY_TRAINING,
    BestLevers,
    ModeSettings,
    chosen_among_text,
)

MAX_RUNS = 10_000
MAX_LEVER_VALUES = 8
MAX_COMBINATIONS = 64  # each is a set of choosing runs: 64 already means hundreds of runs before the grid's own
RunGroup = tuple[str, str, float]  # (model, training mode, training epsilon): the runs one epoch count is chosen for


@dataclass
class ExperimentConfig(ModeSettings, BestLevers):
    """A grid; its ModeSettings apply to every run (None: each training mode's own default), and so do its
    TrainingLevers (busadv's best measured recipe unless told; the study preset sets the study's)."""

    # The best recipe's class balance, as a run's (TrainConfig): left to the modes (None), a grid's FGSM runs
    # trained on unweighted loss and lost about 0.2 clean balanced accuracy to the majority class.
    class_balance: str | None = BEST_TRAINING["class_balance"]

    archs: list[str] = field(default_factory=lambda: ["simplecnn"])
    modes: list[str] = field(default_factory=lambda: ["standard", "fgsm"])
    train_epsilons: list[float] = field(default_factory=lambda: list(STUDY_EPSILONS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    test_attacks: list[str] = field(default_factory=lambda: ["fgsm"])
    test_epsilons: list[float] = field(default_factory=lambda: list(STUDY_EPSILONS))
    epochs: int = BEST_TRAINING["epochs"]
    batch_size: int = 32
    lr: float = BEST_TRAINING["lr"]
    image_sizes: dict[str, int] = field(default_factory=dict)
    data: str | None = None
    test_fraction: float = 0.2
    split_policy: str = DEFAULT_SPLIT_POLICY
    train_pgd_steps: int = 7
    eval_pgd_steps: int = 10
    pretrained: bool = False
    monitor_images: int = 64
    save_checkpoints: bool = False
    device: str = "auto"
    name: str = "experiment"
    # Where the runs execute (busadv.experiments.backends), never what they compute: in no result row.
    backend: str = DEFAULT_BACKEND  # "local" (a pool of processes here) or "ray"
    address: str | None = None      # ray: a cluster's host:port or ray://host:port; None: $RAY_ADDRESS, else Ray here
    workers: int | None = None      # runs at once; None: as many as the cores and memory hold; 1: one after another
    # With epochs_chosen_on: settings whose values the choosing seeds' pooled validation chooses among, with the
    # epoch count, per model, mode and training ε ({"critical_weight": [1.0, 2.0]}; CHOOSABLE_LEVERS).
    choose_among: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.archs = parse_name_list(self.archs, MODELS, "models")
        self.modes = parse_name_list(self.modes, MODES, "training modes")
        self.test_attacks = parse_name_list(self.test_attacks, ATTACKS, "test attacks")
        try:
            self.train_epsilons = [check_epsilon(e) for e in self.train_epsilons]
            self.test_epsilons = [check_epsilon(e) for e in self.test_epsilons]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"epsilons: {exc}") from None
        if any(isinstance(s, bool) or not isinstance(s, int) for s in self.seeds):
            raise ValueError(f"seeds must be whole numbers, got {self.seeds}")
        if not self.archs or not self.modes or not self.seeds:
            raise ValueError("an experiment needs at least one model, one training mode and one seed")
        if any(MODES.get(m).adversarial for m in self.modes) and not self.train_epsilons:
            raise ValueError("adversarial training modes need at least one training epsilon")
        if not isinstance(self.eval_pgd_steps, int) or not 1 <= self.eval_pgd_steps <= 1000:
            raise ValueError(f"evaluation PGD steps must be a whole number from 1 to 1000, got {self.eval_pgd_steps}")
        if not str(self.name).strip() or len(str(self.name)) > 80:
            raise ValueError("an experiment name has 1 to 80 characters")
        self._check_backend()
        self._check_epochs_chosen_on()
        self._check_choose_among()
        runs = self.runs()  # validates every run's settings up front, before hours are spent
        if len(runs) > MAX_RUNS:
            raise ValueError(f"{len(runs)} runs is more than {MAX_RUNS}; split the grid")
        choosing = (len(runs) // len(self.seeds) * len(parse_seed_list(self.epochs_chosen_on))
                    * math.prod(len(values) for values in self.choose_among.values()))
        if choosing > MAX_RUNS:
            raise ValueError(f"{choosing} runs to choose the epoch counts is more than {MAX_RUNS}; choose on fewer "
                             "seeds")
        if self.choose_among:
            self.choosing_runs()  # every value tried is checked as the runs will take it

    def _check_backend(self) -> None:
        try:
            self.backend = BACKENDS.coerce(self.backend)
        except ValueError as exc:
            raise ValueError(f"backend: {exc}") from None
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()
                                         or any(c.isspace() for c in self.address.strip())):
            raise ValueError(f"address must be a Ray cluster's host:port, got {self.address!r}")
        self.address = self.address.strip() if self.address else None
        if self.address and self.backend != "ray":
            raise ValueError("an address names a Ray cluster: it needs the ray backend (--backend ray)")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or not 1 <= self.workers <= 4096):
            raise ValueError(f"workers must be a whole number from 1 to 4096, got {self.workers!r}")

    def _check_epochs_chosen_on(self) -> None:
        """Seeds that choose each group's epoch count first (on validation), apart from the seeds then tested."""
        if self.epochs_chosen_by:
            raise ValueError("a grid's runs record the select that chose their epoch counts themselves: leave "
                             "epochs_chosen_by unset")
        given = self.epochs_chosen_on
        if isinstance(given, (list, tuple)):
            if any(isinstance(s, bool) or not isinstance(s, int) for s in given):
                raise ValueError(f"epochs_chosen_on must be seeds like 5-9, got {list(given)[:10]}")
            chosen_on = parse_seed_list(list(given), "epochs chosen on")
        elif isinstance(given, str):
            chosen_on = parse_seed_list(given, "epochs chosen on")
        else:
            raise ValueError(f"epochs_chosen_on must be seeds like 5-9, got {str(given)[:40]!r}")
        self.epochs_chosen_on = format_seed_list(chosen_on)
        if not chosen_on:
            return
        shared = sorted(set(chosen_on) & set(self.seeds))
        if shared:
            raise ValueError(f"seed(s) {format_seed_list(shared)} both choose the epoch counts and are tested: the "
                             "seeds that choose must be others (e.g. seeds 0-4, epochs chosen on 5-9)")
        if not (self.val_fraction and self.select in CHOOSING_SELECTIONS) or self.patience or self.refit:
            raise ValueError("the epoch counts are chosen on the validation split of every epoch: the choosing runs "
                             f"need val_fraction > 0, select {' or '.join(CHOOSING_SELECTIONS)}, no patience and no "
                             "refit (busadv's best recipe has them)")

    def _check_choose_among(self) -> None:
        """Values typed on a command line or sent by a form, each coerced to its setting's type; at least two
        distinct values per setting, so there is something to choose."""
        given = self.choose_among
        if not isinstance(given, dict):
            raise ValueError(f"choose_among maps settings to values, got {str(given)[:40]!r}")
        if self.levers_chosen_among:
            raise ValueError("a grid's runs record the values their validation chose among themselves: leave "
                             "levers_chosen_among unset")
        if given and not self.epochs_chosen_on:
            raise ValueError("values are chosen on the validation of other seeds than those tested: give the seeds "
                             "that choose (epochs_chosen_on, e.g. 5-9) with them")
        checked: dict[str, list[Any]] = {}
        for name, values in given.items():
            kind = CHOOSABLE_LEVERS.get(name) if isinstance(name, str) else None
            if kind is None:
                raise ValueError(f"{str(name)[:40]!r} cannot be chosen among on validation; these can: "
                                 f"{', '.join(CHOOSABLE_LEVERS)}")
            if not isinstance(values, (list, tuple)) or not 2 <= len(values) <= MAX_LEVER_VALUES:
                raise ValueError(f"{name}: give 2 to {MAX_LEVER_VALUES} values to choose among")
            coerced = [coerce_lever_value(name, v) for v in values]
            if len(set(coerced)) < len(coerced):
                raise ValueError(f"{name}: a value is given twice")
            checked[name] = coerced
            if math.prod(len(v) for v in checked.values()) > MAX_COMBINATIONS:  # before any list of them is made
                raise ValueError(f"{math.prod(len(v) for v in checked.values())} combinations of values to choose "
                                 f"among is more than {MAX_COMBINATIONS}; choose among fewer")
        self.choose_among = checked

    def lever_combinations(self) -> list[dict[str, Any]]:
        """Every combination of the values chosen among ([{}] when none are)."""
        names = list(self.choose_among)
        return [dict(zip(names, values, strict=True))
                for values in itertools.product(*(self.choose_among[n] for n in names))]

    def chosen_among_text(self) -> str:
        """'critical_weight 1, 1.5, 2': what a refit run records it was chosen among ('' when nothing was)."""
        return chosen_among_text(self.choose_among)

    def choosing_runs(self) -> list[TrainConfig]:
        """The choosing stage's runs: the epoch_chooser's, once per combination of the values chosen among."""
        chooser = self.epoch_chooser()
        return [run for combination in self.lever_combinations() for run in replace(chooser, **combination).runs()]

    def epoch_chooser(self) -> ExperimentConfig:
        """The first stage of a grid with epochs_chosen_on: the recipe as given, with validation, on those seeds;
        tested clean only (their test images choose nothing and AutoAttack would take hours)."""
        if not self.epochs_chosen_on:
            raise ValueError("this grid's epoch count is fixed: no epochs_chosen_on")
        return replace(self, seeds=parse_seed_list(self.epochs_chosen_on), epochs_chosen_on="", test_attacks=[],
                       name=f"{self.name[:60]}-choosing-epochs", choose_among={})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExperimentConfig:
        values = dict(values)
        if "pgd_steps" in values:  # configs stored by busadv 0.1
            values.setdefault("eval_pgd_steps", values.pop("pgd_steps"))
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown experiment setting(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def runs(self, epoch_counts: Mapping[RunGroup, int] | None = None,
             lever_values: Mapping[RunGroup, Mapping[str, Any]] | None = None) -> list[TrainConfig]:
        """Every training run of the grid; standard training has no epsilon, so it runs once per seed.

        With epochs_chosen_on, each run trains on every training image for its group's epoch count (from
        `epoch_counts`, chosen by the epoch_chooser's runs; before that, `epochs` stands in) and keeps its last;
        with choose_among, on its group's chosen values (`lever_values`; before that, the grid's own).
        """
        refit: dict[str, Any] = {}
        if self.epochs_chosen_on:
            refit = {"val_fraction": 0.0, "select": "last", "patience": 0, "refit": False,
                     "epochs_chosen_by": self.select, "levers_chosen_among": self.chosen_among_text()}
        out = []
        for arch in self.archs:
            size = self.image_sizes.get(arch, MODELS.get(arch).default_image_size)
            for mode in self.modes:
                epsilons = self.train_epsilons if MODES.get(mode).adversarial else [0.0]
                for eps in epsilons:
                    epochs = (epoch_counts or {}).get((arch, mode, eps), self.epochs)
                    chosen = dict((lever_values or {}).get((arch, mode, eps), {}))
                    for seed in self.seeds:
                        run = TrainConfig(
                            arch=arch, mode=mode, epsilon=eps, epochs=epochs, batch_size=self.batch_size,
                            lr=self.lr, seed=seed, image_size=size, test_fraction=self.test_fraction,
                            split_policy=self.split_policy, adv_labels=self.adv_labels,
                            random_start=self.random_start, clean_mix=self.clean_mix,
                            warmup_epochs=self.warmup_epochs, class_balance=self.class_balance,
                            trades_beta=self.trades_beta,
                            **{name: getattr(self, name) for name in LEVERS} | refit,
                            pgd_steps=self.train_pgd_steps,
                            pretrained=self.pretrained and MODELS.get(arch).pretrained_available is not None,
                            device=self.device, data=self.data, monitor_images=self.monitor_images)
                        out.append(replace(run, **chosen) if chosen else run)
        return out


def study_preset(seeds: Sequence[int] = (0, 1, 2, 3, 4), archs: Sequence[str] = ("simplecnn", "resnet50"),
                 **overrides: Any) -> ExperimentConfig:
    """The seed study: standard and FGSM training (online and offline, its plain recipe) at 0.5, 0.2 and 0.05,
    tested clean and under FGSM at the same epsilons."""
    values: dict[str, Any] = dict(archs=list(archs), modes=["standard", "fgsm-study", "fgsm-offline"],
                                  train_epsilons=list(STUDY_EPSILONS),
                                  seeds=list(seeds), test_attacks=["fgsm"], test_epsilons=list(STUDY_EPSILONS),
                                  name="study", **STUDY_TRAINING)
    values.update(overrides)
    return ExperimentConfig(**values)


FRONTIER_TRAIN_EPSILONS: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255)
FRONTIER_TEST_EPSILONS: tuple[float, ...] = (2 / 255, 4 / 255, 8 / 255)


def frontier_preset(seeds: Sequence[int] = (0, 1, 2, 3, 4), archs: Sequence[str] = ("simplecnn",),
                    **overrides: Any) -> ExperimentConfig:
    """The study's question: how much training epsilon buys how much robustness at what clean cost.

    busadv's robust recipe (FGSM from a random start with clean mix, class-balanced loss, and the levers of
    BEST_LEVERS) at training epsilons 0 (standard training with the same levers), 1, 2, 4 and 8 /255, tested
    clean and under AutoAttack and PGD at 2, 4 and 8 /255.
    """
    values: dict[str, Any] = dict(archs=list(archs), modes=["standard", "fgsm"],
                                  train_epsilons=list(FRONTIER_TRAIN_EPSILONS), seeds=list(seeds),
                                  test_attacks=["autoattack", "pgd"], test_epsilons=list(FRONTIER_TEST_EPSILONS),
                                  name="frontier", **BEST_TRAINING)
    values.update(overrides)
    return ExperimentConfig(**values)


PRESETS = {"study": study_preset, "frontier": frontier_preset}


def parse_lever_values(text: str) -> tuple[str, list[Any]]:
    """'critical_weight=1,1.5,2' (or critical-weight=...): a setting a grid may choose among and its values, each
    of the setting's type; ValueError saying what is wrong."""
    name, sep, values = str(text).partition("=")
    key = name.strip().replace("-", "_")
    if not sep or not values.strip():
        raise ValueError(f"{str(text)[:40]!r} is not setting=value,value, e.g. critical_weight=1,1.5,2")
    if key not in CHOOSABLE_LEVERS:
        raise ValueError(f"{name.strip()[:40]!r} cannot be chosen among; these can: {', '.join(CHOOSABLE_LEVERS)}")
    return key, [coerce_lever_value(key, v) for v in values.split(",")]


def parse_choose_among(parts: Sequence[str]) -> dict[str, list[Any]]:
    """Several 'setting=values' (a form's text split at ';', or a repeated option), each setting once."""
    out: dict[str, list[Any]] = {}
    for part in parts:
        if not str(part).strip():
            continue
        name, values = parse_lever_values(part)
        if name in out:
            raise ValueError(f"{name} is named more than once: give all its values at once")
        out[name] = values
    return out


def coerce_lever_value(name: str, value: Any) -> Any:
    """A value to choose among (typed as text on a command line, or read from JSON) as its setting's type;
    ValueError saying what was expected."""
    kind = CHOOSABLE_LEVERS[name]
    if (isinstance(value, bool) or not isinstance(value, (str, int, float))
            or (kind is str and not isinstance(value, str))):
        raise ValueError(f"{name}: {str(value)[:40]!r} is not a {kind.__name__}")
    try:
        coerced = kind(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {str(value)[:40]!r} is not a {'whole number' if kind is int else kind.__name__}"
                         ) from None
    if kind is int and isinstance(value, float) and value != coerced:
        raise ValueError(f"{name}: {value!r} is not a whole number")
    if isinstance(coerced, float) and not math.isfinite(coerced):
        raise ValueError(f"{name}: {str(value)[:40]!r} is not a finite number")
    return coerced
