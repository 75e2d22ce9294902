"""The optimizer, its schedule, the weight average and the choice of epoch: the levers of a careful run.

The EMA is torch's own (torch.optim.swa_utils.AveragedModel with an EMA update); the choice of epoch keeps
the weights of the best (smoothed, post-warm-up) validation score seen so far and says when patience has run out.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from busadv.training.config import TrainConfig

COSINE_WARMUP_EPOCHS = 1
ONECYCLE_WARMUP = 0.3  # share of the steps spent warming up


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig,
                  steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-step schedule over all the run's epochs (early stopping only cuts it short); None: constant."""
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total,
                                                   pct_start=ONECYCLE_WARMUP, anneal_strategy="cos")
    if config.schedule == "cosine":
        warmup = min(total - 1, COSINE_WARMUP_EPOCHS * steps_per_epoch)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return None


def ema_decay_at(decay: float, updates: int) -> float:
    """The decay after `updates` averaging steps: ramped up from 0.1 so a short run's average is not its
    initial weights (as TensorFlow's ExponentialMovingAverage does with num_updates)."""
    return min(decay, (1 + updates) / (10 + updates))


def ema_ramp_note(decay: float, steps: int) -> str:
    """'' when the ramp reaches `decay` within a run of `steps` optimizer steps, else what the average really was:
    on a small dataset (BUSI: ~680 steps in 40 epochs) a setting of 0.995 never takes effect."""
    if not decay or steps < 1 or ema_decay_at(decay, steps - 1) >= decay:
        return ""
    needed = math.ceil((10 * decay - 1) / (1 - decay))
    return (f"the weight average's decay ramps up to {ema_decay_at(decay, steps - 1):.3f} over this run's {steps:,} "
            f"steps; the setting {decay:g} would take effect after {needed:,}")


class Averager:
    """An exponential moving average of the weights (and buffers), updated after every optimizer step.

    torch's AveragedModel keeps the copy and the count; the update is an EMA whose decay ramps up
    (ema_decay_at): torch's own get_ema_multi_avg_fn has a fixed decay, which leaves a 40-step run at
    0.995 ** 40 = 82% of its random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        def update(averaged: Sequence[torch.Tensor], current: Sequence[torch.Tensor],
                   updates: torch.Tensor | int) -> None:
            weight = 1.0 - ema_decay_at(decay, int(updates))
            floating = [(a, c) for a, c in zip(averaged, current, strict=True) if a.is_floating_point()]
            if floating:
                torch._foreach_lerp_([a for a, _ in floating], [c for _, c in floating], weight)
            for a, c in zip(averaged, current, strict=True):
                if not a.is_floating_point():
                    a.copy_(c)

        self.averaged = AveragedModel(model, multi_avg_fn=update, use_buffers=True)

    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    @property
    def model(self) -> nn.Module:
        return self.averaged.module

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()

    def load_state_dict(self, values: dict[str, Any]) -> None:
        self.averaged.load_state_dict(values)


SELECTION_WINDOW = 3  # epochs whose validation scores are averaged: one lucky epoch on ~100 images never wins


def first_eligible_epoch(config: TrainConfig) -> int:
    """The first epoch the choice may take: after the warm-up, when the learning rate starts to fall.

    A model chosen in the warm-up of a one-cycle run is a half-trained one that scored well by chance on a
    small validation split (seen on BUSI: epoch 9 of 40, test balanced accuracy 0.52 against 0.70-0.77).
    """
    if config.schedule == "onecycle":
        start = math.ceil(ONECYCLE_WARMUP * config.epochs) + 1
    elif config.schedule == "cosine":
        start = COSINE_WARMUP_EPOCHS + 1
    else:
        start = 1
    return max(1, min(start, config.epochs))


@dataclass
class EpochChoice:
    """The best validation score so far, its epoch and weights; and whether patience has run out.

    An epoch is judged by the mean of its score and the ones before it (`window` epochs in all), and only
    from `start` on: validation splits here hold ~100 images, where one epoch's balanced accuracy moves by
    +-0.05 by chance, and the maximum of forty such numbers is mostly luck.
    """

    patience: int = 0
    window: int = 1
    start: int = 1
    best_score: float = -math.inf
    best_epoch: int | None = None
    best_weights: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    recent: list[float] = field(default_factory=list, repr=False)

    def smoothed(self, score: float) -> float:
        """The score an epoch is judged by, once `score` has joined the recent ones."""
        self.recent = [*self.recent, score][-max(1, self.window):]
        return sum(self.recent) / len(self.recent)

    def judge(self, epoch: int, score: float) -> bool:
        """Record an epoch's score; True when it is the best so far. The one rule for choosing an epoch: a run
        applies it as it trains (offer), busadv.training.epoch_count replays it on stored scores."""
        if not math.isfinite(score):
            self.recent = []
            return False
        judged = self.smoothed(score)
        if epoch < self.start or judged <= self.best_score:
            return False
        self.best_score, self.best_epoch = judged, epoch
        return True

    def offer(self, epoch: int, score: float, model: nn.Module) -> bool:
        """As judge, keeping the weights of the best epoch so far."""
        if not self.judge(epoch, score):
            return False
        self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return True

    def exhausted(self, epoch: int) -> bool:
        return bool(self.patience) and self.best_epoch is not None and epoch - self.best_epoch >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch,
                "best_weights": copy.copy(self.best_weights), "recent": list(self.recent)}

    def load_state_dict(self, values: dict[str, Any]) -> None:
        self.best_score = float(values["best_score"])
        epoch = values["best_epoch"]
        self.best_epoch = int(epoch) if epoch is not None else None
        self.best_weights = values["best_weights"]
        self.recent = [float(v) for v in values.get("recent", [])]
