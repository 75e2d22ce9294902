"""Per-image robustness: the smallest epsilon that flips each test image's diagnosis.

A condition's accuracy says how many images an attack flips at one epsilon; this says which images flip
first, and how little it takes, class by class. The search is a bisection over the k/255 grid (k = 1 up to
max_eps). Single-step attacks (FGSM) scan every grid epsilon, one forward pass each, which is exact and
matches the explorer. PGD bisects, all images of a batch at once, each at its own epsilon: log2 of the grid
PGD runs instead of one per epsilon, assuming an image that flips at some epsilon flips at every larger one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from busadv.attacks import ATTACKS, AttackContext, check_epsilon, eval_mode, pgd
from busadv.data.imageset import ImageSet
from busadv.progress import ProgressEvent, ProgressFn, ignore_progress


@dataclass(frozen=True)
class ImageFlip:
    """One test image under one attack."""

    name: str
    label: str
    clean_prediction: str
    attack: str
    flip_epsilon: float | None  # None: no flip up to max_epsilon
    flipped_to: str | None
    max_epsilon: float
    # Which model: filled in by the workflow that ran the search.
    checkpoint: str = ""
    run: str = ""
    model: str = ""
    data_source: str = ""
    simulated: bool = False

    @property
    def correct(self) -> bool:
        return self.label == self.clean_prediction

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _perturbed(attack: str, context: AttackContext, eps: torch.Tensor) -> torch.Tensor:
    """Each image at its own epsilon."""
    spec = ATTACKS.get(attack)
    if spec.single_step:
        return (context.x + eps.view(-1, 1, 1, 1) * context.direction(spec)).clamp(0, 1)
    if attack != "pgd":
        raise ValueError(f"per-image search supports single-step attacks and pgd, not {attack!r}")
    return pgd(context.model, context.x, context.labels, eps, steps=context.pgd_steps, generator=context.generator())


FlipTest = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _scan(flips_at: FlipTest, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every grid epsilon in turn (one forward pass each): exact, as the explorer's own search."""
    found = torch.zeros(n, dtype=torch.bool)
    first = torch.full((n,), size - 1)
    flipped_to = torch.zeros(n, dtype=torch.long)
    for k in range(size):
        flips, predicted = flips_at(torch.full((n,), k))
        new = flips.cpu() & ~found
        first = torch.where(new, k, first)
        flipped_to = torch.where(new, predicted.cpu(), flipped_to)
        found |= new
        if bool(found.all()):
            break
    return found, first, flipped_to


def _bisect(flips_at: FlipTest, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bisection over the grid, each image at its own epsilon: log2(grid) attacks instead of one per epsilon."""
    top_flips, flipped_to = (t.cpu() for t in flips_at(torch.full((n,), size - 1)))
    low = torch.full((n,), -1)          # grid[low] does not flip (-1: the clean image)
    high = torch.full((n,), size - 1)   # grid[high] flips (where top_flips)
    while bool(((high - low) > 1)[top_flips].any()):
        moving = top_flips & (high - low > 1)
        middle = torch.where(moving, (low + high) // 2, high)
        flips, predicted = (t.cpu() for t in flips_at(middle))
        high = torch.where(moving & flips, middle, high)
        low = torch.where(moving & ~flips, middle, low)
        flipped_to = torch.where(moving & flips, predicted, flipped_to)
    return top_flips, high, flipped_to


def flip_epsilons(model: nn.Module, dataset: ImageSet, attack: str = "fgsm", max_eps: float = 0.5,
                  batch_size: int = 64, pgd_steps: int = 10, seed: int = 0, device: torch.device | None = None,
                  progress: ProgressFn = ignore_progress) -> list[ImageFlip]:
    """The smallest k/255 (then max_eps) that changes each image's predicted class."""
    attack = ATTACKS.coerce(attack)
    max_eps = check_epsilon(max_eps)
    steps = [k / 255 for k in range(1, math.floor(max_eps * 255 + 1e-9) + 1)]
    values = steps if steps and abs(steps[-1] - max_eps) < 1e-9 else [*steps, max_eps]  # reported exactly
    grid = torch.tensor(values)
    device = device or next(model.parameters()).device
    classes = dataset.classes
    out: list[ImageFlip] = []
    batches = max(1, -(-len(dataset) // batch_size))
    with eval_mode(model):
        for b in range(batches):
            sl = slice(b * batch_size, (b + 1) * batch_size)
            x, y = dataset.floats(sl, device), dataset.labels[sl].to(device)
            context = AttackContext(model, x, y, seed=seed, batch=b, pgd_steps=pgd_steps)
            clean = context.clean_prediction

            def flips_at(index: torch.Tensor, context: AttackContext = context,
                         clean: torch.Tensor = clean) -> tuple[torch.Tensor, torch.Tensor]:
                with torch.no_grad():
                    predicted = model(_perturbed(attack, context, grid[index].to(device))).argmax(1)
                return predicted != clean, predicted

            if ATTACKS.get(attack).single_step:
                top_flips, high, flipped_to = _scan(flips_at, len(y), len(grid))
            else:
                top_flips, high, flipped_to = _bisect(flips_at, len(y), len(grid))
            for i in range(len(y)):
                name = dataset.names[b * batch_size + i]
                out.append(ImageFlip(
                    name=name, label=classes[int(y[i])], clean_prediction=classes[int(clean[i])], attack=attack,
                    flip_epsilon=values[int(high[i])] if top_flips[i] else None,
                    flipped_to=classes[int(flipped_to[i])] if top_flips[i] else None, max_epsilon=max_eps))
            progress(ProgressEvent((b + 1) / batches, f"searched {min((b + 1) * batch_size, len(dataset))}/"
                                                      f"{len(dataset)} test images ({attack})"))
    return out
