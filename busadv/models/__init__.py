"""The architectures (SimpleCNN, ResNet50) behind one registry, and their checkpoints."""

# isort: off
from busadv.models import simplecnn as _simplecnn  # noqa: F401 - importing registers it; the study's model first
from busadv.models import resnet50 as _resnet50  # noqa: F401
# isort: on
from busadv.models.registry import (
    MODELS,
    ModelSpec,
    Normalize,
    build_model,
    default_image_size,
    describe_init,
    register_model,
)
from busadv.models.resnet50 import PretrainedWeightsUnavailable, imagenet_weights_available

__all__ = ["MODELS", "ModelSpec", "Normalize", "PretrainedWeightsUnavailable", "build_model", "default_image_size",
           "describe_init", "imagenet_weights_available", "register_model"]
