"""The study's offline protocol: perturb the training set once with a standard model, train a fresh one on it.

Unlike online adversarial training, the perturbations never follow the model being trained: they are the
attack on a *different*, standard model. The perturbed set is kept as 8-bit images, as saved files would be.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, cast

import torch

from busadv.attacks import fgsm
from busadv.data.imageset import ImageSet
from busadv.progress import ProgressEvent, ProgressFn
from busadv.settings import pick_device
from busadv.training.recipe import AdversarialRecipe


def perturb_training_set(config: AdversarialRecipe, train_set: ImageSet, progress: ProgressFn,
                         train_model: Callable[..., Any]) -> ImageSet:
    """Train a standard model (same seed, epochs and settings), then FGSM every training image with it."""

    def first_half(event: ProgressEvent) -> None:
        progress(ProgressEvent(event.fraction * 0.5, f"offline protocol, standard model: {event.message}",
                               event.epoch, event.epochs, event.loss, event.accuracy))

    standard = dataclasses.replace(cast(Any, config), mode="standard", warmup_epochs=0)
    source = train_model(standard, train_set, None, progress=first_half).model
    device = pick_device(config.device)
    labels = None if config.adv_labels == "predicted" else train_set.labels
    images = []
    for start in range(0, len(train_set), 64):
        index = torch.arange(start, min(start + 64, len(train_set)))
        x = train_set.floats(index, device)
        y = None if labels is None else labels[index].to(device)
        images.append((fgsm(source, x, y, config.epsilon) * 255).round().clamp(0, 255).to(torch.uint8).cpu())
    progress(ProgressEvent(0.5, f"offline protocol: {len(train_set)} training images perturbed at the study's "
                                f"epsilon with the standard model; training a fresh model on them"))
    return dataclasses.replace(train_set, images=torch.cat(images).contiguous())
