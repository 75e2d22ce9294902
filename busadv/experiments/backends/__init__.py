"""Where the runs of a grid execute: a pool of processes on this machine (the default) or Ray.

`run_grid(config, run_one, ...)` plans the grid (one RunTask per run, the images decoded once per size)
and hands it to the backend named by `config.backend`. Every backend calls the same `run_one` per run
and gives back the same rows; the choice is where a run executes, never what it computes, so it is not
part of a run's recipe and appears in no result row. A new backend is one module with
`run(plan, progress) -> GridOutcome` and one `register_backend(...)`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from busadv.data import ImageSet, load_dataset
from busadv.experiments.backends.base import (
    MAX_ATTEMPTS,
    BackendError,
    DataMismatch,
    GridOutcome,
    GridPlan,
    GridSettings,
    RunFailure,
    RunFn,
    RunOptions,
    RunOutcome,
    RunTask,
)
from busadv.models.registry import MODELS
from busadv.progress import ProgressFn
from busadv.registry import Choice, Registry
from busadv.settings import checkpoints_dir
from busadv.training import TrainConfig

DEFAULT_BACKEND = "local"


@dataclass(frozen=True)
class BackendSpec(Choice):
    target: str  # "module:function" taking (GridPlan, ProgressFn); imported on use, so Ray loads only for Ray

    def runner(self) -> Callable[[GridPlan, ProgressFn], GridOutcome]:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)

    def preflight(self, address: str | None) -> None:
        """The module's own quick checks (is Ray installed, is the cluster there?) before any image is decoded."""
        check = getattr(importlib.import_module(self.target.partition(":")[0]), "preflight", None)
        if check is not None:
            check(address)


BACKENDS: Registry[BackendSpec] = Registry("experiment backend")


def register_backend(spec: BackendSpec, replace: bool = False) -> BackendSpec:
    return BACKENDS.register(spec, replace=replace)


register_backend(BackendSpec(
    "local", "This machine (a pool of processes)",
    "runs side by side in worker processes of one torch thread each; one worker runs them in turn",
    "busadv.experiments.backends.local:run"))
register_backend(BackendSpec(
    "ray", "Ray (a cluster, or Ray started on this machine)",
    "each run a Ray task; --address or RAY_ADDRESS joins a cluster, else Ray starts here",
    "busadv.experiments.backends.ray:run"))


def plan_grid(config: GridSettings, run_fn: RunFn, prefix: str,
              datasets: dict[int, ImageSet] | None = None,
              keep: Callable[[RunOutcome], None] | None = None,
              runs: list[TrainConfig] | None = None) -> GridPlan:
    """The grid's runs (`config.runs()` unless given) as tasks (ids `prefix-001`, ...) with their resources, and
    the images decoded once per size."""
    runs = config.runs() if runs is None else runs
    datasets = dict(datasets or {})
    tasks = []
    for i, train_config in enumerate(runs):
        size = int(train_config.image_size or 0)
        if size not in datasets:
            datasets[size] = load_dataset(config.data, size)
        spec = MODELS.get(train_config.arch)
        tasks.append(RunTask(index=i, config=train_config, run_id=f"{prefix}-{i + 1:03d}",
                             label=f"run {i + 1}/{len(runs)} ({train_config.describe()}, seed {train_config.seed})",
                             cpus=spec.cpus_per_run, gpus=spec.gpu_fraction, memory_gb=spec.memory_gb_per_run))
    options = RunOptions(tuple(config.test_attacks), tuple(config.test_epsilons), config.save_checkpoints,
                         config.eval_pgd_steps, checkpoints_dir() if config.save_checkpoints else None)
    return GridPlan(tasks, datasets, options, run_fn, workers=config.workers, address=config.address,
                    device=config.device, keep=keep)


def run_grid(config: GridSettings, run_fn: RunFn, prefix: str,
             progress: ProgressFn, keep: Callable[[RunOutcome], None] | None = None,
             runs: list[TrainConfig] | None = None) -> GridOutcome:
    """Every run of the grid (or `runs`) on the configured backend; outcomes by grid position, failed runs
    reported; `keep` sees each outcome here as it lands (GridPlan.keep)."""
    spec = BACKENDS.get(config.backend)
    spec.preflight(config.address)
    return spec.runner()(plan_grid(config, run_fn, prefix, keep=keep, runs=runs), progress)


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "MAX_ATTEMPTS", "BackendError", "BackendSpec", "DataMismatch",
           "GridOutcome", "GridPlan", "GridSettings", "RunFailure", "RunOptions", "RunOutcome", "RunTask", "plan_grid",
           "register_backend", "run_grid"]
