"""`--sections levers`: the measured effect of the speed choices busadv has not made (or made per run).

The levers that remain, each a real choice today:
  processes   N study runs side by side with one torch thread each vs one run with N threads (how a grid
              should use the cores; BUSADV_MAX_JOBS decides it)
  image size  SimpleCNN at 64 px instead of the study's 128 px: training throughput, test accuracy and the
              study grid's time; and the grid without the per-epoch FGSM+PGD watch (TrainConfig.monitor_images)
  BN folding  the ResNet50 explorer forward with BatchNorm folded into its convolutions (not applied)
  batched sweep  every epsilon of a batch in one forward pass instead of evaluate()'s one per epsilon

Levers of earlier versions that are now applied, and so no longer measure a choice, are gone:
channels_last (train_model and load_checkpoint apply it on CPU), the decoded-tensor cache (ImageSet holds
uint8 tensors; the train section compares it with an ImageFolder loop), pool-before-ReLU (SimpleCNN does
it), one torch thread for the app's forwards with a job running (the app sets it). The lean FGSM epilogue
went too: the fgsm section's ratio to the forward+backward floor bounds what it could gain. So did eight
slider positions per forward (PerturbationProbe.probabilities_many does it; a slider moves one at a time).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import json
import subprocess
from collections.abc import Callable, Sequence

import torch
from torch import nn

from busadv.attacks import ATTACKS, AttackContext, eval_mode
from busadv.bench.common import Row, guarded, interleaved, not_measured, paired_ratio, speedup_row
from busadv.bench.context import RESNET, SIMPLE, Bench
from busadv.bench.memory import child_command, run_child
from busadv.bench.slider import GRID
from busadv.bench.study import grid_seconds, grid_timings
from busadv.bench.sweep import SWEEP_EPSILONS, Sweep, busadv_sweep
from busadv.bench.training import engine_steps, train_config
from busadv.data import ImageSet, stratified_subset
from busadv.experiments import run_one
from busadv.explorer import PerturbationProbe
from busadv.settings import PROJECT_ROOT
from busadv.training import TrainConfig


def lever_processes(bench: Bench, n_batches: int, rounds: int) -> list[Row]:
    """Aggregate training img/s: every child times its own epoch; the parallel side counts from the first
    child's start to the last one's end, so children that do not overlap gain nothing."""
    name = "study grid: N runs x 1 thread in parallel vs 1 run x N threads"
    threads = torch.get_num_threads()
    if threads < 2:
        return [not_measured("levers", name, "one torch thread here")]
    args = ["train", "--data", str(bench.folder), "--arch", SIMPLE, "--size", "128", "--batches", str(n_batches)]

    def parallel() -> float:
        procs = [subprocess.Popen(child_command([*args, "--threads", "1"]), stdout=subprocess.PIPE, text=True,
                                  cwd=PROJECT_ROOT) for _ in range(threads)]
        outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        span = max(o["train_window"][1] for o in outs) - min(o["train_window"][0] for o in outs)
        return sum(o["trained_images"] for o in outs) / span

    rates: dict[str, list[float]] = {"one": [], "parallel": []}
    for r in range(rounds):  # A B, B A: load from other work hits both sides alike
        for side in ("one", "parallel") if r % 2 == 0 else ("parallel", "one"):
            rates[side].append(parallel() if side == "parallel" else
                               run_child([*args, "--threads", str(threads)])["images_per_s"])
    ratio, noise = paired_ratio(rates["parallel"], rates["one"])
    return [Row("levers", name.replace("N", str(threads)), sum(rates["parallel"]) / rounds,
                sum(rates["one"]) / rounds, "img/s", ratio,
                note=f"aggregate training img/s of SimpleCNN 128px; noise +-{noise:.2g}", extra=rates)]


def lever_image_size(bench: Bench, small: int, seeds: Sequence[int], epochs: int, images: int | None) -> list[Row]:
    """SimpleCNN at `small` px against 128 px: throughput, accuracy after `epochs`, the study grid's time."""
    base, names = 128, {small: f"{small}px", 128: "128px"}
    data = {size: bench.data(size) for size in (small, base)}
    chunks = {size: d.subset(torch.arange(min(len(d), 128))) for size, d in data.items()}
    steps = {names[s]: engine_steps(train_config(SIMPLE, s), [c], torch.device("cpu"))[1] for s, c in chunks.items()}
    t = interleaved(steps, 3)
    rows = [speedup_row("levers", f"training: SimpleCNN at {small}px instead of {base}px", t, names[base],
                        names[small], unit="img/s", per=len(chunks[base]))]
    accuracy = {}
    for size, d in data.items():
        measured = d if images is None else stratified_subset(d, images, seed=0)
        accs = [run_one(TrainConfig.study(arch=SIMPLE, epochs=epochs, image_size=size, seed=seed, monitor_images=0,
                                    device=bench.device.type), measured).history[-1]["test_accuracy"]
                for seed in seeds]
        accuracy[size] = sum(accs) / len(accs)
    grids = dict(zip(data, grid_timings(list(data.values()), SIMPLE, bench.device, bench.plan.study_images),
                     strict=True))
    minutes = {size: grid_seconds(data[size], grid, timings) / 60 for size, (grid, timings) in grids.items()}
    grid, timings = grids[base]
    no_watch = grid_seconds(data[base], dataclasses.replace(grid, monitor_images=0), timings) / 60
    return [
        *rows,
        Row("levers", f"SimpleCNN test accuracy after {epochs} epochs, {small}px vs {base}px (seeds {list(seeds)})",
            accuracy[small], accuracy[base], "", accuracy[small] / accuracy[base] if accuracy[base] else None,
            note="ratio = small / base accuracy"),
        Row("levers", f"study grid at SimpleCNN {small}px vs {base}px, extrapolated", minutes[small], minutes[base],
            "min", minutes[base] / minutes[small], note="ratio = speed-up"),
        Row("levers", f"study grid at SimpleCNN {base}px without / with the per-epoch FGSM+PGD watch", no_watch,
            minutes[base], "min", minutes[base] / no_watch, note="busadv column = monitor_images=0; ratio = speed-up")]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-only copy of a ResNet50 classifier with BatchNorm folded into the convolutions, channels_last."""
    from torch.fx.experimental.optimization import fuse

    folded = copy.deepcopy(model).eval()
    folded.net = fuse(folded.get_submodule("net"))
    return folded.to(memory_format=torch.channels_last)


def lever_bn_fold(model: nn.Module, image: torch.Tensor, repeats: int) -> list[Row]:
    folded = fold_batchnorm(model)
    probes = {"model": PerturbationProbe(model, image, 0), "folded": PerturbationProbe(folded, image, 0)}
    positions = itertools.cycle(GRID)

    def move(probe: PerturbationProbe) -> None:
        probe.probabilities("fgsm", next(positions))

    t = interleaved({k: functools.partial(move, p) for k, p in probes.items()}, repeats, warmup=1)
    x = probes["model"].perturbed("fgsm", 4 / 255)
    with torch.inference_mode():
        logits, folded_logits = model(x), folded(x)
    diff = float((logits - folded_logits).abs().max() / logits.abs().max())
    return [speedup_row("levers", f"slider: BatchNorm folded into the convolutions ({RESNET} 224px)", t, "model",
                        "folded", note=f"max|logit diff| / max|logit| = {diff:.1e} on the same perturbed image")]


def batched_sweep(model: nn.Module, dataset: ImageSet, epsilons: Sequence[float], batch_size: int = 64) -> list[float]:
    """evaluate()'s FGSM accuracies with every epsilon of a batch in one forward pass (the lever)."""
    spec, positive = ATTACKS.get("fgsm"), [e for e in epsilons if e > 0]
    device = next(model.parameters()).device
    correct = dict.fromkeys(epsilons, 0)
    with eval_mode(model):
        for start in range(0, len(dataset), batch_size):
            x = dataset.floats(slice(start, start + batch_size), device)
            y = dataset.labels[start:start + batch_size].to(device)
            context = AttackContext(model, x, y)
            correct[0.0] = correct.get(0.0, 0) + int((context.clean_prediction == y).sum())
            batch = torch.cat([spec.perturb(context, e) for e in positive])  # the gradient needs autograd on
            with torch.inference_mode():
                preds = model(batch).argmax(1)
            for e, p in zip(positive, preds.view(len(positive), -1), strict=True):
                correct[e] += int((p == y).sum())
    return [correct[e] / len(dataset) for e in epsilons]


