"""Simulated breast-ultrasound phantoms: the embedded default dataset, so nothing needs a download.

They are not clinical images. They carry the textbook cues a reader looks for: speckle, skin, fat and
fibroglandular layers, depth attenuation; benign lesions oval, circumscribed, wider than tall, often
with posterior enhancement; malignant lesions irregular and spiculated, taller than wide, with
posterior acoustic shadowing; normal tissue without a lesion.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter  # scipy comes with scikit-learn

from busadv.data.busi import fingerprint_of
from busadv.data.cache import atomic_torch_save, load_cached
from busadv.data.imageset import ImageSet
from busadv.data.spec import BUSI
from busadv.settings import cache_dir

CLASSES = BUSI.classes

SIMULATED_SOURCE = "Simulated phantoms (not clinical images)"
DEFAULT_COUNTS: dict[str, int] = {"benign": 110, "malignant": 70, "normal": 60}


def _blur(field: np.ndarray, sigma_y: float, sigma_x: float) -> np.ndarray:
    return gaussian_filter(field, (sigma_y, sigma_x), mode="reflect")


def _tissue(rng: np.random.Generator, size: int) -> np.ndarray:
    """Echogenicity map of layered breast tissue, before speckle."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    wave = lambda amp, freq: amp * np.sin(2 * np.pi * (freq * xx + rng.uniform(0, 1)))  # noqa: E731
    skin = 0.06 + wave(0.01, rng.uniform(0.5, 1.5))
    fat = skin + rng.uniform(0.12, 0.25) + wave(0.03, rng.uniform(0.5, 2.0))
    gland = fat + rng.uniform(0.35, 0.5) + wave(0.04, rng.uniform(0.5, 2.0))
    tissue = np.where(yy < skin, 0.95, np.where(yy < fat, 0.35, np.where(yy < gland, 0.7, 0.45)))
    tissue = tissue + np.where((yy > gland) & (yy < gland + 0.05), 0.35, 0.0)  # chest-wall fascia
    lobules = _blur(rng.normal(0, 1, (size, size)), size * 0.03, size * 0.06)
    tissue = tissue * (1 + 0.25 * lobules / (lobules.std() + 1e-6))
    attenuation = np.exp(-rng.uniform(0.6, 1.2) * yy)
    return np.clip(tissue * attenuation, 0.02, 1.5)


def _lesion(rng: np.random.Generator, size: int, malignant: bool) -> tuple[np.ndarray, np.ndarray]:
    """(mask in [0,1], posterior column in [0,1]) of one lesion."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    cy, cx = rng.uniform(0.38, 0.6), rng.uniform(0.3, 0.7)
    r = rng.uniform(0.09, 0.17)
    if malignant:
        ry, rx = r * rng.uniform(1.0, 1.3), r * rng.uniform(0.75, 1.0)  # taller than wide
    else:
        ry, rx = r * rng.uniform(0.55, 0.8), r * rng.uniform(1.05, 1.4)  # wider than tall
    theta = np.arctan2(yy - cy, xx - cx)
    dist = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    boundary = np.ones_like(theta)
    if malignant:
        for k in range(2, 9):
            boundary += rng.uniform(0.03, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
        spikes = rng.integers(5, 12)
        boundary += 0.35 * np.maximum(0, np.cos(spikes * theta + rng.uniform(0, 2 * np.pi))) ** 8
        edge = 0.06
    else:
        boundary += 0.04 * np.cos(2 * theta + rng.uniform(0, 2 * np.pi))
        edge = 0.02
    mask = 1.0 / (1.0 + np.exp((dist - boundary) / edge))
    below = yy > cy
    column = np.exp(-0.5 * ((xx - cx) / (rx * 0.8)) ** 2) * below * np.clip((yy - cy) / 0.1, 0, 1)
    return mask, column


def phantom_image(rng: np.random.Generator, size: int, label: int) -> tuple[np.ndarray, np.ndarray]:
    """One uint8 [size, size] phantom of class `label` (an index into CLASSES) and its bool lesion mask."""
    echo = _tissue(rng, size)
    name = CLASSES[label]
    lesion = np.zeros((size, size), dtype=bool)
    if name != "normal":
        malignant = name == "malignant"
        mask, column = _lesion(rng, size, malignant)
        lesion = mask > 0.5
        inside = rng.uniform(0.05, 0.18) if malignant else rng.uniform(0.08, 0.25)
        echo = echo * (1 - mask) + inside * mask
        if malignant:
            echo = echo * (1 - rng.uniform(0.45, 0.75) * column * (1 - mask))  # posterior shadowing
        elif rng.uniform() < 0.7:
            echo = echo * (1 + rng.uniform(0.2, 0.5) * column * (1 - mask))  # posterior enhancement
    scatter = _blur(rng.normal(0, 1, (size, size)), 0.6, 1.4) + 1j * _blur(rng.normal(0, 1, (size, size)), 0.6, 1.4)
    speckle = np.abs(scatter) / np.sqrt(np.mean(np.abs(scatter) ** 2))  # Rayleigh amplitude
    gain = rng.uniform(0.7, 1.0)
    image = np.log1p(6.0 * echo * speckle * gain) / np.log1p(6.0 * 1.6)  # log compression
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), lesion


PHANTOM_VERSION = 3  # 3: lesion masks kept beside the images (pixels as in 2)


def _native_size(size: int) -> int:
    """Phantoms are drawn at a fixed resolution and resized, like real scans: the same case at any size."""
    return 128 if size <= 128 else 256


def make_phantoms(image_size: int = 128, counts: dict[str, int] | None = None, seed: int = 0,
                  use_cache: bool = True) -> ImageSet:
    """A deterministic phantom set; the same seed and size always give the same pixels."""
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    key = f"v{PHANTOM_VERSION}-s{seed}-{image_size}-" + "-".join(f"{counts.get(c, 0)}" for c in CLASSES)
    cache_file = cache_dir() / f"phantoms-{key}.pt"
    blob = load_cached(cache_file) if use_cache else None
    if blob is None:
        native = _native_size(image_size)
        arrays, masks, labels, names = [], [], [], []
        for label, name in enumerate(CLASSES):
            for i in range(counts.get(name, 0)):
                rng = np.random.default_rng([seed, label, i])
                image, lesion = phantom_image(rng, native, label)
                arrays.append(image)
                masks.append(lesion)
                labels.append(label)
                names.append(f"simulated/{name}/phantom-{i:04d}.png")
        images = torch.from_numpy(np.stack(arrays)).unsqueeze(1)
        mask_t = torch.from_numpy(np.stack(masks)).unsqueeze(1)
        if native != image_size:
            mode = "area" if image_size < native else "bilinear"
            images = F.interpolate(images.float(), size=(image_size, image_size), mode=mode
                                   ).round().clamp(0, 255).to(torch.uint8)
            mask_t = F.interpolate(mask_t.float(), size=(image_size, image_size), mode=mode) >= 0.5
        blob = {"images": images.contiguous(), "labels": torch.tensor(labels, dtype=torch.long), "names": names,
                "masks": mask_t.contiguous()}
        if use_cache:
            atomic_torch_save(blob, cache_file)
    return ImageSet(images=blob["images"], labels=blob["labels"], names=tuple(blob["names"]), source=SIMULATED_SOURCE,
                    simulated=True, fingerprint=fingerprint_of(blob["images"], blob["labels"]),
                    groups=torch.arange(len(blob["labels"])), masks=blob.get("masks"))
