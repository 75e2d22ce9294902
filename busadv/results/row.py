"""One typed result row: a run's full recipe, one test condition, and every measure of it.

Built in one place (`rows_for`) for training, evaluation and experiments alike. Groups of rows are
formed over the whole recipe (`ResultRow.group_key`), so runs that differ in any setting that changes
a result are never averaged as if they were seeds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from busadv.attacks import ATTACKS
from busadv.attacks.base import CORRUPTION
from busadv.evaluation import ConditionResult
from busadv.models.registry import MODELS
from busadv.training import NOT_RECIPE, TrainConfig
from busadv.training.config import CHOOSING_SELECTIONS, LEVERS, MODE_SETTINGS, ModeSettings, TrainingLevers
from busadv.training.modes import MODES

# TrainConfig field -> row column, where the row's name says more (a row also has a *test* epsilon).
RENAMED = {"mode": "train_mode", "epsilon": "train_epsilon", "pgd_steps": "train_pgd_steps"}


@dataclass
class ResultRow(ModeSettings, TrainingLevers):
    # ---- which run
    run: str
    seed: int
    # ---- the recipe: every training setting that changes what a run learns (TrainConfig minus NOT_RECIPE)
    arch: str
    train_mode: str
    train_epsilon: float
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    image_size: int | None = None
    test_fraction: float | None = None
    split_policy: str | None = None
    train_pgd_steps: int | None = None
    pretrained: bool | None = None
    data_fingerprint: str | None = None
    # ---- the test condition
    attack: str = "none"
    test_epsilon: float = 0.0
    eval_pgd_steps: int | None = None
    severity: int | None = None  # scanner corruptions at a severity level (1..5); None: at test_epsilon's size
    # ---- measures
    n: int = 0
    accuracy: float = math.nan
    balanced_accuracy: float = math.nan
    malignant_sensitivity: float = math.nan
    malignant_missed: int = 0
    malignant_total: int = 0
    majority_rate: float = math.nan
    changed: int = 0
    dominant_class: str = ""
    dominant_share: float = math.nan
    collapsed: bool = False
    recall: dict[str, float] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)
    overfit_epoch: int | None = None  # first epoch whose watch PGD accuracy collapsed (catastrophic overfitting)
    chosen_epoch: int | None = None   # the epoch whose weights were tested (select=best: chosen on validation)
    # ---- where it came from
    data_source: str = ""
    simulated: bool = False
    checkpoint: str = ""
    test_images: str = ""
    train_seconds: float | None = None
    job: int | None = None

    def recipe(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in RECIPE_FIELDS)

    def group_key(self) -> tuple[Any, ...]:
        """Rows with equal keys are seeds of one experiment condition; everything else is kept apart."""
        return self.recipe() + (self.attack, self.test_epsilon, self.eval_pgd_steps, self.severity)

    def identity(self) -> tuple[Any, ...]:
        """One model under one condition: a checkpoint evaluated twice must not count as two runs."""
        return (self.checkpoint or self.run, self.attack, self.test_epsilon, self.eval_pgd_steps, self.severity)

    def to_dict(self) -> dict[str, Any]:
        """Flat values for CSV and tables: recall becomes recall_<class> columns."""
        values = asdict(self)
        out = {name: values[name] for name in ROW_FIELDS}
        recall = out.pop("recall")
        confusion = out.pop("confusion")
        out.update({f"recall_{c}": r for c, r in recall.items()})
        out["confusion"] = confusion
        return out

    def metric(self, name: str) -> float:
        if name.startswith("recall_"):
            return float(self.recall.get(name[len("recall_"):], math.nan))
        value = getattr(self, name)
        return float(value) if value is not None else math.nan


def _column_order() -> tuple[str, ...]:
    """The row's fields with the mode settings and levers (inherited, so declared first) back among the recipe's
    columns. A file written before the levers existed reads with the study's (TrainingLevers' defaults)."""
    inherited = MODE_SETTINGS + LEVERS
    own = [f.name for f in fields(ResultRow) if f.name not in inherited]
    at = own.index("split_policy") + 1
    return tuple(own[:at]) + inherited + tuple(own[at:])


ROW_FIELDS: tuple[str, ...] = _column_order()
# The recipe: every TrainConfig setting that changes a result, and the data it learned from.
RECIPE_FIELDS: tuple[str, ...] = tuple(RENAMED.get(f.name, f.name) for f in fields(TrainConfig)
                                       if f.name not in NOT_RECIPE) + ("data_fingerprint",)


def recipe_columns(config: TrainConfig) -> dict[str, Any]:
    return {RENAMED.get(k, k): v for k, v in config.recipe().items()}


def overfit_epoch(history: Sequence[dict[str, Any]], drop: float = 0.2, chance: float = 1 / 3) -> int | None:
    """The first epoch where watch PGD accuracy fell by `drop` or more below its best so far while FGSM held.

    That pattern (FGSM fine, PGD collapsing) is catastrophic overfitting of FGSM training (Wong et al. 2020).
    An epoch whose clean balanced accuracy is still at chance sets no best: a model that answers one class
    keeps that class's share under any attack, and the fall once it starts to learn is not overfitting.
    """
    best = -1.0
    for h in history:
        on_validation = h.get("val_pgd_accuracy") is not None
        pgd = h.get("val_pgd_accuracy") if on_validation else h.get("test_pgd_accuracy")
        fgsm = h.get("val_fgsm_accuracy") if on_validation else h.get("test_fgsm_accuracy")
        clean = h.get("val_balanced_accuracy") if on_validation else h.get("test_balanced_accuracy")
        if pgd is None or fgsm is None:
            continue
        if best >= 0 and pgd <= best - drop and fgsm > pgd + drop / 2:
            return int(h["epoch"])
        if clean is None or clean > chance + 0.05:
            best = max(best, pgd)
    return None


def rows_for(conditions: Sequence[ConditionResult], *, run: str, seed: int, train_config: TrainConfig,
             data_fingerprint: str, data_source: str, simulated: bool, eval_pgd_steps: int | None,
             checkpoint: str = "", test_images: str = "", train_seconds: float | None = None,
             history: Sequence[dict[str, Any]] = (), severities: Sequence[int | None] = (),
             chosen_epoch: int | None = None) -> list[ResultRow]:
    """The one place rows are built: a run's recipe and provenance beside each condition's measures.

    severities: one per condition for scanner corruptions measured at a severity level (None elsewhere).
    """
    if severities and len(severities) != len(conditions):
        raise ValueError(f"{len(severities)} severities for {len(conditions)} conditions")
    levels = list(severities) or [None] * len(conditions)
    base = recipe_columns(train_config)
    co_epoch = overfit_epoch(history)
    rows = []
    for condition, severity in zip(conditions, levels, strict=True):
        measures = condition.metrics()
        recall = {c: measures.pop(f"recall_{c}") for c in condition.classes}
        rows.append(ResultRow(
            run=run, seed=seed, data_fingerprint=data_fingerprint, attack=condition.attack,
            test_epsilon=float(condition.epsilon), severity=severity,
            eval_pgd_steps=eval_pgd_steps if condition.attack != "none" and condition.attack in ATTACKS
            and not ATTACKS.get(condition.attack).single_step and ATTACKS.get(condition.attack).family != CORRUPTION
            else None,
            recall=recall, overfit_epoch=co_epoch, chosen_epoch=chosen_epoch, data_source=data_source,
            simulated=simulated,
            checkpoint=checkpoint, test_images=test_images, train_seconds=train_seconds, **base, **measures))
    return rows


def kept_weights(row: Mapping[str, Any]) -> str:
    """Which weights a run's test figures are of, in words (a row, or a row as a job's result holds it): a model
    chosen on validation should say which epoch, and a refit that it learnt from the validation images too."""
    epochs, chosen = row.get("epochs"), row.get("chosen_epoch")
    if not isinstance(epochs, int) or isinstance(epochs, bool):
        return ""
    if not isinstance(chosen, int) or isinstance(chosen, bool) or not 0 < chosen <= epochs:
        return f"the model after its last epoch ({epochs})"
    if row.get("refit") is True:
        return (f"validation chose epoch {chosen} of {epochs}; then trained again on every training image for "
                "that many epochs, the last kept")
    if row.get("select") in CHOOSING_SELECTIONS:
        return f"epoch {chosen} of {epochs}, chosen on the validation split ({row['select']})"
    chosen_on, chosen_by = row.get("epochs_chosen_on"), row.get("epochs_chosen_by")
    if isinstance(chosen_on, str) and re.fullmatch(r"[0-9][0-9, -]{0,39}", chosen_on):
        rule = f" ({chosen_by})" if chosen_by in CHOOSING_SELECTIONS else ""
        return (f"the model after its last epoch ({chosen}), trained on every training image for the epoch count "
                f"that validation{rule} pooled over seeds {chosen_on} chose")
    return f"the model after its last epoch ({chosen})"


def check_names(row: ResultRow) -> None:
    """Model, mode and attack names must be known: rows of unknown things are not plotted as if they were."""
    if row.arch not in MODELS:
        raise ValueError(f"unknown model {row.arch[:40]!r} (known: {', '.join(MODELS.names())})")
    if row.train_mode not in MODES:
        raise ValueError(f"unknown training mode {row.train_mode[:40]!r} (known: {', '.join(MODES.names())})")
    if row.attack != "none" and row.attack not in ATTACKS:
        raise ValueError(f"unknown attack {row.attack[:40]!r} (known: none, {', '.join(ATTACKS.names())})")


