"""Training throughput: busadv's `train_one_epoch` against a torchvision ImageFolder + DataLoader loop over the
same files, FGSM training against standard, and the FLOPs achieved against the sgemm peak."""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.functional import cross_entropy

from busadv.bench.common import Row, count_flops, interleaved, median, paired_ratio, sgemm_peak
from busadv.bench.context import RESNET, SIMPLE, Bench
from busadv.data import BUSI, ImageSet, find_busi_root, list_busi_files
from busadv.models import build_model
from busadv.training import TrainConfig, seed_everything, train_one_epoch

Step = Callable[[], Any]


# ============================================================================ the plain reference loop

def reference_loader(folder: Path, names: Sequence[str], image_size: int, batch_size: int,
                     seed: int = 0) -> torch.utils.data.DataLoader:
    """torchvision ImageFolder + DataLoader over the same files, decoding PNGs every epoch (the plain loop)."""
    from torchvision import datasets, transforms

    root = find_busi_root(folder)
    valid = {str(path) for path, _ in list_busi_files(root)}
    transform = transforms.Compose([transforms.Grayscale(1), transforms.Resize((image_size, image_size)),
                                    transforms.ToTensor()])
    full = datasets.ImageFolder(str(root), transform=transform, is_valid_file=lambda p: p in valid)
    assert tuple(full.classes) == BUSI.classes, full.classes
    index = {os.path.relpath(path, root): i for i, (path, _) in enumerate(full.samples)}
    subset = torch.utils.data.Subset(full, [index[n] for n in names])
    return torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=True,
                                       generator=torch.Generator().manual_seed(seed))


def reference_train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable,
                          device: torch.device) -> float:
    """The textbook loop: NCHW tensors straight from the loader, cross-entropy, Adam."""
    model.train()
    total = 0.0
    for images, labels in loader:
        x, y = images.to(device), labels.to(device)
        loss = cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total


# ============================================================================ busadv's side

def engine_steps(config: TrainConfig, batches: Sequence[ImageSet], device: torch.device) -> tuple[nn.Module, Step]:
    """(model, step): each call of step is one `train_one_epoch` over the next of `batches`.

    The model, optimizer and generator are set up as `train_model` sets them up (it offers no hook that
    returns them without training): seeded, channels_last on CPU, Adam at the config's learning rate.
    """
    generator = seed_everything(config.seed)
    model = build_model(config.arch, config.image_size).to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    count = itertools.count()
    return model, lambda: train_one_epoch(model, optimizer, batches[next(count) % len(batches)], config, generator,
                                          device)


def train_config(arch: str, image_size: int, mode: str = "standard", *, eps: float = 0.05, batch_size: int = 32,
                 device: torch.device | None = None) -> TrainConfig:
    return TrainConfig.study(arch=arch, mode=mode, epsilon=eps if mode != "standard" else 0.0, batch_size=batch_size,
                       image_size=image_size, device=(device or torch.device("cpu")).type)


def training_flops_per_image(model: nn.Module, x: torch.Tensor, y: torch.Tensor, adversarial: bool) -> float:
    """FLOPs of one training step per image: forward + backward (+ the FGSM forward and input backward).

    Counted with torch.utils.flop_counter on copies of the model; the FGSM part is counted as a forward and a
    backward to the input with the weights frozen (what autograd.grad(loss, x) computes), because the
    counter's module hooks do not support autograd.grad itself.
    """
    def train_step() -> None:
        m = copy.deepcopy(model).train()
        cross_entropy(m(x), y).backward()

    def attack_step() -> None:
        m = copy.deepcopy(model).eval()
        for p in m.parameters():
            p.requires_grad_(False)
        cross_entropy(m(x.detach().clone().requires_grad_(True)), y, reduction="sum").backward()

    flops = count_flops(train_step)
    if adversarial:
        flops += count_flops(attack_step)
    return flops / len(x)


# ============================================================================ the comparison

