"""Where a model looks: Grad-CAM maps from the maintained `grad-cam` package (pytorch_grad_cam).

Why the package and not a copy: its hooks, the channel weighting and the upsampling are the reference
implementation that papers cite; busadv only picks the layer (from the model registry), the target
class, and keeps the model's mode and the callers' threads out of each other's way.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from busadv.attacks import eval_mode
from busadv.models import MODELS

LayerFn = Callable[[nn.Module], nn.Module]


@dataclass(frozen=True)
class CamResult:
    """Grad-CAM maps for a batch, with the class each map explains and the model's probabilities."""

    maps: np.ndarray           # float32 [N, H, W] in [0, 1], at the input's size; all zero where nothing pointed
    targets: tuple[int, ...]   # the class each map explains
    probabilities: np.ndarray  # float32 [N, classes]


def last_conv(model: nn.Module) -> nn.Module:
    """The model's last Conv2d: the usual Grad-CAM layer when the registry names none."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer; give Grad-CAM a layer explicitly")
    return convs[-1]


def layer_fn(arch: str | None) -> LayerFn:
    """How to find the Grad-CAM layer of a model of this architecture (the registry's choice, else the last conv)."""
    if arch is not None and arch in MODELS:
        chosen = MODELS.get(arch).cam_layer
        if chosen is not None:
            return chosen
    return last_conv


def _targets(targets: int | Sequence[int] | None, n: int) -> list[int] | None:
    if targets is None:
        return None
    if isinstance(targets, int):
        return [targets] * n
    chosen = [int(t) for t in targets]
    if len(chosen) != n:
        raise ValueError(f"{len(chosen)} target classes for {n} images")
    return chosen


def gradcam(model: nn.Module, x: torch.Tensor, targets: int | Sequence[int] | None = None,
            layer: nn.Module | None = None) -> CamResult:
    """Grad-CAM of `model` on a [N, C, H, W] batch in [0, 1], for `targets` (None: each image's predicted class).

    The model is put in eval mode for the call and given back in its own mode. Hooks sit on `layer` only
    during the call, but any other forward pass through the same model at that time would be recorded too:
    share a model between threads through AttentionMapper, which works on a private copy.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = layer if layer is not None else last_conv(model)
    chosen = _targets(targets, int(x.shape[0]))
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        # A fresh leaf that needs a gradient: then the layer's output does too, even when no weight does.
        batch = x.detach().clone().float().requires_grad_(True)
        cam = GradCAM(model=model, target_layers=[layer])
        try:
            maps = cam(input_tensor=batch, targets=None if chosen is None else
                       [ClassifierOutputTarget(t) for t in chosen])
            logits = cam.outputs.detach()
        finally:
            cam.activations_and_grads.release()  # not `with GradCAM(...)`: its __exit__ swallows IndexErrors
            model.zero_grad(set_to_none=True)     # the package's backward pass leaves weight gradients behind
    probabilities = torch.softmax(logits.float(), dim=1).cpu().numpy()
    used = tuple(chosen) if chosen is not None else tuple(int(i) for i in probabilities.argmax(1))
    return CamResult(maps=np.nan_to_num(np.asarray(maps, dtype=np.float32)), targets=used,
                     probabilities=probabilities)


class AttentionMapper:
    """Grad-CAM for one model that every browser session may ask at once.

    Why a private copy: Grad-CAM works through hooks on a layer, and a hook on the shared model would
    also record the forward passes other sessions make at the same moment (the slider's probabilities).
    The copy has no weight gradients at all and is used under a lock; the shared model is never touched.
    """

    def __init__(self, model: nn.Module, arch: str | None = None, layer: LayerFn | None = None) -> None:
        self._model = copy.deepcopy(model).eval()
        for parameter in self._model.parameters():
            parameter.requires_grad_(False)
        self._layer = (layer or layer_fn(arch))(self._model)
        self._lock = threading.Lock()

    def maps(self, x: torch.Tensor, targets: int | Sequence[int] | None = None) -> CamResult:
        """Grad-CAM maps of a [N, C, H, W] batch in [0, 1] (see gradcam)."""
        device = next(self._model.parameters()).device
        with self._lock:
            return gradcam(self._model, x.to(device), targets, self._layer)
