"""`--sections scale`: a grid's runs side by side, on the local pool and on Ray, and the study grid end to end.

  backends    one small grid (SimpleCNN: standard and fgsm-study at 0.05, two seeds) run three ways, the
              sides interleaved (A B C, C B A): one run after another in this process with its default
              torch threads (the path before busadv.experiments.backends), the local pool of one-thread
              worker processes, and Ray with as many one-CPU workers (started once; its start-up is a row
              of its own). The three must give identical rows.
  watch       one fgsm-study run with its per-epoch FGSM+PGD watch on 32 test images instead of 64
  study grid  the README's study grid (20 runs x 10 epochs on the benchmark's data) on the default local
              pool, measured end to end against 5 minutes, with the load average beside it (shared machine)
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

from busadv.bench.common import Row, guarded, median, not_measured, paired_ratio
from busadv.bench.context import SIMPLE, Bench
from busadv.data import ImageSet, stratified_subset
from busadv.experiments import ExperimentConfig, new_run_id, run_one
from busadv.experiments.backends import BACKENDS, GridOutcome, plan_grid
from busadv.experiments.backends.base import torch_threads
from busadv.experiments.backends.local import pool_size
from busadv.progress import ignore_progress

SECTION = "scale"
STUDY_TARGET_MINUTES = 5.0


def small_grid(bench: Bench, epochs: int) -> ExperimentConfig:
    return ExperimentConfig(archs=[SIMPLE], modes=["standard", "fgsm-study"], train_epsilons=[0.05], seeds=[0, 1],
                            test_attacks=["fgsm"], test_epsilons=[0.05], epochs=epochs, image_sizes={SIMPLE: 128},
                            device=bench.device.type, name="bench-scale")


def run_grid_on(config: ExperimentConfig, data: ImageSet, threads: int | None = None) -> tuple[float, GridOutcome]:
    """(seconds, outcome) of a grid on its backend, the images given (decoded once, outside the clock)."""
    plan = plan_grid(config, run_one, new_run_id(config.name), {data.image_size: data})
    with torch_threads(threads):
        started = time.perf_counter()
        outcome = BACKENDS.get(config.backend).runner()(plan, ignore_progress)
        return time.perf_counter() - started, outcome


def measures(outcome: GridOutcome) -> list[tuple]:
    """What a row says about a model (not which run, not how long it took)."""
    return [(r.seed, r.train_mode, r.attack, r.test_epsilon, r.accuracy, r.balanced_accuracy, r.malignant_sensitivity)
            for r in outcome.rows()]


def ray_started(workers: int) -> float:
    """Start a local Ray for the Ray side (the backend then joins it); the seconds ray.init took."""
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return time.perf_counter() - started


def bench_backends(bench: Bench, data: ImageSet, epochs: int, rounds: int) -> list[Row]:
    import ray

    grid = small_grid(bench, epochs)
    workers = 2
    threads = os.cpu_count() or 1
    sides: dict[str, Callable[[], tuple[float, GridOutcome]]] = {
        "in turn": lambda: run_grid_on(dataclasses.replace(grid, workers=1), data, threads),
        "pool": lambda: run_grid_on(dataclasses.replace(grid, workers=workers), data),
        "ray": lambda: run_grid_on(dataclasses.replace(grid, backend="ray", workers=workers), data)}
    startup = ray_started(workers)
    times: dict[str, list[float]] = {name: [] for name in sides}
    found: dict[str, list] = {}
    failed: list[str] = []  # a run that failed has no rows: said beside the verdict, not hidden by it
    try:
        for r in range(rounds):
            for name in list(sides) if r % 2 == 0 else list(sides)[::-1]:
                seconds, outcome = sides[name]()
                times[name].append(seconds)
                found[name] = measures(outcome)
                failed += [f"{name}: {f.text()}" for f in outcome.failures]
    finally:
        ray.shutdown()
    same = found["in turn"] == found["pool"] == found["ray"]
    differ = [] if same else [f"{name}: {len(rows)} rows" for name, rows in found.items()]
    what = (f"{len(grid.runs())} runs x {epochs} epoch(s) on {len(data)} images at 128 px; {rounds} round(s); "
            f"rows identical on all three: {same}" + "".join(f"; {text}" for text in differ + failed))

    def row(name: str, variant: str, base: str) -> Row:
        ratio, noise = paired_ratio(times[base], times[variant])
        return Row(SECTION, name, median(times[variant]), median(times[base]), "s", ratio,
                   note=f"ratio = speed-up (noise +-{noise:.2g}); {what}", extra={"noise": noise, **times})

    return [
        row(f"grid: local pool of {workers} one-thread workers vs one run at a time ({threads} threads, the old "
            "path)", "pool", "in turn"),
        row(f"grid: Ray, {workers} one-CPU workers (Ray already up) vs the local pool", "ray", "pool"),
        row(f"grid: Ray, {workers} one-CPU workers vs one run at a time", "ray", "in turn"),
        Row(SECTION, f"Ray start-up on this machine (ray.init, {workers} CPUs)", startup, unit="s",
            note="paid once per process that starts Ray (a CLI run, a job); joining a running cluster skips it"),
        Row(SECTION, "grid rows identical: one at a time, local pool, Ray", float(same), 1.0, "", target=">= 1",
            target_on="busadv", note="1 = every run's accuracies equal on all three backends"
            + "".join(f"; {text}" for text in differ + failed)).judge()]


def bench_watch(bench: Bench, data: ImageSet, rounds: int) -> list[Row]:
    """One fgsm-study epoch's run with the per-epoch watch on 32 vs 64 test images (the default)."""
    grid = dataclasses.replace(small_grid(bench, 1), modes=["fgsm-study"], seeds=[0], workers=1)
    times: dict[str, list[float]] = {"64": [], "32": []}
    found: dict[str, list] = {}
    for r in range(rounds):
        for size in ("64", "32") if r % 2 == 0 else ("32", "64"):
            seconds, outcome = run_grid_on(dataclasses.replace(grid, monitor_images=int(size)), data)
            times[size].append(seconds)
            found[size] = measures(outcome)
    ratio, noise = paired_ratio(times["64"], times["32"])
    return [Row(SECTION, "fgsm-study run: per-epoch FGSM+PGD watch on 32 test images vs 64 (the default)",
                median(times["32"]), median(times["64"]), "s", ratio,
                note=f"ratio = speed-up (noise +-{noise:.2g}); one epoch on {len(data)} images; result rows "
                     f"identical: {found['32'] == found['64']} (the watch only reports); not applied: half the "
                     "images doubles the noise of the overfitting signal", extra=times)]


