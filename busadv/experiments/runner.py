"""One run (split, train, evaluate, save) and a grid of runs: the functions jobs, the CLI and any backend call."""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from busadv.attacks import STUDY_EPSILONS, format_epsilon
from busadv.data import ImageSet, dataset_summary, load_dataset, split_dataset
from busadv.evaluation import evaluate
from busadv.experiments.backends import GridOutcome, RunFailure, RunOutcome, run_grid
from busadv.experiments.config import ExperimentConfig, RunGroup
from busadv.experiments.estimates import choosing_share
from busadv.models.checkpoints import checkpoint_filename, save_checkpoint
from busadv.progress import ProgressEvent, ProgressFn, ignore_progress
from busadv.results import Diagnosis, GroupSummary, ResultRow, diagnose, rows_for, summarize, write_rows
from busadv.results.store import keep_unsaved, unsaved_folder
from busadv.settings import checkpoints_dir
from busadv.training import TrainConfig, format_seed_list, train_model
from busadv.training.config import lever_value_text
from busadv.training.epoch_count import PooledEpochs, pooled_epoch_count, rank_recipes
from busadv.training.optim import first_eligible_epoch


def new_run_id(prefix: str = "run") -> str:
    """Unique across processes and machines: two runs never share a name, a checkpoint or a row identity."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"


def scaled(progress: ProgressFn, start: float, span: float, prefix: str = "") -> ProgressFn:
    """A progress callback for a part of a longer task: fractions mapped into [start, start + span]."""
    def report(event: ProgressEvent) -> None:
        # A part's own time-left is not the whole task's: leave it to the reporter to estimate from the fraction.
        eta = event.eta_seconds if span >= 1 else None
        progress(ProgressEvent(start + span * event.fraction, f"{prefix}{event.message}", event.epoch, event.epochs,
                               event.loss, event.accuracy, eta))
    return report


def run_one(config: TrainConfig, dataset: ImageSet | None = None, test_attacks: Sequence[str] = ("fgsm",),
            test_epsilons: Sequence[float] = STUDY_EPSILONS, save: bool = False, eval_pgd_steps: int = 10,
            run_id: str = "", checkpoint_folder: Path | None = None,
            progress: ProgressFn = ignore_progress, state_file: Path | None = None) -> RunOutcome:
    """Split, train, evaluate on the held-out images and (optionally) save: one row per test condition.

    state_file: training keeps its per-epoch state there and goes on from it (a resumed job).
    """
    dataset = dataset if dataset is not None else load_dataset(config.data, int(config.image_size or 0))
    train_set, test_set = split_dataset(dataset, config.test_fraction, seed=config.seed, policy=config.split_policy)
    run_id = run_id or new_run_id(f"{config.arch}-{config.mode}-s{config.seed}")
    started = time.perf_counter()
    result = train_model(config, train_set, test_set, progress=scaled(progress, 0.0, 0.9), state_file=state_file)
    progress(ProgressEvent(0.9, "evaluating on the held-out test set", epochs=config.epochs, epoch=config.epochs))
    conditions = evaluate(result.model, test_set, test_attacks, test_epsilons, pgd_steps=eval_pgd_steps,
                          seed=config.seed, progress=scaled(progress, 0.9, 0.1))
    history = [asdict(h) for h in result.history]
    checkpoint = None
    if save:
        data_info = {k: v for k, v in dataset_summary(dataset).items()
                     if k in ("source", "simulated", "fingerprint", "counts", "majority_rate")}
        data_info.update(test_fraction=config.test_fraction, split_seed=config.seed, split_policy=config.split_policy,
                         n_train=len(train_set) - (0 if config.refit else result.n_val), n_val=result.n_val,
                         n_test=len(test_set))
        clean = conditions[0]
        metrics = {"chosen_epoch": result.chosen_epoch, "n_val": result.n_val,
                   "clean_accuracy": clean.accuracy, "clean_balanced_accuracy": clean.balanced_accuracy,
                   "clean_sensitivity": clean.sensitivity, "collapsed": clean.collapsed,
                   "conditions": [{"attack": c.attack, "test_epsilon": c.epsilon, "accuracy": c.accuracy,
                                   "balanced_accuracy": c.balanced_accuracy, "sensitivity": c.sensitivity,
                                   "collapsed": c.collapsed} for c in conditions]}
        if config.refit:  # the history above is the first pass's (the validation that chose the epoch count)
            metrics["refit_history"] = [asdict(h) for h in result.refit_history]
        folder = checkpoint_folder or checkpoints_dir()
        checkpoint = save_checkpoint(result.model, folder / checkpoint_filename(config.to_dict(), dataset.simulated,
                                                                                run_id),
                                     arch=config.arch, image_size=int(config.image_size or 0),
                                     train_config=config.to_dict(), metrics=metrics, data=data_info, history=history,
                                     classes=dataset.classes, run_id=run_id)
    rows = rows_for(conditions, run=run_id, seed=config.seed, train_config=config,
                    data_fingerprint=dataset.fingerprint, data_source=dataset.source, simulated=dataset.simulated,
                    eval_pgd_steps=eval_pgd_steps, checkpoint=str(checkpoint or ""),
                    test_images="held-out test split", train_seconds=round(result.seconds, 2), history=history,
                    chosen_epoch=result.chosen_epoch)
    return RunOutcome(config=config, rows=rows, history=history, checkpoint=checkpoint,
                      seconds=time.perf_counter() - started)


@dataclass
class ExperimentResult:
    config: ExperimentConfig
    rows: list[ResultRow]
    summary: list[GroupSummary]
    diagnoses: list[Diagnosis]
    seconds: float
    failures: list[RunFailure] = field(default_factory=list)  # runs that failed twice: no rows, reported
    # With epochs_chosen_on: each group's epoch count and how the choosing seeds' pooled validation chose it.
    epoch_choices: dict[RunGroup, PooledEpochs] = field(default_factory=dict)
    # With choose_among: each group's values, chosen on the same validation as its epoch count.
    lever_choices: dict[RunGroup, LeverChoice] = field(default_factory=dict)
    unsaved: Path | None = None  # the runs' own row files: discard_unsaved() once the grid's file holds the rows


def keep_rows(outcome: RunOutcome, folder: Path) -> None:
    """A finished run's rows in `folder`, unless they are there already: a grid stopped later by a signal, a
    cancel or a crash keeps them. A failure to write them only costs that safety net."""
    if outcome.rows:
        target = folder / f"{outcome.rows[0].run}.csv"
        if not target.exists():
            with contextlib.suppress(OSError):
                write_rows(outcome.rows, target)


def run_and_keep(config: TrainConfig, *args: Any, keep_in: Path, **kwargs: Any) -> RunOutcome:
    """run_one, whose rows are kept in `keep_in` the moment it ends, where it ran (before its outcome travels)."""
    outcome = run_one(config, *args, **kwargs)
    keep_rows(outcome, keep_in)
    return outcome


def choose_epoch_counts(outcomes: Iterable[RunOutcome]) -> dict[RunGroup, PooledEpochs]:
    """Each (model, mode, training ε)'s epoch count, chosen on the validation scores of its runs pooled over
    their seeds (busadv.training.epoch_count), each epoch judged as a run judges it."""
    groups: dict[RunGroup, list[RunOutcome]] = defaultdict(list)
    for outcome in sorted(outcomes, key=lambda o: o.config.seed):  # per_run by seed, not by which ended first
        c = outcome.config
        groups[(c.arch, c.mode, c.epsilon)].append(outcome)
    return {group: pooled_epoch_count([o.history for o in members], first_eligible_epoch(members[0].config),
                                      names=[f"seed {o.config.seed} of {o.config.describe()}" for o in members])
            for group, members in groups.items()}


@dataclass(frozen=True)
class LeverChoice:
    """What the choosing seeds' validation preferred for one group among the values of choose_among."""

    values: dict[str, Any]                            # the winner: setting -> value
    ranking: tuple[tuple[str, PooledEpochs], ...]     # 'critical_weight 2' -> its pooled choice, best first
    left_out: tuple[int, ...] = ()                    # choosing seeds where some value's run failed: not pooled

    def text(self) -> str:
        """'critical_weight 2 (pooled validation score 0.426; critical_weight 1.5: 0.395, critical_weight 1: …)'."""
        (best, choice), *others = self.ranking
        rest = "".join(f"; {name}: {c.score:.3f} at {c.epoch} epochs" for name, c in others)
        gap = (f"; seed{'s' if len(self.left_out) > 1 else ''} {format_seed_list(list(self.left_out))} left out: "
               "not every value's run finished there") if self.left_out else ""
        return f"{best} (pooled validation score {choice.score:.3f}{rest}{gap})"


