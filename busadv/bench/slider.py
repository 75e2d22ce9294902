"""The explorer's slider: a move with the attack direction cached against its floor, one forward pass of the
model on the image; and a full AppTest rerun of the explorer page."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from busadv.bench.apptest import bench_apptest
from busadv.bench.common import Row, interleaved, median, paired_ratio
from busadv.bench.context import RESNET, SIMPLE, Bench
from busadv.explorer import PerturbationProbe

GRID = tuple(k / 255 for k in range(1, 33))


def forward_floor(model: nn.Module, x: torch.Tensor) -> Any:
    """A slider move's floor: one forward pass and the softmax, nothing else."""
    with torch.inference_mode():
        return torch.softmax(model(x), dim=1).cpu().numpy()


def bench_probe(model: nn.Module, image: torch.Tensor, label: int, name: str, *, repeats: int = 20,
                warmup: int = 2) -> list[Row]:
    """Latency from a new epsilon to new probabilities with the direction cached, against one forward pass;
    the note gives the latency with the gradient recomputed on every move (what the cache avoids)."""
    model.eval()
    probe = PerturbationProbe(model, image, label)
    probe.probabilities("fgsm", GRID[0])  # the direction is cached from here on
    positions = itertools.cycle(GRID)
    times = interleaved({
        "cached": lambda: probe.probabilities("fgsm", next(positions)),
        "floor": lambda: forward_floor(model, probe.x),
        "uncached": lambda: PerturbationProbe(model, image, label).probabilities("fgsm", next(positions)),
    }, repeats, warmup, probe.device)
    ms = {k: median(v) * 1000 for k, v in times.items()}
    ratio, noise = paired_ratio(times["cached"], times["floor"])
    return [Row("slider", f"slider move / one forward pass ({name})", ms["cached"], ms["floor"], "ms", ratio,
                "<= 1.5", note=f"gradient recomputed on every move instead: {ms['uncached']:.3g} ms "
                               f"({ms['uncached'] / ms['cached']:.1f}x the cached move)",
                extra={"noise": noise, "times_ms": {k: [t * 1000 for t in v] for k, v in times.items()}}).judge(noise)]


def section(bench: Bench) -> list[Row]:
    plan, rows = bench.plan, []
    for arch, size, repeats, warmup in ((SIMPLE, 128, plan.slider_repeats, 2),
                                        (RESNET, 224, plan.resnet_slider_repeats, 1)):
        _, test = bench.split(size)
        rows += bench_probe(bench.model(arch), test.floats(slice(0, 1), bench.device), int(test.labels[0]),
                            f"{arch} {size}px", repeats=repeats, warmup=warmup)
    env = {"BUSADV_DATA": str(bench.folder), "BUSADV_CHECKPOINTS": str(bench.checkpoint_dir),
           "BUSADV_HOME": str(bench.work / "home")}
    return rows + bench_apptest(env, repeats=2 if plan.quick else 3)  # it lists bench.checkpoint_dir: SimpleCNN
