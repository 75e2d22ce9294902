"""torchvision's ResNet50 with a 3-class head; grayscale is repeated to 3 channels inside.

ImageNet weights are used only when they are already in torchvision's cache: busadv never downloads.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from busadv.models.registry import ModelSpec, Normalize, register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's ResNet50_Weights.IMAGENET1K_V2 file; named here so that asking "are the weights there?"
# does not import torchvision (seconds at page load). tests/test_models.py checks it against torchvision.
IMAGENET_WEIGHTS_FILENAME = "resnet50-11ad3fa6.pth"


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but are not in torchvision's cache (nothing is downloaded)."""


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


class ResNet50Classifier(nn.Module):
    def __init__(self, num_classes: int = 3, pretrained: bool = False) -> None:
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


def _build(image_size: int, num_classes: int, pretrained: bool) -> nn.Module:
    return ResNet50Classifier(num_classes=num_classes, pretrained=pretrained)


def _cam_layer(model: nn.Module) -> nn.Module:
    """The last bottleneck block (7x7 at 224 px), the layer Grad-CAM's authors use for ResNets."""
    assert isinstance(model, ResNet50Classifier)
    return model.net.layer4[-1]


SPEC = register_model(ModelSpec(
    name="resnet50", label="ResNet50",
    description="torchvision's ResNet50 (trained from scratch unless ImageNet weights are in the cache)",
    default_image_size=224, build=_build, min_image_size=32, pretrained_available=imagenet_weights_available,
    cpu_images_per_second=3.0, cam_layer=_cam_layer, memory_gb_per_run=6.0))