def lever_name(values: dict[str, Any]) -> str:
    """'critical_weight 2, clean_mix 0.5': one combination of values, as the ranking names it."""
    return ", ".join(f"{k} {lever_value_text(v)}" for k, v in values.items())


def choose_levers(outcomes: Iterable[RunOutcome], levers: Sequence[str],
                  combinations: Sequence[dict[str, Any]] = ()
                  ) -> tuple[dict[RunGroup, PooledEpochs], dict[RunGroup, LeverChoice]]:
    """Each group's epoch count and, when `levers` are chosen among, its values: every combination's runs pooled
    over their seeds, the combinations ranked by their pooled validation score (rank_recipes), the winner's
    epoch count kept. Scores are pooled over the seeds where every combination finished (the others are named in
    the choice), or they would not be comparable; a combination of `combinations` (the grid's) with no finished
    run stops the choice with its name."""
    if not levers:
        return choose_epoch_counts(outcomes), {}
    by_group: dict[RunGroup, dict[str, list[RunOutcome]]] = defaultdict(lambda: defaultdict(list))
    values: dict[str, dict[str, Any]] = {}
    for outcome in sorted(outcomes, key=lambda o: o.config.seed):
        c = outcome.config
        combination = {name: getattr(c, name) for name in levers}
        values[lever_name(combination)] = combination
        by_group[(c.arch, c.mode, c.epsilon)][lever_name(combination)].append(outcome)
    counts: dict[RunGroup, PooledEpochs] = {}
    chosen: dict[RunGroup, LeverChoice] = {}
    wanted = [lever_name(c) for c in combinations]
    for group, found in by_group.items():
        missing = [name for name in wanted if name not in found]
        if missing:
            raise RuntimeError(f"no choosing run of {'; '.join(missing)} finished for {group_text(group)} (each "
                               "failed twice): the values cannot be ranked without it")
        seeds = {name: {o.config.seed for o in members} for name, members in found.items()}
        common = set.intersection(*seeds.values())
        if not common:
            raise RuntimeError(f"the values of {', '.join(levers)} cannot be ranked for {group_text(group)}: no "
                               "seed finished a choosing run of every value ("
                               + "; ".join(f"{n}: {format_seed_list(sorted(s))}" for n, s in seeds.items()) + ")")
        left_out = sorted(set.union(*seeds.values()) - common)
        pooled = {name: [o for o in members if o.config.seed in common] for name, members in found.items()}
        starts = {name: first_eligible_epoch(members[0].config) for name, members in pooled.items()}
        ranking = rank_recipes({name: [o.history for o in members] for name, members in pooled.items()}, starts)
        best = ranking[0][0]
        counts[group] = ranking[0][1]
        chosen[group] = LeverChoice(values=values[best], ranking=tuple(ranking), left_out=tuple(left_out))
    return counts, chosen


