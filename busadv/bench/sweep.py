"""The epsilon sweep: `evaluate()` (one gradient per batch serves every epsilon) against FGSM run from scratch
for every epsilon, interleaved batch by batch."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from busadv.attacks import fgsm
from busadv.bench.common import Row, interleaved, median, paired_ratio
from busadv.bench.context import SIMPLE, Bench
from busadv.data import ImageSet, stratified_subset
from busadv.evaluation import evaluate

SWEEP_EPSILONS: tuple[float, ...] = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 0.05, 0.1, 0.2, 0.3, 0.5)

Sweep = Callable[[nn.Module, ImageSet, Sequence[float], int], list[float]]


def naive_sweep(model: nn.Module, dataset: ImageSet, epsilons: Sequence[float], batch_size: int = 64) -> list[float]:
    """Accuracy at each epsilon, running FGSM from scratch for every epsilon (what evaluate() avoids)."""
    device = next(model.parameters()).device
    accuracies = []
    for eps in epsilons:
        correct = 0
        for start in range(0, len(dataset), batch_size):
            x = dataset.floats(slice(start, start + batch_size), device)
            y = dataset.labels[start:start + batch_size].to(device)
            x_adv = fgsm(model, x, y, eps)
            with torch.no_grad():
                correct += int((model(x_adv).argmax(1) == y).sum())
        accuracies.append(correct / max(len(dataset), 1))
    return accuracies


def busadv_sweep(model: nn.Module, dataset: ImageSet, epsilons: Sequence[float], batch_size: int = 64) -> list[float]:
    """Accuracy at each epsilon from busadv.evaluation.evaluate (its clean row for epsilon 0)."""
    results = evaluate(model, dataset, ["fgsm"], list(epsilons), batch_size=batch_size)
    by_eps = {r.epsilon: r.accuracy for r in results if r.attack == "fgsm"}
    return [results[0].accuracy if e == 0 else by_eps[float(e)] for e in epsilons]


def bench_sweep(model: nn.Module, dataset: ImageSet, epsilons: Sequence[float] = SWEEP_EPSILONS, *,
                repeats: int = 3, warmup: int = 1, batch_size: int = 64, label: str = "") -> list[Row]:
    """evaluate() vs the naive loop, interleaved batch by batch; `repeats` full sweeps of the set per side."""
    model.eval()
    device = next(model.parameters()).device
    batches = [dataset.subset(torch.arange(i, min(i + batch_size, len(dataset))))
               for i in range(0, len(dataset), batch_size)]
    for _ in range(warmup):  # every later batch has the same shapes as the first
        busadv_sweep(model, batches[0], epsilons, batch_size)
        naive_sweep(model, batches[0], epsilons, batch_size)
    correct: dict[str, list[float]] = {"busadv": [0.0] * len(epsilons), "naive": [0.0] * len(epsilons)}

    def side(name: str, sweep: Sweep) -> Callable[[], None]:
        count = itertools.count()

        def run() -> None:
            i = next(count)
            batch = batches[i % len(batches)]
            accs = sweep(model, batch, epsilons, batch_size)
            if i < len(batches):  # the first pass over the set gives the accuracies
                correct[name] = [c + a * len(batch) for c, a in zip(correct[name], accs, strict=True)]
        return run

    times = interleaved({"busadv": side("busadv", busadv_sweep), "naive": side("naive", naive_sweep)},
                        repeats * len(batches), 0, device)
    nb = len(batches)
    per_sweep = {k: [sum(v[r * nb:(r + 1) * nb]) for r in range(repeats)] for k, v in times.items()}
    ratio, noise = paired_ratio(times["naive"], times["busadv"])
    acc = {k: [c / len(dataset) for c in v] for k, v in correct.items()}
    diff = max(abs(a - b) for a, b in zip(acc["busadv"], acc["naive"], strict=True))
    what = f"{len(epsilons)} eps, {len(dataset)} images{', ' + label if label else ''}"
    return [Row("sweep", f"evaluate() speed-up over naive FGSM loop ({what})", median(per_sweep["busadv"]),
                median(per_sweep["naive"]), "s", ratio, ">= 3",
                note="ratio = naive / busadv (median of per-batch ratios); figures = one full sweep",
                extra={"noise": noise, "accuracies": acc["busadv"], "naive_accuracies": acc["naive"]}).judge(noise),
            Row("sweep", "sweep accuracies vs naive loop, max|diff|", diff, 0.0, "", None, "<= 0", target_on="busadv",
                extra={"accuracies": acc["busadv"]}).judge()]


def section(bench: Bench) -> list[Row]:
    _, test = bench.split(128)
    subset = test if bench.plan.sweep_images is None else stratified_subset(test, bench.plan.sweep_images, seed=0)
    return bench_sweep(bench.model(SIMPLE), subset, repeats=bench.plan.sweep_repeats, warmup=1,
                       label=f"{SIMPLE} checkpoint")