def study_config(bench: Bench) -> ExperimentConfig:
    """The README's study grid command: SimpleCNN, standard and fgsm-study at 0.05/0.2/0.5, seeds 0-4."""
    return ExperimentConfig(archs=[SIMPLE], modes=["standard", "fgsm-study"], train_epsilons=[0.05, 0.2, 0.5],
                            seeds=[0, 1, 2, 3, 4], test_attacks=["fgsm"], test_epsilons=[0.05, 0.2, 0.5],
                            data=str(bench.folder), device=bench.device.type, name="bench-study-grid")


def bench_study_grid(bench: Bench) -> list[Row]:
    config = study_config(bench)
    data = bench.data(128)
    plan = plan_grid(config, run_one, "workers", {128: data})
    load_before = os.getloadavg()
    seconds, outcome = run_grid_on(config, data)
    minutes = seconds / 60
    return [Row(SECTION, "study grid end to end: SimpleCNN, 20 runs x 10 epochs, per-epoch watch on (local pool)",
                minutes, STUDY_TARGET_MINUTES, "min", minutes / STUDY_TARGET_MINUTES, target="<= 1",
                note=f"measured, not extrapolated; {len(data)} images{' (phantoms)' if bench.simulated else ''}; "
                     f"{pool_size(plan)} workers; {len(outcome.outcomes)} runs done, {len(outcome.failures)} failed; "
                     f"load average (1, 5, 15 min) {tuple(round(x, 1) for x in load_before)} before, "
                     f"{tuple(round(x, 1) for x in os.getloadavg())} after; reference = the 5-minute target",
                extra={"seconds": seconds}).judge()]


def section(bench: Bench) -> list[Row]:
    quick = bench.plan.quick
    data = stratified_subset(bench.data(128), 96 if quick else 240, seed=0)
    try:
        import ray  # noqa: F401
    except ImportError:
        rows = [not_measured(SECTION, "grid: Ray vs the local pool", "Ray is not installed")]
    else:
        rows = guarded(SECTION, "backends", lambda: bench_backends(bench, data, 1 if quick else 2, 1 if quick else 2))
    rows += guarded(SECTION, "watch", lambda: bench_watch(bench, data, 1 if quick else 2))
    if quick:
        rows.append(not_measured(SECTION, "study grid end to end", "--quick",
                                 "20 runs x 10 epochs take minutes to an hour: run without --quick"))
    else:
        rows += guarded(SECTION, "study grid", lambda: bench_study_grid(bench))
    return rows