def group_text(group: RunGroup) -> str:
    """'simplecnn, fgsm training at eps=0.0314 (8/255)'."""
    arch, mode, eps = group
    return f"{arch}, {mode} training" + (f" at eps={format_epsilon(eps)}" if eps else "")


def describe_epoch_choice(group: RunGroup, choice: PooledEpochs) -> str:
    """'simplecnn, fgsm training at eps=…: 26 epochs (pooled validation score 0.521; each choosing run's own …)'."""
    return (f"{group_text(group)}: {choice.epoch} epochs (pooled validation score {choice.score:.3f}; each "
            f"choosing run's own choice, seed by seed: {', '.join(map(str, choice.per_run))})")


def run(config: ExperimentConfig, progress: ProgressFn = ignore_progress) -> ExperimentResult:
    """Every run of the grid on `config.backend` (a local process pool by default, or Ray), each one `run_one`;
    the data is decoded once per image size. Rows come in grid order; runs that failed twice are in `failures`.
    With epochs_chosen_on, the choosing seeds' runs come first (their rows too: clean only), then the grid's.

    Stopped early (SIGTERM, Ctrl-C, a cancel, an error), the finished runs' rows become a file of the results
    store before the exception goes on; its note says where."""
    started = time.perf_counter()
    grid_id = new_run_id(config.name)
    unsaved = unsaved_folder(grid_id)
    try:
        # Kept twice: where the run ran, and here as its outcome lands (a Ray worker on another machine wrote to
        # its own disk).
        run_fn = functools.partial(run_and_keep, keep_in=unsaved)
        keep = functools.partial(keep_rows, folder=unsaved)
        first: GridOutcome | None = None
        choices: dict[RunGroup, PooledEpochs] = {}
        levers: dict[RunGroup, LeverChoice] = {}
        share = 0.0
        if config.epochs_chosen_on:
            first, choices, levers, share = _choose_epochs(config, run_fn, grid_id, progress, keep)
        grid = run_grid(config, run_fn, grid_id, scaled(progress, share, 1.0 - share), keep=keep,
                        runs=config.runs({group: choice.epoch for group, choice in choices.items()},
                                         {group: choice.values for group, choice in levers.items()}))
        rows = (first.rows() if first else []) + grid.rows()
        return ExperimentResult(config=config, rows=rows, summary=summarize(rows), diagnoses=diagnose(rows),
                                seconds=time.perf_counter() - started,
                                failures=(first.failures if first else []) + grid.failures, unsaved=unsaved,
                                epoch_choices=choices, lever_choices=levers)
    except BaseException as exc:
        try:
            kept = keep_unsaved(unsaved, f"{config.name}-stopped")
        except OSError:  # a full disk: the runs' own files stay, and the store reads them there
            kept = unsaved
        if kept is not None:
            exc.add_note(f"the rows of every finished run are kept in {kept}")
        raise


