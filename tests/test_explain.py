"""busadv.explain: Grad-CAM from the grad-cam package, attention numbers, the pointing game, BUSI masks, exports."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from busadv.data import ImageSet, load_busi
from busadv.explain import (
    AttentionMapper,
    Comparison,
    NoLesionMasks,
    Panel,
    attention_shift,
    cam_overlay,
    comparison_html,
    comparison_png,
    gradcam,
    layer_fn,
    lesion_score,
    map_correlation,
    peak,
    pointing_game,
)

SIZE = 32


class Quadrants(nn.Module):
    """Channel 0: the image's top-left quadrant; channel 1: the rest (zero elsewhere)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(x)
        mask[..., : x.shape[-2] // 2, : x.shape[-1] // 2] = 1
        return torch.cat([x * mask, x * (1 - mask)], dim=1)


class QuadrantModel(nn.Module):
    """A model whose class 0 is the sum of the top-left quadrant's pixels and class 1 the sum of the rest.

    Grad-CAM on `features` for class 0 must therefore light up the top-left quadrant and nothing else.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = Quadrants()
        self.scale = nn.Parameter(torch.ones(1))  # a weight, so that gradients and eval mode mean something

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        quarter = f[:, 0].flatten(1).sum(1) / (f.shape[-1] * f.shape[-2] / 4)
        rest = f[:, 1].flatten(1).sum(1) / (f.shape[-1] * f.shape[-2] * 3 / 4)
        return torch.stack([quarter, rest, 0.25 * torch.ones_like(rest)], dim=1) * self.scale


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def test_gradcam_peaks_where_the_decision_depends_on_the_image():
    model = QuadrantModel().train()
    x = _images(4)
    result = gradcam(model, x, targets=0, layer=model.features)
    assert result.maps.shape == (4, SIZE, SIZE) and result.targets == (0, 0, 0, 0)
    for cam in result.maps:
        row, col = peak(cam)
        assert row < SIZE // 2 and col < SIZE // 2, "class 0 depends only on the top-left quadrant"
        assert cam[SIZE // 2:, :].max() < 0.05 and cam[:, SIZE // 2:].max() < 0.05
    other = gradcam(model, x, targets=1, layer=model.features)
    assert all(not (r < SIZE // 2 and c < SIZE // 2) for r, c in (peak(m) for m in other.maps))
    assert model.training, "the caller's mode comes back"
    assert model.scale.grad is None, "no weight gradient is left behind"
    assert not any(m._forward_hooks for m in model.modules()), "no hook is left on the model"


def test_default_target_is_each_images_own_answer():
    model = QuadrantModel()
    x = _images(2)
    x[0, :, : SIZE // 2, : SIZE // 2] = 1.0   # bright top-left: the model answers class 0
    x[1, :, : SIZE // 2, : SIZE // 2] = 0.0   # dark top-left: class 1
    result = gradcam(model, x, layer=model.features)
    assert result.targets == (0, 1)
    assert np.allclose(result.probabilities.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("arch, size", [("simplecnn", 128), ("resnet50", 224)])
def test_every_registered_model_gets_maps_at_its_input_size(arch, size):
    from busadv.models import build_model

    model = build_model(arch, size).eval()
    x = _images(1, seed=3).expand(1, 1, SIZE, SIZE)
    x = torch.nn.functional.interpolate(x, size=(size, size))  # [1, 1, H, W] in [0, 1]; ResNet50 expands it
    mapper = AttentionMapper(model, arch)
    with torch.inference_mode():  # pages call from inference mode; Grad-CAM still gets its gradients
        shared = mapper.maps(x)
    assert shared.maps.shape == (1, size, size) and 0 <= shared.maps.min() and shared.maps.max() <= 1
    direct = gradcam(model, x, layer=layer_fn(arch)(model))
    np.testing.assert_allclose(shared.maps, direct.maps, atol=1e-5)
    assert not any(m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_attention_shift_numbers():
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    blob = lambda r, c: np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 20.0)  # noqa: E731
    here, there = blob(8, 8), blob(24, 24)
    assert map_correlation(here, here) == pytest.approx(1.0)
    assert map_correlation(here, there) < 0.1
    assert map_correlation(here, np.zeros_like(here)) is None, "a flat map has no pattern to correlate"
    lesion = (yy - 8) ** 2 + (xx - 8) ** 2 <= 16
    on, off = lesion_score(here, lesion), lesion_score(there, lesion)
    assert on.peak_inside and on.share > 0.5 and on.area == pytest.approx(lesion.mean())
    assert off.peak_inside is False and off.share < 0.01 and not off.hit
    assert lesion_score(np.zeros_like(here), lesion).peak_inside is None, "a flat map points nowhere"
    assert lesion_score(here, np.zeros_like(lesion)) is None, "no lesion, no score"
    near = blob(8, 14)  # peak 6 px right of the centre, 2 px outside the outline
    assert not lesion_score(near, lesion).hit and lesion_score(near, lesion, tolerance=3).hit
    shift = attention_shift(here, there, lesion)
    assert shift.correlation < 0.1 and shift.clean.hit and not shift.perturbed.hit and shift.lesion_known
    assert not attention_shift(here, there).lesion_known


def _quadrant_set(lesions_top_left: int, lesions_elsewhere: int) -> ImageSet:
    """Images with a lesion outlined either in the top-left quadrant or in the bottom-right one."""
    n = lesions_top_left + lesions_elsewhere
    images = (_images(n) * 255).to(torch.uint8)
    images[:, :, : SIZE // 2, : SIZE // 2] = 200  # the model answers class 0 and looks top-left ...
    images[:lesions_top_left, :, 4:12, 4:12] = 255  # ... hottest where the lesion is bright
    masks = torch.zeros(n, 1, SIZE, SIZE, dtype=torch.bool)
    masks[:lesions_top_left, :, 4:12, 4:12] = True
    masks[lesions_top_left:, :, 20:28, 20:28] = True
    return ImageSet(images=images, labels=torch.zeros(n, dtype=torch.long), names=tuple(f"i{i}" for i in range(n)),
                    source="constructed", simulated=True, fingerprint="x", groups=torch.arange(n), masks=masks)


def test_pointing_game_scores_the_share_of_peaks_on_the_lesion():
    model = QuadrantModel()
    rows = pointing_game(model, _quadrant_set(3, 1), "noise", [0.0, 2 / 255], layer=model.features, batch_size=3)
    assert [r.epsilon for r in rows] == [0.0, 2 / 255] and rows[0].attack == "none" and rows[1].attack == "noise"
    assert rows[0].images == 4 and rows[0].on_lesion == pytest.approx(0.75)
    assert rows[0].correlation == pytest.approx(1.0) and rows[0].flipped == 0 and rows[0].flat_maps == 0
    assert rows[1].on_lesion == pytest.approx(0.75), "noise this small does not move a quadrant's peak"
    assert 0 < rows[0].lesion_area < 0.1


def test_pointing_game_on_phantoms_counts_lesions_only(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    rows = pointing_game(model, test_set, "fgsm", [0.0, 8 / 255, 0.1], arch="simplecnn")
    lesions = int((test_set.labels != test_set.classes.index("normal")).sum())
    assert [r.images for r in rows] == [lesions] * 3, "normal phantoms have no lesion to point at"
    for r in rows:
        assert 0 <= r.on_lesion <= 1 and 0 <= r.lesion_share <= 1 and 0 <= r.flipped <= 1
    assert rows[0].flipped == 0 and rows[-1].flipped >= rows[1].flipped
    assert not model.training


def test_pointing_game_without_masks_says_why(trained_simplecnn):
    from dataclasses import replace

    model, _, test_set = trained_simplecnn
    with pytest.raises(NoLesionMasks, match="no lesion masks"):
        pointing_game(model, replace(test_set, masks=None), "fgsm", [0.0], arch="simplecnn")


# ----------------------------------------------------------------------------- BUSI masks

def _gray(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def kaggle_busi(root, masks: bool = True):
    """Kaggle's layout: '<class> (i).png' with '<class> (i)_mask.png' beside it, and a second mask for one image."""
    rng = np.random.default_rng(0)
    for label in ("benign", "malignant", "normal"):
        for i in range(1, 4):
            _gray(root / label / f"{label} ({i}).png", rng.integers(0, 255, (40, 60)))
            if masks:
                mask = np.zeros((40, 60))
                if label != "normal":
                    mask[:20, :30] = 255  # the top-left quarter of the image
                _gray(root / label / f"{label} ({i})_mask.png", mask)
    if masks:
        second = np.zeros((40, 60))
        second[20:, 30:] = 255  # another lesion in the bottom-right quarter
        _gray(root / "benign" / "benign (1)_mask_1.png", second)
    return root


def test_busi_masks_are_paired_with_their_images_as_a_union(tmp_path):
    data = load_busi(kaggle_busi(tmp_path / "Dataset_BUSI_with_GT"), image_size=16)
    assert len(data) == 9 and not any("mask" in n for n in data.names), "masks are never images"
    assert data.masks is not None and data.masks.shape == (9, 1, 16, 16) and data.masks.dtype == torch.bool
    first = data.masks[data.names.index("benign/benign (1).png"), 0]
    assert first[:8, :8].all() and first[8:, 8:].all() and not first[:8, 8:].any(), "_mask and _mask_1 united"
    second = data.masks[data.names.index("benign/benign (2).png"), 0]
    assert second[:8, :8].all() and not second[8:, 8:].any()
    assert not data.masks[data.names.index("normal/normal (1).png")].any()
    again = load_busi(tmp_path / "Dataset_BUSI_with_GT", image_size=16)  # from the cache
    assert torch.equal(again.masks, data.masks)


def test_busi_without_masks_has_none(tmp_path):
    data = load_busi(kaggle_busi(tmp_path / "busi", masks=False), image_size=16)
    assert data.masks is None


def test_a_mask_added_later_is_read(tmp_path):
    root = kaggle_busi(tmp_path / "busi", masks=False)
    fingerprint = load_busi(root, image_size=16).fingerprint
    mask = np.zeros((40, 60))
    mask[:10, :10] = 255
    _gray(root / "malignant" / "malignant (2)_mask.png", mask)
    data = load_busi(root, image_size=16)
    assert data.masks is not None and data.masks.flatten(1).any(1).sum() == 1
    assert data.fingerprint == fingerprint, "masks do not change which images a model learned from"


# ----------------------------------------------------------------------------- pictures and exports

def test_overlay_is_rgb_with_the_lesion_outlined():
    image = np.full((SIZE, SIZE), 100, dtype=np.uint8)
    cam = np.zeros((SIZE, SIZE), dtype=np.float32)
    cam[4:8, 4:8] = 1
    lesion = np.zeros((SIZE, SIZE), dtype=bool)
    lesion[16:28, 16:28] = True
    plain, outlined = cam_overlay(image, cam), cam_overlay(image, cam, lesion)
    assert plain.shape == (SIZE, SIZE, 3) and plain.dtype == np.uint8
    assert (outlined[16, 16:28] == 255).all(), "the outline is drawn in white"
    assert not np.array_equal(plain, outlined)


def _comparison() -> Comparison:
    gray = np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1))
    rgb = np.stack([gray, 255 - gray, gray], axis=2)
    return Comparison(title="Diagnosis flipped: benign 93% → malignant <71%>",
                      classes=("benign", "malignant", "normal"),
                      probabilities=(("Clean", (0.93, 0.05, 0.02)), ("FGSM ε=0.0314 (8/255)", (0.2, 0.71, 0.09))),
                      panels=(Panel("Clean", gray, "the model's input"), Panel("Looks at: perturbed", rgb)),
                      settings=(("Model", "simplecnn"), ("Image", "benign (3).png"), ("ε", "0.0314 (8/255)")),
                      notes=("Attention kept: r = 0.42", "See https://example.org for more (text only)"))


def test_png_export_is_one_image():
    png = comparison_png(_comparison(), dpi=60)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 300


def test_html_export_is_self_contained():
    page = comparison_html(_comparison())
    assert page.startswith("<!doctype html>") and page.count("data:image/png;base64,") == 2
    assert "&lt;71%&gt;" in page and "<71%>" not in page, "text is escaped"
    assert "0.0314 (8/255)" in page and "r = 0.42" in page and "71.0%" in page
    # Nothing is fetched from elsewhere: no external src/href, script, style sheet or import.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page)
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    without_text = re.sub(r">[^<]*<", "><", page)
    assert "http://" not in without_text and "https://" not in without_text, "URLs only inside text"