def bench_training(folder: Path, train_set: ImageSet, arch: str, image_size: int, *, batch_size: int = 32,
                   repeats: int = 12, warmup: int = 1, device: torch.device | None = None,
                   peak_flops: float | None = None, reference: bool = True, eps: float = 0.05,
                   distinct_batches: int = 6) -> list[Row]:
    """busadv standard, busadv FGSM and the plain ImageFolder loop on the same images, interleaved step by step.

    Each timed call is one training step of one side (its data loading included), so a burst of load from
    other processes on this shared machine lands on all three sides alike; `repeats` steps are timed per side.
    """
    device = device or torch.device("cpu")
    k = max(1, min(distinct_batches, len(train_set) // batch_size))
    pool = [train_set.subset(torch.arange(i * batch_size, (i + 1) * batch_size)) for i in range(k)]
    names = [n for batch in pool for n in batch.names]
    std_model, std_step = engine_steps(train_config(arch, image_size, "standard", eps=eps, batch_size=batch_size,
                                                    device=device), pool, device)
    _, fgsm_step = engine_steps(train_config(arch, image_size, "fgsm", eps=eps, batch_size=batch_size, device=device),
                                pool, device)
    fns: dict[str, Step] = {"busadv": std_step, "fgsm": fgsm_step}
    if reference:
        torch.manual_seed(0)
        ref_model = build_model(arch, image_size).to(device)
        ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-3)
        loader = reference_loader(folder, names, image_size, batch_size)
        batches = itertools.chain.from_iterable(itertools.repeat(loader))  # a fresh shuffled epoch when one ends
        fns["reference"] = lambda: reference_train_epoch(ref_model, ref_opt, [next(batches)], device)
    times = interleaved(fns, repeats, warmup, device)
    tag = f"{arch} {image_size}px, batch {batch_size}, {repeats} steps each"
    rate = {key: batch_size / median(v) for key, v in times.items()}
    rows = []
    if reference:
        ratio, noise = paired_ratio(times["reference"], times["busadv"])
        rows.append(Row("train", f"training throughput vs ImageFolder loop ({tag})", rate["busadv"], rate["reference"],
                        "img/s", ratio, ">= 1.3", note="ratio = busadv img/s / reference img/s",
                        extra={"noise": noise, "times": times}).judge(noise))
    ratio, noise = paired_ratio(times["fgsm"], times["busadv"])
    rows.append(Row("train", f"FGSM training / standard, time per step ({tag})", median(times["fgsm"]) * 1000,
                    median(times["busadv"]) * 1000, "ms/step", ratio, "<= 2.1",
                    extra={"noise": noise, "fgsm_img_per_s": rate["fgsm"]}).judge(noise))
    if peak_flops:
        xb, yb = pool[0].floats(None, device), pool[0].labels.to(device)
        gflop = f"{peak_flops / 1e9:.0f} GFLOP/s"
        for mode, key, adversarial in (("standard", "busadv", False), ("FGSM", "fgsm", True)):
            flops = training_flops_per_image(std_model, xb, yb, adversarial)
            ref = flops * rate["reference"] / peak_flops if reference and not adversarial else None
            rows.append(Row("train", f"fraction of sgemm peak, {mode} training ({arch})",
                            flops * rate[key] / peak_flops, ref, "", None,
                            note=f"{flops / 1e9:.3g} GFLOP/img x img/s / {gflop}"
                                 + ("; reference column: the ImageFolder loop" if ref is not None else ""),
                            extra={"flops_per_image": flops, "peak_flops": peak_flops}))
    return rows


def section(bench: Bench) -> list[Row]:
    plan, device = bench.plan, bench.device
    peak = sgemm_peak(device=device)
    rows = [Row("train", "sgemm peak (2048x2048 float32 matmul, best of 5)", peak / 1e9, None, "GFLOP/s")]
    train, _ = bench.split(128)
    rows += bench_training(bench.folder, train, SIMPLE, 128, repeats=plan.train_repeats, warmup=plan.warmup,
                           device=device, peak_flops=peak)
    if not plan.quick or device.type == "cuda":
        train224, _ = bench.split(224)
        rows += bench_training(bench.folder, train224, RESNET, 224, batch_size=plan.resnet_train_batch, repeats=2,
                               device=device, peak_flops=peak, reference=False, distinct_batches=1)
    return rows
