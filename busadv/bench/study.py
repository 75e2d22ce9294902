"""The study grid's wall time, extrapolated from one measured epoch of a real `run_one` per training mode, set
beside `experiments.estimate_seconds` (what the jobs page promises) at the training rate measured here."""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from busadv.bench.common import Row, median, not_measured
from busadv.bench.context import RESNET, SIMPLE, Bench
from busadv.data import ImageSet, split_dataset, stratified_subset
from busadv.experiments import ExperimentConfig, estimate_seconds, run_one, study_preset
from busadv.experiments.estimates import watch_images
from busadv.models import MODELS
from busadv.training import MODES, TrainConfig

_BATCH = re.compile(r"epoch \d+/\d+, batch \d+/\d+")


@dataclass
class EpochTiming:
    mode: str
    train_seconds: float      # the batches of one epoch
    monitor_seconds: float    # after them: the clean test pass, and the FGSM/PGD watch in adversarial modes
    eval_seconds: float       # run_one's final evaluation (the grid's test attacks and epsilons)
    n_train: int
    n_test: int
    n_watch: int              # images in the watch set (0: no watch)
    prepare_seconds: float = 0.0  # before the batches: a mode's own preparation (the offline protocol's model)


def measure_run(config: TrainConfig, dataset: ImageSet, grid: ExperimentConfig) -> EpochTiming:
    """One one-epoch run of `run_one` (split, prepare, train, watch, evaluate); progress events tell its parts
    apart: the run's own batches are the last ones reported, right after the event that starts its training."""
    assert config.epochs == 1, "one measured epoch"
    stamps: list[tuple[float, str]] = []
    run_one(config, dataset, grid.test_attacks, grid.test_epsilons, eval_pgd_steps=grid.eval_pgd_steps,
            progress=lambda e: stamps.append((time.perf_counter(), e.message)))
    end = time.perf_counter()
    _, test = split_dataset(dataset, config.test_fraction, config.seed, config.split_policy)
    n_train = len(dataset) - len(test)
    batches = [i for i, (_, m) in enumerate(stamps) if _BATCH.search(m)][-math.ceil(n_train / config.batch_size):]
    started, last_batch = stamps[batches[0] - 1][0], stamps[batches[-1]][0]
    evaluating = min(t for t, m in stamps if m.startswith("evaluating") and t >= last_batch)
    watch = len(stratified_subset(test, config.monitor_images)) if MODES.get(config.mode).adversarial \
        and config.monitor_images else 0
    return EpochTiming(config.mode, last_batch - started, evaluating - last_batch, end - evaluating, n_train,
                       len(test), watch, started - stamps[0][0])


def clean_pass_per_image(timings: dict[str, EpochTiming]) -> float:
    """Seconds per test image of the clean pass after every epoch: all a standard run does there."""
    std = timings["standard"]
    return std.monitor_seconds / max(std.n_test, 1)


def watch_seconds(timings: dict[str, EpochTiming], t: EpochTiming) -> float:
    """Seconds of one epoch's FGSM/PGD watch on its t.n_watch images: the monitoring less the clean test pass."""
    return max(0.0, t.monitor_seconds - clean_pass_per_image(timings) * t.n_test) if t.n_watch else 0.0


def extrapolate_study(config: ExperimentConfig, timings: dict[str, EpochTiming], n_train: int, n_test: int) -> float:
    """Seconds for the whole grid: per run, epochs x (preparation + batches + clean test pass + watch) + one final
    evaluation. A preparation (the offline protocol's standard model) trains for the run's epochs: it scales so."""
    clean = clean_pass_per_image(timings)
    total = 0.0
    for run in config.runs():
        t = timings[run.mode]
        train = (t.prepare_seconds + t.train_seconds) * n_train / t.n_train
        monitor = clean * n_test
        if t.n_watch and run.monitor_images:
            monitor += watch_seconds(timings, t) * min(run.monitor_images, n_test) / t.n_watch
        total += run.epochs * (train + monitor) + t.eval_seconds * n_test / t.n_test
    return total


