"""What a report needs, and getting it: reuse every stored run that fits, run only what is missing.

A report asks for recipes x seeds, each tested under a set of conditions. A stored run fits when its
recipe (every setting, the data's fingerprint included) and seed match; conditions it lacks are evaluated
from its checkpoint when the file is still there, and only otherwise is the model trained again.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from busadv.data import ImageSet, load_dataset
from busadv.evaluation import evaluate
from busadv.experiments import ExperimentConfig, measured_rates, run_one, scaled, test_split_for, train_config_of
from busadv.experiments.estimates import (
    TimeEstimate,
    estimate_words,
    evaluation_seconds,
    grid_conditions,
    run_seconds,
    trained_to_resist,
)
from busadv.models.checkpoints import CheckpointError, load_checkpoint
from busadv.progress import ProgressEvent, ProgressFn, ignore_progress
from busadv.results import ResultRow, load_store, rows_for, save_rows
from busadv.results.row import RECIPE_FIELDS, recipe_columns
from busadv.training import TrainConfig

Condition = tuple[str, float]  # (attack, test epsilon); ("none", 0.0) is the clean test set


@dataclass
class ReportPlan:
    """The grids a report draws from, and the test conditions every run of each grid needs."""

    grids: list[ExperimentConfig]
    conditions: dict[str, list[Condition]] = field(default_factory=dict)  # grid name -> extra conditions
    eval_pgd_steps: int = 10

    def runs(self) -> list[tuple[TrainConfig, list[Condition]]]:
        out = []
        for grid in self.grids:
            wanted = list(dict.fromkeys(grid_conditions(grid) + self.conditions.get(grid.name, [])))
            out += [(config, wanted) for config in grid.runs()]
        return out


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def _key(recipe: dict[str, Any], seed: int) -> tuple[Any, ...]:
    return tuple(recipe.get(f) for f in RECIPE_FIELDS) + (seed,)


@dataclass(frozen=True)
class PendingRun:
    """A run the store cannot serve yet: the conditions to measure, and whether it must be trained first."""

    config: TrainConfig
    conditions: list[Condition]
    train: bool
    n_train: int
    n_test: int


@dataclass
class Progress:
    reused: int = 0
    evaluated: int = 0
    trained: int = 0
    pending: list[PendingRun] = field(default_factory=list)  # what the store could not serve

    def time_left(self, rates: dict[str, float], measured: bool, pgd_steps: int = 10) -> tuple[float, str]:
        """(rough seconds for what is pending, the same in words with AutoAttack's worst case apart; '' if none)."""
        total = TimeEstimate()
        for run in self.pending:
            evaluation = evaluation_seconds(run.config.arch, int(run.config.image_size or 0), run.conditions, rates,
                                            run.n_test, pgd_steps, trained_to_resist(run.config))
            total += evaluation.plus(run_seconds(run.config, rates, run.n_train, run.n_test) if run.train else 0.0)
        return total.seconds, estimate_words(total, measured, skip="leave its ε empty to skip it")


def gather(plan: ReportPlan, progress: ProgressFn = ignore_progress, run: bool = True
           ) -> tuple[list[ResultRow], Progress, list[str]]:
    """(rows for every run of the plan, what was reused/evaluated/trained, what is missing and was not run).

    Two passes: first what the store already holds, then (said before the hours begin, with a rough time)
    what is evaluated from checkpoints or trained.
    """
    stored, _ = load_store()
    by_key: dict[tuple[Any, ...], list[ResultRow]] = defaultdict(list)
    for row in stored:  # newest first
        by_key[row.recipe() + (row.seed,)].append(row)
    datasets: dict[tuple[str | None, int], ImageSet] = {}
    counts, unserved, out = Progress(), [], []
    todo = plan.runs()
    work: list[tuple[int, list[Condition], list[ResultRow], list[Condition], ImageSet]] = []
    for i, (config, wanted) in enumerate(todo):
        size = int(config.image_size or 0)
        if (config.data, size) not in datasets:
            datasets[(config.data, size)] = load_dataset(config.data, size)
        dataset = datasets[(config.data, size)]
        recipe = recipe_columns(config) | {"data_fingerprint": dataset.fingerprint}
        have = _newest_run(by_key.get(_key(recipe, config.seed), []))
        lacking = [c for c in wanted if not any(r.attack == c[0] and _close(r.test_epsilon, c[1])
                                                and r.severity is None for r in have)]
        if have and not lacking:
            counts.reused += 1
            out += [r for r in have if any(r.attack == c[0] and _close(r.test_epsilon, c[1]) for c in wanted)]
            progress(ProgressEvent((i + 1) / len(todo), f"reused run {have[0].run}"))
            continue
        n_test = math.ceil(config.test_fraction * len(dataset))
        counts.pending.append(PendingRun(config, lacking if have else wanted, not have, len(dataset) - n_test, n_test))
        unserved.append(f"{config.describe()}, seed {config.seed}: " + (
            f"{len(lacking)} test condition(s) not measured" if have else "never trained"))
        work.append((i, wanted, have, lacking, dataset))
    if not run:  # a report from the store alone: what it lacks is missing
        return out + [r for _, _, have, _, _ in work for r in have], counts, unserved
    if work:
        rates, measured = measured_rates()
        progress(ProgressEvent(0.0, f"{len(work)} of {len(todo)} runs to train or evaluate: "
                                    + (counts.time_left(rates, measured, plan.eval_pgd_steps)[1] or "time unknown")))
    for i, wanted, have, lacking, dataset in work:
        config = todo[i][0]
        step = scaled(progress, i / len(todo), 1 / len(todo), f"run {i + 1}/{len(todo)} ({config.describe()}, "
                                                               f"seed {config.seed}): ")
        new = _evaluate_stored(have, lacking, plan.eval_pgd_steps, step) if have else None
        if new is not None:
            counts.evaluated += 1
            out += have + new
            continue
        outcome = run_one(config, dataset, sorted({a for a, _ in wanted if a != "none"}),
                          sorted({e for _, e in wanted if e > 0}), save=True, eval_pgd_steps=plan.eval_pgd_steps,
                          progress=step)
        keep = [r for r in outcome.rows if any(r.attack == c[0] and _close(r.test_epsilon, c[1]) for c in wanted)]
        save_rows(outcome.rows, f"report-{config.arch}-{config.mode}")
        counts.trained += 1
        out += keep
    return out, counts, []


def _newest_run(rows: Sequence[ResultRow]) -> list[ResultRow]:
    """The rows of the newest run among several of one recipe and seed (a store may hold repeats)."""
    if not rows:
        return []
    newest = rows[0].run
    return [r for r in rows if r.run == newest]


def _evaluate_stored(have: list[ResultRow], lacking: list[Condition], pgd_steps: int,
                     progress: ProgressFn) -> list[ResultRow] | None:
    """The lacking conditions, evaluated from the run's checkpoint; None when the file is gone or unusable."""
    path = next((r.checkpoint for r in have if r.checkpoint), "")
    if not path or not Path(path).is_file():
        return None
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError:
        return None
    train_config = train_config_of(checkpoint)
    dataset = load_dataset(checkpoint.train_config.get("data"), checkpoint.image_size)
    test_set, which = test_split_for(checkpoint, dataset)
    attacks = sorted({a for a, _ in lacking if a != "none"})
    epsilons = sorted({e for _, e in lacking if e > 0})
    conditions = evaluate(checkpoint.require_model(), test_set, attacks, epsilons, pgd_steps=pgd_steps,
                          seed=train_config.seed, progress=progress)
    wanted = [c for c in conditions if any(c.attack == a and _close(c.epsilon, e) for a, e in lacking)]
    rows = rows_for(wanted, run=have[0].run, seed=have[0].seed, train_config=train_config,
                    data_fingerprint=str(checkpoint.data.get("fingerprint", "")), data_source=dataset.source,
                    simulated=dataset.simulated, eval_pgd_steps=pgd_steps, checkpoint=path, test_images=which,
                    history=checkpoint.history)
    rows = [dataclasses.replace(r, train_seconds=have[0].train_seconds) for r in rows]
    if rows:
        save_rows(rows, f"report-evaluate-{have[0].arch}")
    return rows