def _choose_epochs(config: ExperimentConfig, run_fn: Any, grid_id: str, progress: ProgressFn, keep: Any
                   ) -> tuple[GridOutcome, dict[RunGroup, PooledEpochs], dict[RunGroup, LeverChoice], float]:
    """The first stage of a grid with epochs_chosen_on: the choosing seeds' runs (once per combination of the
    values chosen among), then each group's count and values. Returns their outcome, the choices and the share of
    the grid's progress they stand for."""
    chooser = config.epoch_chooser()
    share = choosing_share(config)
    first = run_grid(chooser, run_fn, f"{grid_id}-choosing", scaled(progress, 0.0, share, "choosing epochs: "),
                     keep=keep, runs=config.choosing_runs())
    choices, levers = choose_levers(first.outcomes.values(), list(config.choose_among),
                                    config.lever_combinations() if config.choose_among else ())
    groups = {(c.arch, c.mode, c.epsilon): c for c in chooser.runs()}
    missing = [c.describe() for group, c in groups.items() if group not in choices]
    if missing:
        raise RuntimeError(f"no run that chooses the epoch count of {'; '.join(missing)} finished (seeds "
                           f"{config.epochs_chosen_on}; each failed twice)")
    for group in groups:
        if group in levers:
            progress(ProgressEvent(share, f"values chosen for {group_text(group)}: {levers[group].text()}"))
        progress(ProgressEvent(share, f"epoch count chosen for {describe_epoch_choice(group, choices[group])}"))
    return first, choices, levers, share