def grid_timings(datasets: Sequence[ImageSet], arch: str, device: torch.device, images: int | None = None,
                 epochs_each: int = 1) -> list[tuple[ExperimentConfig, dict[str, EpochTiming]]]:
    """Per dataset: the study grid at its image size, and one measured epoch of each of the grid's training
    modes. The runs interleave: mode by mode, dataset by dataset, then in reverse order (A B, B A, ...)."""
    grids = [study_preset(archs=[arch], image_sizes={arch: d.image_size}, device=device.type) for d in datasets]
    measured = [d if images is None else stratified_subset(d, images, seed=0) for d in datasets]
    first: dict[str, TrainConfig] = {}  # the grid's own recipe for each mode, one epoch long
    for run in grids[0].runs():
        first.setdefault(run.mode, dataclasses.replace(run, epochs=1, seed=0))
    order = [(m, i) for m in first for i in range(len(datasets))]
    runs: dict[tuple[str, int], list[EpochTiming]] = {key: [] for key in order}
    for r in range(epochs_each):
        for mode, i in order if r % 2 == 0 else order[::-1]:
            config = dataclasses.replace(first[mode], image_size=datasets[i].image_size)
            runs[mode, i].append(measure_run(config, measured[i], grids[i]))

    def typical(ts: list[EpochTiming]) -> EpochTiming:
        return EpochTiming(ts[0].mode, median([t.train_seconds for t in ts]), median([t.monitor_seconds for t in ts]),
                           median([t.eval_seconds for t in ts]), ts[0].n_train, ts[0].n_test, ts[0].n_watch,
                           median([t.prepare_seconds for t in ts]))

    return [(grid, {m: typical(runs[m, i]) for m in first}) for i, grid in enumerate(grids)]


def grid_seconds(dataset: ImageSet, grid: ExperimentConfig, timings: dict[str, EpochTiming]) -> float:
    """`extrapolate_study` to the whole dataset, split as the grid splits it."""
    train, test = split_dataset(dataset, grid.test_fraction, seed=0, policy=grid.split_policy)
    return extrapolate_study(grid, timings, len(train), len(test))


def bench_study(dataset: ImageSet, arch: str, device: torch.device, *, images: int | None = None, label: str = "",
                epochs_each: int = 1) -> list[Row]:
    [(grid, timings)] = grid_timings([dataset], arch, device, images, epochs_each)
    train, test = split_dataset(dataset, grid.test_fraction, seed=0, policy=grid.split_policy)
    seconds = extrapolate_study(grid, timings, len(train), len(test))
    std = timings["standard"]
    rate = std.n_train / std.train_seconds * (dataset.image_size / MODELS.get(arch).default_image_size) ** 2
    engine = estimate_seconds(grid, {arch: rate}, len(train), len(test))
    scale = len(train) / std.n_train
    per_epoch = ", ".join(f"{m} {t.train_seconds * scale:.1f} s"
                          + (f" + {t.prepare_seconds * scale:.1f} s preparing" if t.prepare_seconds > 0.05 else "")
                          for m, t in timings.items())
    watched = [t for t in timings.values() if t.n_watch]
    watch = watch_seconds(timings, watched[0]) * min(grid.monitor_images, len(test)) / watched[0].n_watch \
        if watched else 0.0
    note = (f"{len(grid.runs())} runs x {grid.epochs} epochs on {len(train)} train / {len(test)} test images; per "
            f"epoch: {per_epoch}, clean test pass {clean_pass_per_image(timings) * len(test):.1f} s, FGSM/PGD watch "
            f"{watch:.1f} s = {watch / (std.train_seconds * scale):.2f} of a standard epoch (the estimate counts "
            f"{watch_images(len(test), grid.monitor_images, grid.train_pgd_steps, True) / len(train):.2f}); "
            f"reference = experiments.estimate_seconds at the rate measured here (no evaluation)")
    return [Row("study", f"study grid {arch} ({label or device.type}), extrapolated", seconds / 60, engine / 60,
                "min", seconds / engine if engine > 0 else None, note=note,
                extra={k: dataclasses.asdict(v) for k, v in timings.items()})]


def section(bench: Bench) -> list[Row]:
    plan, device = bench.plan, bench.device
    rows = bench_study(bench.data(128), SIMPLE, device, images=plan.study_images, epochs_each=plan.study_epochs_each)
    if device.type == "cuda":
        rows += bench_study(bench.data(224), RESNET, device, images=plan.study_images,
                            label=torch.cuda.get_device_name(0))
    elif not plan.quick:
        rows.append(not_measured("study", f"study grid {RESNET} on GPU", "no CUDA here",
                                 "run `python -m busadv bench --sections study` on a CUDA machine"))
    return rows
