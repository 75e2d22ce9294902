"""Rows -> groups of seeds of one recipe and condition -> mean, sample standard deviation and count.

A group is only ever the seeds of one full recipe (ResultRow.group_key). Collapsed runs are counted per
group ("k of n runs collapsed") and can be left out, so a group mean never hides them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from busadv.results.row import RECIPE_FIELDS, ResultRow

METRICS: tuple[str, ...] = ("balanced_accuracy", "accuracy", "malignant_sensitivity", "recall_benign",
                            "recall_malignant", "recall_normal", "dominant_share")
HEADLINE: tuple[str, ...] = ("balanced_accuracy", "accuracy", "malignant_sensitivity")


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # sample standard deviation (n-1); 0 for a single run, where spread is unknown, not zero
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat:
        present = tuple(v for v in values if not math.isnan(v))
        if not present:
            return cls(math.nan, math.nan, ())
        return cls(statistics.fmean(present), statistics.stdev(present) if len(present) > 1 else 0.0, present)

    def text(self, digits: int = 3) -> str:
        return "n/a" if math.isnan(self.mean) else f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass
class GroupSummary:
    """The seeds of one recipe under one test condition."""

    rows: list[ResultRow] = field(default_factory=list)

    @property
    def first(self) -> ResultRow:
        return self.rows[0]

    def __getattr__(self, name: str) -> Any:
        # Recipe and condition fields are shared by the whole group: read them off its first row.
        if name in RECIPE_FIELDS or name in ("attack", "test_epsilon", "eval_pgd_steps", "data_source", "simulated"):
            return getattr(self.rows[0], name)
        raise AttributeError(name)

    @property
    def recipe(self) -> tuple[Any, ...]:
        return self.first.recipe()

    @property
    def n_runs(self) -> int:
        return len(self.rows)

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.rows]

    @property
    def collapsed_flags(self) -> list[bool]:
        return [r.collapsed for r in self.rows]

    @property
    def collapsed_runs(self) -> int:
        return sum(self.collapsed_flags)

    @property
    def majority_rate(self) -> float:
        return Stat.of(r.majority_rate for r in self.rows).mean

    def stat(self, metric: str) -> Stat:
        return Stat.of(r.metric(metric) for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        """Flat values for tables and CSV: the recipe, the condition, mean/std/n of each measure."""
        out: dict[str, Any] = {f: getattr(self.first, f) for f in RECIPE_FIELDS}
        out.update(attack=self.attack, test_epsilon=self.test_epsilon, eval_pgd_steps=self.eval_pgd_steps,
                   n_runs=self.n_runs, seeds=self.seeds, collapsed_runs=self.collapsed_runs,
                   majority_rate=self.majority_rate)
        for metric in METRICS:
            stat = self.stat(metric)
            out[f"{metric}_mean"], out[f"{metric}_std"] = stat.mean, stat.std
        return out


def summarize(rows: Sequence[ResultRow], exclude_collapsed: bool = False) -> list[GroupSummary]:
    """One GroupSummary per (recipe, condition), in first-seen order.

    exclude_collapsed: leave out the runs that collapsed on their *clean* test set (a model that answers one
    class for everything even without an attack), from every condition of that run.
    """
    dropped = {r.run for r in rows if exclude_collapsed and r.attack == "none" and r.collapsed}
    groups: dict[tuple[Any, ...], GroupSummary] = {}
    for row in rows:
        if row.run in dropped:
            continue
        groups.setdefault(row.group_key(), GroupSummary()).rows.append(row)
    return list(groups.values())


def collapsed_runs(rows: Sequence[ResultRow]) -> list[str]:
    """Runs that answer one class for >= 90% of their clean test images."""
    return sorted({r.run for r in rows if r.attack == "none" and r.collapsed})


# Recipe settings that only matter to adversarial training: never named on a standard model's label.
ADVERSARIAL_ONLY = {"adv_labels", "random_start", "clean_mix", "warmup_epochs", "trades_beta", "train_pgd_steps"}


def recipe_labels(groups: Sequence[GroupSummary]) -> dict[tuple[Any, ...], str]:
    """A legend name per recipe: the model in words, plus the settings that tell the recipes shown apart.

    A setting is named only where it applies (not the random start of standard training), varies among the
    recipes shown, and differs from what the training mode does by default (fgsm-study needs no "no random
    start": that is what the study's recipe is).
    """
    from busadv.results.diagnosis import model_name
    from busadv.training import MODES
    from busadv.training.config import FALLBACK

    recipes = {g.recipe: g.first for g in groups}
    named = {"arch", "train_mode", "train_epsilon", "adv_labels", "data_fingerprint"}
    varying = [f for i, f in enumerate(RECIPE_FIELDS) if f not in named and len({r[i] for r in recipes}) > 1]
    labels = {}
    for recipe, row in recipes.items():
        mode = MODES.get(row.train_mode) if row.train_mode in MODES else None
        adversarial = mode is not None and mode.adversarial
        defaults = {**FALLBACK, **(mode.defaults if mode else {})}
        extra = ", ".join(f"{f.replace('_', ' ')} {getattr(row, f)}" for f in varying
                          if (adversarial or f not in ADVERSARIAL_ONLY)
                          and getattr(row, f) not in ("", defaults.get(f)))
        labels[recipe] = model_name(row) + (f" ({extra})" if extra else "")
    return labels
