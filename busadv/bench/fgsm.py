"""FGSM against its floor (one forward and one input-backward pass), the written-out formula and torchattacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.functional import cross_entropy

from busadv.attacks import eval_mode, fgsm
from busadv.bench.common import Row, interleaved, median, paired_ratio
from busadv.bench.context import RESNET, SIMPLE, Bench
from busadv.data import stratified_subset

EPS = 8 / 255


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FGSM's floor: one forward pass and one backward pass to the input (summed loss), nothing else."""
    xg = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(cross_entropy(model(xg), y, reduction="sum"), xg)
    return grad


def reference_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """The formula written out: clamp(x + eps * sign(grad_x CE(model(x), y)), 0, 1), model in eval mode."""
    with eval_mode(model):
        return (x + eps * input_gradient(model, x, y).sign()).clamp(0, 1).detach()


def torchattacks_fgsm(model: nn.Module, eps: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    try:
        import torchattacks
    except Exception:  # noqa: BLE001 - absent, or broken by its pinned requirements
        return None
    return torchattacks.FGSM(model, eps=eps)


def bench_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, label: str, *, eps: float = EPS,
               repeats: int = 5, warmup: int = 1, use_torchattacks: bool = True) -> list[Row]:
    """busadv.attacks.fgsm vs its floor and vs torchattacks on one model and batch; also checks the images agree."""
    model.eval()
    ta = torchattacks_fgsm(model, eps) if use_torchattacks else None
    fns: dict[str, Callable[[], Any]] = {"floor": lambda: input_gradient(model, x, y),
                                         "busadv": lambda: fgsm(model, x, y, eps)}
    if ta is not None:
        fns["torchattacks"] = lambda: ta(x, y)
    times = interleaved(fns, repeats, warmup, x.device)
    ours = fgsm(model, x, y, eps)
    ms = median(times["busadv"]) * 1000
    ratio, noise = paired_ratio(times["busadv"], times["floor"])
    rows = [Row("fgsm", f"FGSM / fwd+bwd floor ({label})", ms, median(times["floor"]) * 1000, "ms",
                ratio, "<= 1.05", extra={"noise": noise, "times": times}).judge(noise),
            Row("fgsm", f"FGSM images vs the written-out formula, max|diff| ({label})",
                float((ours - reference_fgsm(model, x, y, eps)).abs().max()), 0.0, "", None, "<= 0",
                target_on="busadv").judge()]
    name = f"FGSM vs torchattacks.FGSM ({label})"
    if ta is None:
        rows.append(Row("fgsm", name, status="not installed" if use_torchattacks else "skipped",
                        note="pip install --no-deps -r requirements-bench.txt"))
        return rows
    theirs = ta(x, y)
    differ = ours != theirs
    detail = ""
    if bool(differ.any()):
        # torchattacks takes the mean loss (gradients scaled by 1/batch), busadv the summed loss: where the input
        # gradient is tiny the two signs can disagree. Show how many pixels and how small their gradients are.
        grad = input_gradient(model, x, y)
        detail = (f"; {int(differ.sum())} of {differ.numel()} pixels differ, where busadv's |grad| <= "
                  f"{float(grad[differ].abs().max()):.1e} (median |grad| {float(grad.abs().median()):.1e})")
    diff = float((ours - theirs).abs().max())
    ratio, noise = paired_ratio(times["busadv"], times["torchattacks"])
    rows.insert(1, Row("fgsm", name, ms, median(times["torchattacks"]) * 1000, "ms", ratio, "<= 1.0",
                       note=f"same images: max|diff| = {diff:.3g}{detail}",
                       extra={"max_abs_diff": diff, "noise": noise}).judge(noise))
    return rows


def section(bench: Bench) -> list[Row]:
    plan, rows = bench.plan, []
    for arch, size, n, repeats in ((SIMPLE, 128, plan.fgsm_batch, plan.repeats),
                                   (RESNET, 224, plan.resnet_batch, max(3, plan.repeats - 1))):
        _, test = bench.split(size)
        batch = stratified_subset(test, n, seed=0)
        x, y = batch.floats(None, bench.device), batch.labels.to(bench.device)
        rows += bench_fgsm(bench.model(arch), x, y, f"{arch} {size}px, {len(batch)} images", repeats=repeats,
                           warmup=plan.warmup)
    return rows
