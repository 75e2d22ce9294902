"""On-the-fly augmentation of a batch of B-mode ultrasound images, drawn per image from the run's generator.

Why our own few lines rather than torchvision.transforms.v2: v2 draws one set of parameters per call, so a
batch tensor would get one flip, one rotation and one gain for all its images, and it cannot draw from the
run's seeded generator (resumed runs must draw the same numbers). Every image here gets its own draw.

What suits ultrasound: depth runs down a B-mode image (skin at the top, acoustic shadows below lesions), so
images are flipped left-right but never up-down, and rotations stay small. Gain and contrast jitter mimic
the scanner's settings. Augmentation happens before any attack, so adversarial batches are augmented too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_ROTATION_DEGREES = 7.0
MAX_SHIFT = 0.06          # of the image size
ZOOM = (0.92, 1.08)
GAIN = (0.8, 1.2)         # brightness multiplier (the scanner's gain)
CONTRAST = (0.8, 1.25)    # around the image's own mean


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def augment_ultrasound(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """x: (N, C, H, W) in [0, 1] -> an augmented copy in [0, 1], every image drawn on its own."""
    n = x.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    angle = _uniform(n, -MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES, generator) * math.pi / 180
    zoom = _uniform(n, *ZOOM, generator)
    shift = _uniform(2 * n, -MAX_SHIFT, MAX_SHIFT, generator).view(n, 2) * 2  # grid coordinates span [-1, 1]
    gain = _uniform(n, *GAIN, generator)
    contrast = _uniform(n, *CONTRAST, generator)

    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    sign = torch.where(flip, -1.0, 1.0)
    theta = torch.stack([torch.stack([cos * sign, -sin, shift[:, 0]], 1),
                         torch.stack([sin * sign, cos, shift[:, 1]], 1)], 1).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Border padding: the dark margin of an ultrasound frame continues rather than a black wedge appearing.
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    contrast = contrast.view(n, 1, 1, 1).to(x.device, x.dtype)
    gain = gain.view(n, 1, 1, 1).to(x.device, x.dtype)
    out = ((out - mean) * contrast + mean) * gain
    return out.clamp_(0.0, 1.0).contiguous(memory_format=torch.channels_last) if x.is_contiguous(
        memory_format=torch.channels_last) else out.clamp_(0.0, 1.0)


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """The run's augmentation (busadv.training.config.AUGMENTATIONS) of one training batch."""
    if kind == "none":
        return x
    if kind == "ultrasound":
        return augment_ultrasound(x, generator)
    raise ValueError(f"unknown augmentation {kind!r}")
