"""How many epochs a recipe should train, chosen on validation pooled over its runs.

Why: one run's validation split holds ~100 BUSI images, and the epoch it chooses can be an early peak of
chance (seed 1 at fgsm 8/255 chose epoch 16 of 40, where its clean task was not yet learnt). The mean over
several runs' validation curves is far steadier. Its choice is a property of the recipe, chosen on validation
images only; a refit on every training image for that many epochs (`--val-fraction 0 --select last
--epochs N`) then learns from the images the validation split held out. Each epoch is judged as a run judges
it (busadv.training.optim.EpochChoice): the mean of its score and the ones before it, from `start` on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from busadv.training.optim import SELECTION_WINDOW, EpochChoice

# The recipe settings whose validation scores measure the same thing only when they agree: recipes that differ in
# one of them cannot be ranked by their scores (another select, split, model, attack strength or length).
SCORE_FIELDS = ("arch", "mode", "epsilon", "select", "val_fraction", "split_policy", "test_fraction", "image_size",
                "data", "epochs")


@dataclass(frozen=True)
class PooledEpochs:
    epoch: int                 # the number of epochs the pooled validation score chooses
    score: float               # the pooled windowed score there
    curve: tuple[float, ...]   # per epoch (from 1): the mean over runs of the windowed score; NaN before start
    per_run: tuple[int, ...]   # the epoch each run's own score chooses, as the run itself chose it
    start: int


def windowed(scores: Sequence[float], window: int = SELECTION_WINDOW) -> list[float]:
    """Each epoch's score as a run judges it (EpochChoice.smoothed): the mean of it and the window - 1 before it."""
    choice = EpochChoice(window=window)
    return [choice.smoothed(score) for score in scores]


def chosen_epoch(scores: Sequence[float], start: int, window: int = SELECTION_WINDOW) -> int:
    """The epoch a run with these validation scores keeps: EpochChoice replayed (the earliest of equals)."""
    choice = EpochChoice(window=window, start=start)
    for epoch, score in enumerate(scores, start=1):
        choice.judge(epoch, score)
    if choice.best_epoch is None:
        raise ValueError("no epoch from the first eligible one on has a finite score")
    return choice.best_epoch


def validation_scores(history: Sequence[Mapping[str, Any]], name: str = "run") -> list[float]:
    """The per-epoch validation scores of one run's history; ValueError when it has none to pool."""
    if not history:
        raise ValueError(f"{name} has no training history")
    scores: list[float] = []
    for h in history:
        score = h.get("score") if isinstance(h, Mapping) else None
        if not (isinstance(score, (int, float)) and not isinstance(score, bool) and math.isfinite(score)):
            raise ValueError(f"{name} has no validation score for every epoch (trained without a validation "
                             "split, or stopped early): only runs that validated every epoch can be pooled")
        scores.append(float(score))
    return scores


def pooled_epoch_count(histories: Sequence[Sequence[Mapping[str, Any]]], start: int = 1,
                       window: int = SELECTION_WINDOW, names: Sequence[str] | None = None) -> PooledEpochs:
    """The epoch count whose windowed validation score, averaged over the runs, is highest (the earliest of equals)."""
    names = list(names) if names is not None else [f"run {i + 1}" for i in range(len(histories))]
    if not histories:
        raise ValueError("no runs to pool")
    scores = [validation_scores(h, n) for h, n in zip(histories, names, strict=True)]
    curves = [windowed(s, window) for s in scores]
    lengths = {len(c) for c in curves}
    if len(lengths) > 1:
        raise ValueError(f"the runs trained for different numbers of epochs ({', '.join(map(str, sorted(lengths)))}):"
                         " pool runs of one recipe")
    epochs = lengths.pop()
    start = max(1, min(int(start), epochs))
    pooled = [sum(c[e] for c in curves) / len(curves) if e + 1 >= start else math.nan for e in range(epochs)]
    best = chosen_epoch(pooled, start, window=1)  # the pooled curve is already windowed
    per_run = [chosen_epoch(s, start, window) for s in scores]
    return PooledEpochs(epoch=best, score=pooled[best - 1], curve=tuple(pooled), per_run=tuple(per_run), start=start)


def rank_recipes(candidates: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], start: int | Mapping[str, int] = 1,
                 window: int = SELECTION_WINDOW) -> list[tuple[str, PooledEpochs]]:
    """Recipes (name -> their runs' histories, the same seeds each) ranked by their pooled validation score at the
    epoch count each chooses, best first (the earliest given of equals): a lever's value chosen on validation, as
    the epoch count is, so the seeds that are tested choose nothing. `start` may differ per recipe (name -> its
    first eligible epoch): a recipe with another schedule or warm-up must not be read from the first one's."""
    starts = start if isinstance(start, Mapping) else dict.fromkeys(candidates, start)
    pooled = [(name, pooled_epoch_count(runs, starts[name], window,
                                        names=[f"{name}, run {i + 1}" for i in range(len(runs))]))
              for name, runs in candidates.items()]
    return sorted(pooled, key=lambda item: -item[1].score)
