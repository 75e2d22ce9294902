"""Numbers for how far attention moved: map correlation, attention on the lesion, the pointing game.

Why three: the correlation says whether the model still looks where it looked (needing no lesion
outline); the share of attention inside the lesion says how much of its looking is on the finding,
next to the lesion's own share of the image (what a map spread evenly would score); the pointing game
(Zhang et al. 2016: is the map's peak on the object?) is one yes/no per image that averages honestly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _array(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values).reshape(np.asarray(values).shape[-2:])


def is_flat(cam: np.ndarray | torch.Tensor) -> bool:
    """A map with no positive evidence anywhere (Grad-CAM gives all zeros): it points nowhere."""
    values = _array(cam)
    return not np.isfinite(values).all() or float(values.max() - values.min()) <= 1e-8


def peak(cam: np.ndarray | torch.Tensor) -> tuple[int, int] | None:
    """(row, column) of the map's maximum; None for a flat map (its argmax would be an arbitrary corner)."""
    values = _array(cam)
    if is_flat(values):
        return None
    row, col = np.unravel_index(int(np.argmax(values)), values.shape)
    return int(row), int(col)


def map_correlation(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float | None:
    """Pearson correlation of two maps (1: attention unchanged); None when either map is flat."""
    first, second = _array(a).astype(np.float64).ravel(), _array(b).astype(np.float64).ravel()
    if first.shape != second.shape:
        raise ValueError(f"maps of different sizes: {_array(a).shape} and {_array(b).shape}")
    if is_flat(first.reshape(1, -1)) or is_flat(second.reshape(1, -1)):
        return None
    return float(np.corrcoef(first, second)[0, 1])


@dataclass(frozen=True)
class LesionScore:
    """Where one map puts its attention relative to a lesion outline."""

    share: float              # share of the map's mass inside the lesion (0 for a flat map)
    area: float               # the lesion's share of the image: what a map spread evenly would score
    peak_inside: bool | None  # the pointing game; None: a flat map has no peak

    @property
    def hit(self) -> bool:
        """The pointing game's score for this image: a flat map points nowhere, so it misses."""
        return bool(self.peak_inside)


def _grown(mask: np.ndarray, tolerance: int) -> np.ndarray:
    if tolerance <= 0:
        return mask
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, iterations=int(tolerance))


def lesion_score(cam: np.ndarray | torch.Tensor, mask: np.ndarray | torch.Tensor,
                 tolerance: int = 0) -> LesionScore | None:
    """How much of `cam` lies on the lesion `mask` (same size); None when the mask is empty (no lesion).

    `tolerance` (pixels) grows the lesion for the pointing game only, as Zhang et al. allow 15 px at 224 px.
    """
    values, lesion = _array(cam).astype(np.float64), _array(mask).astype(bool)
    if values.shape != lesion.shape:
        raise ValueError(f"map {values.shape} and lesion mask {lesion.shape} differ in size")
    if not lesion.any():
        return None
    total = float(np.clip(values, 0, None).sum())
    share = float(np.clip(values, 0, None)[lesion].sum() / total) if total > 0 and not is_flat(values) else 0.0
    top = peak(values)
    inside = None if top is None else bool(_grown(lesion, tolerance)[top])
    return LesionScore(share=share, area=float(lesion.mean()), peak_inside=inside)


@dataclass(frozen=True)
class AttentionShift:
    """How attention moved from the clean image to the perturbed one."""

    correlation: float | None       # of the two maps; None when either is flat
    clean: LesionScore | None       # None: no lesion outline known
    perturbed: LesionScore | None

    @property
    def lesion_known(self) -> bool:
        return self.clean is not None and self.perturbed is not None


def attention_shift(clean: np.ndarray | torch.Tensor, perturbed: np.ndarray | torch.Tensor,
                    mask: np.ndarray | torch.Tensor | None = None, tolerance: int = 0) -> AttentionShift:
    """The attention-shift numbers of one image: correlation, and lesion scores where a lesion is outlined."""
    return AttentionShift(
        correlation=map_correlation(clean, perturbed),
        clean=None if mask is None else lesion_score(clean, mask, tolerance),
        perturbed=None if mask is None else lesion_score(perturbed, mask, tolerance),
    )
