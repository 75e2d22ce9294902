"""The architectures busadv can train, behind one registry; inputs are [0, 1] grayscale, normalization inside.

Keeping the normalizer inside the model means an epsilon always lives in pixel space, whichever model.
Adding an architecture is one file that calls `register_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from busadv.registry import Choice, Registry


@dataclass(frozen=True)
class ModelSpec(Choice):
    default_image_size: int
    build: Callable[[int, int, bool], nn.Module]  # (image size, number of classes, pretrained) -> model
    size_multiple: int = 1         # image sizes must be a multiple of this
    min_image_size: int = 8
    max_image_size: int = 512      # an upper bound that keeps memory sane (training at 4096 px would need ~24 GB+)
    pretrained_available: Callable[[], bool] | None = None  # None: no pretrained weights exist for it
    cpu_images_per_second: float = 10.0  # standard training on 2 CPU cores at the default size (estimates)
    # What one training run of a grid holds while it runs (busadv.experiments.backends): the local pool sizes
    # itself by them and Ray schedules by them. One torch thread per run: small convolutions scale badly with
    # threads, so N one-thread runs side by side beat one N-thread run (the benchmark's scale section).
    cpus_per_run: int = 1
    gpu_fraction: float = 1.0      # share of one GPU a run takes on CUDA (small models share a card)
    memory_gb_per_run: float = 1.0  # peak resident memory of a training run at the default size, batch 32
    # The layer Grad-CAM reads (busadv.explain): the last convolutional block, whose maps still have a place
    # in the image. None: busadv.explain falls back to the model's last Conv2d.
    cam_layer: Callable[[nn.Module], nn.Module] | None = None

    def check_image_size(self, size: int) -> int:
        size = int(size)
        if not self.min_image_size <= size <= self.max_image_size:
            raise ValueError(f"image size for {self.name} must be between {self.min_image_size} and "
                             f"{self.max_image_size} pixels, got {size}")
        if size % self.size_multiple:
            raise ValueError(f"image size for {self.name} must be a multiple of {self.size_multiple}, got {size}")
        return size


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(spec: ModelSpec, replace: bool = False) -> ModelSpec:
    return MODELS.register(spec, replace=replace)


class Normalize(nn.Module):
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def default_image_size(arch: str | ModelSpec) -> int:
    return MODELS.get(arch).default_image_size


def build_model(arch: str | ModelSpec, image_size: int | None = None, pretrained: bool = False,
                num_classes: int = 3) -> nn.Module:
    """A fresh model by name; `image_size` matters for models with a fixed-size head (SimpleCNN)."""
    spec = MODELS.get(arch)
    size = spec.check_image_size(image_size or spec.default_image_size)
    if pretrained and spec.pretrained_available is None:
        raise ValueError(f"{spec.name} has no pretrained weights; pretrained applies to "
                         f"{', '.join(m.name for m in MODELS if m.pretrained_available) or 'no model'} only.")
    return spec.build(size, num_classes, pretrained)


def describe_init(arch: str | ModelSpec, pretrained: bool) -> str:
    """A plain sentence for logs and the UI on how the weights start."""
    spec = MODELS.get(arch)
    if pretrained:
        return "starting from ImageNet weights found in torchvision's cache"
    if spec.pretrained_available is not None:
        return "training from scratch (no ImageNet weights: none are downloaded)"
    return "training from scratch"
