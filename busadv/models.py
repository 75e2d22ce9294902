"""The study's two architectures behind one registry; inputs are [0, 1] grayscale, normalization inside.

Keeping the normalizer inside the model means an epsilon always lives in pixel space, whichever model.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import torch
from torch import nn

from busadv.choices import coerce_choice
from busadv.data import CLASSES


class Arch(str, Enum):
    SIMPLECNN = "simplecnn"
    RESNET50 = "resnet50"

    @classmethod
    def coerce(cls, value: "str | Arch") -> "Arch":
        return coerce_choice(cls, value, "model")


DEFAULT_IMAGE_SIZE: dict[Arch, int] = {Arch.SIMPLECNN: 128, Arch.RESNET50: 224}


class Normalize(nn.Module):
    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SimpleCNN(nn.Module):
    """The study's small network: three conv + ReLU + max-pool blocks, then fully connected layers."""

    def __init__(self, image_size: int = 128, num_classes: int = len(CLASSES), width: int = 16) -> None:
        super().__init__()
        if image_size % 8:
            raise ValueError(f"SimpleCNN needs an image size divisible by 8, got {image_size}")
        self.normalize = Normalize((0.5,), (0.25,))
        blocks = []
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


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResNet50Classifier(nn.Module):
    """torchvision's ResNet50 with a 3-class head; grayscale is repeated to 3 channels inside."""

    def __init__(self, num_classes: int = len(CLASSES), pretrained: bool = False) -> None:
        super().__init__()
        from torchvision.models import resnet50

        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
        if pretrained:
            self.net = resnet50(weights=None)
            self.net.load_state_dict(load_imagenet_state_dict())
            self.net.fc = nn.Linear(self.net.fc.in_features, num_classes)
        else:
            self.net = resnet50(weights=None, num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net(self.normalize(x))


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but are not in torchvision's cache (nothing is downloaded)."""


# torchvision's ResNet50_Weights.IMAGENET1K_V2 file; named here so that asking "are the weights there?"
# does not import torchvision (seconds at page load). tests/test_training.py checks it against torchvision.
IMAGENET_WEIGHTS_FILENAME = "resnet50-11ad3fa6.pth"


def imagenet_weights_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_WEIGHTS_FILENAME


def imagenet_weights_available() -> bool:
    return imagenet_weights_file().is_file()


def load_imagenet_state_dict() -> dict:
    path = imagenet_weights_file()
    if not path.is_file():
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights for ResNet50 are not in torchvision's cache ({path}); busadv never downloads. "
            f"Copy the file there (or set TORCH_HOME), or train from scratch without --pretrained.")
    return torch.load(path, map_location="cpu", weights_only=True)


def build_model(arch: str | Arch, image_size: int | None = None, pretrained: bool = False) -> nn.Module:
    """A fresh model by name; `image_size` matters for SimpleCNN's fully connected layer."""
    arch = Arch.coerce(arch)
    size = image_size or DEFAULT_IMAGE_SIZE[arch]
    if arch is Arch.SIMPLECNN:
        if pretrained:
            raise ValueError("SimpleCNN has no pretrained weights; pretrained applies to resnet50 only.")
        return SimpleCNN(image_size=size)
    return ResNet50Classifier(pretrained=pretrained)


def describe_init(arch: str | Arch, pretrained: bool) -> str:
    """A plain sentence for logs and the UI on how the weights start."""
    if pretrained:
        return "starting from ImageNet weights found in torchvision's cache"
    if Arch.coerce(arch) is Arch.RESNET50:
        return "training from scratch (no ImageNet weights: none are downloaded)"
    return "training from scratch"
