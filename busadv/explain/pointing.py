"""The pointing game over a test set as epsilon grows: does the model's attention stay on the lesion?

Only images with an outlined lesion count (phantoms know theirs; BUSI downloads carry masks); normal
images have nothing to point at. Each map explains the model's own answer on that image, so a flipped
diagnosis is explained by where the model looked when it gave the wrong answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from torch import nn

from busadv.attacks import ATTACKS, AttackContext, check_epsilon, eval_mode
from busadv.data.imageset import ImageSet
from busadv.explain.gradcam import gradcam, layer_fn
from busadv.explain.lesion import lesion_score, map_correlation
from busadv.progress import ProgressEvent, ProgressFn, ignore_progress

CLEAN = "none"


class NoLesionMasks(ValueError):
    """The images carry no lesion outline, so attention on the lesion cannot be measured."""


@dataclass(frozen=True)
class PointingRow:
    """One epsilon of the pointing game."""

    attack: str
    epsilon: float
    images: int              # images with an outlined lesion
    on_lesion: float         # share whose attention peak lies on the lesion (the pointing game)
    lesion_share: float      # mean share of attention inside the lesion
    lesion_area: float       # mean share of the image the lesion covers (what an even map would score)
    correlation: float       # mean correlation with the clean image's map (NaN where no map had a peak)
    flat_maps: int           # maps with no positive evidence (they point nowhere and count as misses)
    flipped: float           # share of images whose predicted class changed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lesion_images(dataset: ImageSet) -> ImageSet:
    """The images with a non-empty lesion outline; NoLesionMasks (saying why) when there are none."""
    if dataset.masks is None:
        raise NoLesionMasks(f"{dataset.source} has no lesion masks (BUSI downloads carry them as "
                            "'<image>_mask.png' beside each image), so attention on the lesion cannot be measured")
    keep = dataset.masks.flatten(1).any(1).nonzero().flatten()
    if not len(keep):
        raise NoLesionMasks(f"none of the {len(dataset)} images has an outlined lesion")
    return dataset.subset(keep)


def pointing_game(model: nn.Module, dataset: ImageSet, attack: str = "fgsm",
                  epsilons: Sequence[float] = (0.0, 2 / 255, 8 / 255), arch: str | None = None,
                  layer: nn.Module | None = None, batch_size: int = 16, tolerance: int = 0, pgd_steps: int = 10,
                  seed: int = 0, progress: ProgressFn = ignore_progress) -> list[PointingRow]:
    """Per epsilon, the share of lesion images whose Grad-CAM peak stays on the lesion, and how the maps moved."""
    spec = ATTACKS.get(attack)
    grid = [check_epsilon(e) for e in epsilons] or [0.0]
    images = lesion_images(dataset)
    layer = layer if layer is not None else layer_fn(arch)(model)
    device = next(model.parameters()).device
    hits, shares, areas, flat, flips = (dict.fromkeys(grid, 0.0) for _ in range(5))
    correlations: dict[float, list[float]] = {e: [] for e in grid}
    batches = max(1, -(-len(images) // batch_size))
    with eval_mode(model):
        for b in range(batches):
            part = slice(b * batch_size, (b + 1) * batch_size)
            x, y = images.floats(part, device), images.labels[part].to(device)
            masks = images.masks[part].numpy() if images.masks is not None else None
            assert masks is not None
            context = AttackContext(model, x, y, seed=seed, batch=b, pgd_steps=pgd_steps)
            clean = gradcam(model, x, layer=layer)
            for eps in grid:
                attacked = clean if eps == 0 else gradcam(model, spec.perturb(context, eps), layer=layer)
                flips[eps] += float(np.sum(np.array(attacked.targets) != np.array(clean.targets)))
                for i, cam in enumerate(attacked.maps):
                    score = lesion_score(cam, masks[i, 0], tolerance)
                    assert score is not None  # lesion_images kept only outlined lesions
                    hits[eps] += score.hit
                    shares[eps] += score.share
                    areas[eps] += score.area
                    flat[eps] += score.peak_inside is None
                    r = map_correlation(clean.maps[i], cam)
                    if r is not None:
                        correlations[eps].append(r)
            progress(ProgressEvent((b + 1) / batches, f"pointing game: {min((b + 1) * batch_size, len(images))}"
                                   f"/{len(images)} lesion images"))
    n = len(images)
    return [PointingRow(attack=CLEAN if eps == 0 else spec.name, epsilon=eps, images=n, on_lesion=hits[eps] / n,
                        lesion_share=shares[eps] / n, lesion_area=areas[eps] / n,
                        correlation=float(np.mean(correlations[eps])) if correlations[eps] else float("nan"),
                        flat_maps=int(flat[eps]), flipped=flips[eps] / n) for eps in grid]


def pointing_table(rows: Sequence[PointingRow]) -> str:
    """The rows as a plain-text table for the command line."""
    from busadv.attacks import attack_label, format_epsilon

    lines = [f"{'condition':<34} {'peak on lesion':>14} {'attention on lesion':>20} {'lesion area':>11} "
             f"{'corr. with clean':>16} {'flat maps':>9} {'flipped':>8}"]
    for r in rows:
        name = "clean" if r.epsilon == 0 else f"{attack_label(r.attack)} ε={format_epsilon(r.epsilon)}"
        corr = "n/a" if np.isnan(r.correlation) else f"{r.correlation:.2f}"
        lines.append(f"{name:<34} {r.on_lesion:>14.1%} {r.lesion_share:>20.1%} {r.lesion_area:>11.1%} "
                     f"{corr:>16} {r.flat_maps:>9} {r.flipped:>8.1%}")
    return "\n".join(lines)

