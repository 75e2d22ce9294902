"""Pictures of attention: a Grad-CAM map over the ultrasound, the lesion outline, the peak, and how a map moved.

The heat map itself is the grad-cam package's own `show_cam_on_image` (its JET colours: red where the
model looks most), so busadv's pictures match the package's documentation and the papers that use it.
"""

from __future__ import annotations

import numpy as np
import torch

from busadv.explain.lesion import peak

OUTLINE = (255, 255, 255)  # the lesion outline: white reads on every colour of the JET map


def _gray(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 [H, W] from a uint8 array or a [.., H, W] tensor in [0, 1]."""
    if isinstance(image, torch.Tensor):
        image = (image.detach().reshape(image.shape[-2:]).cpu().numpy() * 255).round().clip(0, 255)
    values = np.asarray(image)
    return values.reshape(values.shape[-2:]).astype(np.uint8)


def outline_lesion(rgb: np.ndarray, mask: np.ndarray | torch.Tensor | None) -> np.ndarray:
    """`rgb` with the lesion's outline drawn on it (a copy); unchanged when there is no lesion."""
    import cv2

    if mask is None:
        return rgb
    lesion = np.asarray(mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else mask)
    lesion = lesion.reshape(lesion.shape[-2:]).astype(np.uint8)
    if not lesion.any():
        return rgb
    contours, _ = cv2.findContours(lesion, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = np.ascontiguousarray(rgb.copy())
    cv2.drawContours(out, contours, -1, OUTLINE, thickness=max(1, rgb.shape[0] // 160))
    return out


def mark_peak(rgb: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """`rgb` with a cross on the map's peak (black under white, so it shows on any colour); a flat map gets none."""
    import cv2

    top = peak(cam)
    if top is None:
        return rgb
    out = np.ascontiguousarray(rgb.copy())
    size = max(5, rgb.shape[0] // 12)
    center = (int(top[1]), int(top[0]))
    cv2.drawMarker(out, center, (0, 0, 0), cv2.MARKER_CROSS, size, thickness=max(2, rgb.shape[0] // 64))
    cv2.drawMarker(out, center, (255, 255, 255), cv2.MARKER_CROSS, size, thickness=max(1, rgb.shape[0] // 128))
    return out


def cam_overlay(image: np.ndarray | torch.Tensor, cam: np.ndarray, mask: np.ndarray | torch.Tensor | None = None,
                image_weight: float = 0.55) -> np.ndarray:
    """uint8 RGB [H, W, 3]: the map in JET colours over the grayscale image, the lesion outlined, the peak crossed."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    gray = _gray(image).astype(np.float32) / 255.0
    rgb = np.repeat(gray[..., None], 3, axis=2)
    heat = np.clip(np.nan_to_num(np.asarray(cam, dtype=np.float32).reshape(gray.shape)), 0, 1)
    blended = show_cam_on_image(rgb, heat, use_rgb=True, image_weight=image_weight)
    return mark_peak(outline_lesion(blended, mask), heat)


def attention_difference(image: np.ndarray | torch.Tensor, clean: np.ndarray, perturbed: np.ndarray,
                         mask: np.ndarray | torch.Tensor | None = None) -> np.ndarray:
    """uint8 RGB: where attention grew (red) or shrank (blue) from the clean map to the perturbed one."""
    from matplotlib import colormaps

    gray = _gray(image).astype(np.float32) / 255.0
    change = np.clip(np.asarray(perturbed, np.float32) - np.asarray(clean, np.float32), -1, 1).reshape(gray.shape)
    colours = colormaps["RdBu_r"]((change + 1) / 2)[..., :3].astype(np.float32)
    weight = np.abs(change)[..., None] ** 0.5  # small changes stay faint, the image shows through
    rgb = weight * colours + (1 - weight) * gray[..., None]
    return outline_lesion((rgb * 255).round().clip(0, 255).astype(np.uint8), mask)
