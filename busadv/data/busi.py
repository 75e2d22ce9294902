"""A BUSI folder on disk (as downloaded, nested or not) -> a validated, cached ImageSet.

Every image becomes one grayscale channel at a square size: BUSI is grayscale ultrasound saved in
assorted modes, and one convention keeps epsilon meaning the same thing for every model.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from busadv.data.cache import atomic_torch_save, load_cached
from busadv.data.decode import READ_ERRORS, decode_image
from busadv.data.duplicates import exact_groups, label_conflicts, near_groups, perceptual_hashes
from busadv.data.imageset import ImageSet
from busadv.data.spec import BUSI, DatasetSpec
from busadv.settings import cache_dir

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
LOADER_VERSION = 3  # 2: images shrunk by an integer factor first (bounded memory); 3: perceptual hashes cached


class DatasetError(ValueError):
    """A dataset folder that cannot be used; the message names the path and the problem."""


def _is_mask(path: Path) -> bool:
    return "_mask" in path.stem.lower()


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def find_busi_root(path: str | os.PathLike, spec: DatasetSpec = BUSI) -> Path:
    """The folder that holds the class folders, directly or one level down (Kaggle nests them)."""
    root = Path(path).expanduser()
    wanted = ", ".join(c + "/" for c in spec.classes)
    if not root.exists():
        raise DatasetError(f"{root}: no such folder. Point BUSADV_DATA or --data at the unzipped BUSI "
                           f"folder (the one holding {wanted}).")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file, not a folder holding {wanted}.")

    def has_classes(folder: Path) -> bool:
        return all((folder / c).is_dir() for c in spec.classes)

    if has_classes(root):
        return root
    nested = [d for d in sorted(root.iterdir()) if d.is_dir() and not _is_hidden(d) and has_classes(d)]
    if len(nested) == 1:
        return nested[0]
    if len(nested) > 1:
        raise DatasetError(f"{root}: several sub-folders hold BUSI class folders "
                           f"({', '.join(d.name for d in nested)}); point at one of them.")
    missing = [c for c in spec.classes if not (root / c).is_dir()]
    raise DatasetError(f"{root}: not a BUSI folder: missing class folder(s) {', '.join(m + '/' for m in missing)} "
                       f"(expected {wanted} here or one level down).")


def list_busi_files(root: Path, spec: DatasetSpec = BUSI) -> list[tuple[Path, int]]:
    """Image files with their class index; masks, hidden files and non-images are left out."""
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(spec.classes):
        folder = root / name
        found = [p for p in sorted(folder.iterdir())
                 if p.is_file() and not _is_hidden(p) and not _is_mask(p) and p.suffix.lower() in IMAGE_SUFFIXES]
        if not found:
            raise DatasetError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}, "
                               f"segmentation masks excluded).")
        files.extend((p, label) for p in found)
    return files


def _folder_key(files: Iterable[tuple[Path, int]], root: Path, size: int) -> str:
    digest = hashlib.sha256(f"v{LOADER_VERSION}|{size}".encode())
    for path, label in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def fingerprint_of(images: torch.Tensor, labels: torch.Tensor) -> str:
    """The identity of a decoded set: checkpoints and result rows record it, so runs on other data never mix."""
    digest = hashlib.sha256(images.numpy().tobytes())
    digest.update(labels.numpy().tobytes())
    return digest.hexdigest()[:16]


def load_busi(path: str | os.PathLike, image_size: int = 128, use_cache: bool = True,
              spec: DatasetSpec = BUSI) -> ImageSet:
    """Load a BUSI folder; decoded once, then read from a tensor cache keyed by the folder's contents."""
    if image_size < 8:
        raise DatasetError(f"image size {image_size} is too small (at least 8 pixels).")
    root = find_busi_root(path, spec)
    files = list_busi_files(root, spec)
    cache_file = cache_dir() / f"busi-{_folder_key(files, root, image_size)}.pt"
    blob = load_cached(cache_file) if use_cache else None
    if blob is None:
        arrays, labels, names, skipped = [], [], [], []
        for file, label in files:
            try:
                arrays.append(decode_image(file, image_size))
            except READ_ERRORS as exc:
                skipped.append(str(file.relative_to(root)))
                warnings.warn(f"{file}: unreadable image skipped ({type(exc).__name__}: {exc})", stacklevel=2)
                continue
            labels.append(label)
            names.append(str(file.relative_to(root)))
        for label, name in enumerate(spec.classes):
            if label not in labels:
                raise DatasetError(f"{root / name}: none of its images could be read.")
        images = torch.from_numpy(np.stack(arrays)).unsqueeze(1).contiguous()
        label_t = torch.tensor(labels, dtype=torch.long)
        blob = {"images": images, "labels": label_t, "names": names, "skipped": skipped,
                "fingerprint": fingerprint_of(images, label_t), "hashes": perceptual_hashes(images)}
        if use_cache:
            atomic_torch_save(blob, cache_file)
    groups = exact_groups(blob["images"])
    hashes = blob.get("hashes")
    if hashes is None:  # an old cache file: hash now (a second)
        hashes = perceptual_hashes(blob["images"])
    similar = near_groups(hashes, also=groups)
    names_t = tuple(blob["names"])
    return ImageSet(images=blob["images"], labels=blob["labels"], names=names_t,
                    source=f"BUSI at {root.resolve()}", simulated=False, fingerprint=blob["fingerprint"],
                    groups=groups, skipped=tuple(blob["skipped"]), spec=spec,
                    conflicts=label_conflicts(similar, blob["labels"], names_t), similar=similar, hashes=hashes)