def lever_sweep(model: nn.Module, dataset: ImageSet, repeats: int) -> list[Row]:
    out: dict[str, list[float]] = {}

    def side(name: str, sweep: Sweep) -> Callable[[], None]:
        return lambda: out.__setitem__(name, sweep(model, dataset, SWEEP_EPSILONS, 64))

    t = interleaved({"evaluate": side("evaluate", busadv_sweep), "batched": side("batched", batched_sweep)}, repeats)
    return [speedup_row("levers", f"sweep: all {len(SWEEP_EPSILONS)} epsilons of a batch in one forward pass", t,
                        "evaluate", "batched", scale=1, unit="s",
                        note=f"{len(dataset)} images; accuracies identical: {out['batched'] == out['evaluate']}")]


def section(bench: Bench) -> list[Row]:
    quick, repeats = bench.plan.quick, 2 if bench.plan.quick else 3
    _, test = bench.split(128)
    model = bench.model(SIMPLE)
    _, test224 = bench.split(224)
    return [
        *guarded("levers", "processes", lambda: lever_processes(bench, 2 if quick else 4, 1 if quick else 2)),
        *guarded("levers", "image size", lambda: lever_image_size(bench, 64, (0,) if quick else (0, 1),
                                                                  2 if quick else 10, 64 if quick else None)),
        *guarded("levers", "BN folding", lambda: lever_bn_fold(bench.model(RESNET),
                                                               test224.floats(slice(0, 1), bench.device), 2 * repeats)),
        *guarded("levers", "batched sweep", lambda: lever_sweep(model, stratified_subset(test, 64 if quick else 10**6),
                                                                repeats)),
    ]
