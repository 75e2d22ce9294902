"""The study's small network: three conv + ReLU + max-pool blocks, then fully connected layers."""

from __future__ import annotations

import torch
from torch import nn

from busadv.models.registry import ModelSpec, Normalize, register_model


class SimpleCNN(nn.Module):
    def __init__(self, image_size: int = 128, num_classes: int = 3, width: int = 16) -> None:
        super().__init__()
        if image_size % 8:
            raise ValueError(f"SimpleCNN needs an image size divisible by 8, got {image_size}")
        self.normalize = Normalize((0.5,), (0.25,))
        blocks: list[nn.Module] = []
        channels = 1
        for out in (width, width * 2, width * 4):
            # Max-pool before ReLU: the same function as conv+ReLU+pool (both are monotone), on a quarter of
            # the activations; layer indices, and so checkpoints, are unchanged.
            blocks += [nn.Conv2d(channels, out, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * (image_size // 8) ** 2, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.3),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


def _build(image_size: int, num_classes: int, pretrained: bool) -> nn.Module:
    return SimpleCNN(image_size=image_size, num_classes=num_classes)


def _cam_layer(model: nn.Module) -> nn.Module:
    """The last block's output (conv, pool, ReLU) at 1/8 of the input size: the finest map with class evidence."""
    assert isinstance(model, SimpleCNN)
    return model.features[-1]


# cpu_images_per_second: standard training at 128 px, one torch thread, on two shared cores, as the study
# report's own runs recorded it (2026-12: 200, 251 and 274 images/s); 51 made every estimate 3-6x too long.
SPEC = register_model(ModelSpec(
    name="simplecnn", label="SimpleCNN (the study's small CNN)",
    description="three conv + ReLU + max-pool blocks and two fully connected layers, as in the study",
    default_image_size=128, build=_build, size_multiple=8, cpu_images_per_second=230.0,
    cam_layer=_cam_layer, gpu_fraction=0.25))
