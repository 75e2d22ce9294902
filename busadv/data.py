"""Images on disk -> validated, cached, split uint8 tensors.

Every image becomes one grayscale channel at a square size: BUSI is grayscale ultrasound saved in
assorted modes, and one convention keeps epsilon meaning the same thing for every model.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from busadv.settings import cache_dir

CLASSES: tuple[str, ...] = ("benign", "malignant", "normal")
MALIGNANT: int = CLASSES.index("malignant")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
LOADER_VERSION = 1
DATA_ENV = "BUSADV_DATA"


class DatasetError(ValueError):
    """A dataset folder that cannot be used; the message names the path and the problem."""


@dataclass(frozen=True)
class ImageSet:
    """A labelled image set held in memory as uint8, so decoding happens once."""

    images: torch.Tensor  # uint8 [N, 1, H, W]
    labels: torch.Tensor  # int64 [N]
    names: tuple[str, ...]
    source: str
    simulated: bool
    fingerprint: str
    groups: torch.Tensor  # int64 [N]; equal ids mark identical images, kept on one side of a split
    skipped: tuple[str, ...] = ()
    classes: tuple[str, ...] = CLASSES
    conflicts: tuple[tuple[str, ...], ...] = field(default=())

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.classes)}

    def subset(self, index: Sequence[int] | torch.Tensor) -> "ImageSet":
        idx = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(
            images=self.images[idx],
            labels=self.labels[idx],
            names=tuple(self.names[i] for i in idx.tolist()),
            source=self.source,
            simulated=self.simulated,
            fingerprint=self.fingerprint,
            groups=self.groups[idx],
            skipped=self.skipped,
            classes=self.classes,
            conflicts=self.conflicts,
        )

    def floats(self, index: Sequence[int] | torch.Tensor | slice | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """[0, 1] float images, the only scale models and epsilons use."""
        images = self.images if index is None else self.images[index]
        return images.to(device, non_blocking=True).float().div_(255.0)

    def describe(self) -> str:
        counts = ", ".join(f"{n} {c}" for c, n in self.counts().items())
        return f"{self.source}: {len(self)} images ({counts})"


# ----------------------------------------------------------------------------- folder discovery

def _is_mask(path: Path) -> bool:
    stem = path.stem.lower()
    return "_mask" in stem


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def find_busi_root(path: str | os.PathLike) -> Path:
    """The folder that holds the class folders, directly or one level down (Kaggle nests them)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: no such folder. Point BUSADV_DATA or --data at the unzipped BUSI "
                           f"folder (the one holding benign/, malignant/ and normal/).")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file, not a folder holding benign/, malignant/ and normal/.")

    def has_classes(folder: Path) -> bool:
        return all((folder / c).is_dir() for c in CLASSES)

    if has_classes(root):
        return root
    nested = [d for d in sorted(root.iterdir()) if d.is_dir() and not _is_hidden(d) and has_classes(d)]
    if len(nested) == 1:
        return nested[0]
    if len(nested) > 1:
        raise DatasetError(f"{root}: several sub-folders hold BUSI class folders "
                           f"({', '.join(d.name for d in nested)}); point at one of them.")
    missing = [c for c in CLASSES if not (root / c).is_dir()]
    raise DatasetError(f"{root}: not a BUSI folder: missing class folder(s) {', '.join(m + '/' for m in missing)} "
                       f"(expected benign/, malignant/ and normal/ here or one level down).")


def list_busi_files(root: Path) -> list[tuple[Path, int]]:
    """Image files with their class index; masks, hidden files and non-images are left out."""
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(CLASSES):
        folder = root / name
        found = [p for p in sorted(folder.iterdir())
                 if p.is_file() and not _is_hidden(p) and not _is_mask(p)
                 and p.suffix.lower() in IMAGE_SUFFIXES]
        if not found:
            raise DatasetError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}, "
                               f"segmentation masks excluded).")
        files.extend((p, label) for p in found)
    return files


# ----------------------------------------------------------------------------- decoding

def decode_image(source: str | os.PathLike | bytes | Image.Image, size: int) -> np.ndarray:
    """Any PIL-readable image (L, RGB, RGBA, 16-bit, palette) -> uint8 [size, size] grayscale."""
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, (bytes, bytearray)):
        import io
        image = Image.open(io.BytesIO(source))
    else:
        image = Image.open(source)
    image.load()
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        image = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8))
    elif image.mode in ("RGBA", "LA", "P", "PA"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    if image.mode != "L":
        image = image.convert("L")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(image, dtype=np.uint8)


def _folder_key(files: Iterable[tuple[Path, int]], root: Path, size: int) -> str:
    digest = hashlib.sha256(f"v{LOADER_VERSION}|{size}".encode())
    for path, label in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _pixel_groups(images: torch.Tensor) -> torch.Tensor:
    """Group ids of byte-identical decoded images (first occurrence defines the id)."""
    seen: dict[bytes, int] = {}
    groups = []
    for i in range(images.shape[0]):
        key = hashlib.blake2b(images[i].numpy().tobytes(), digest_size=16).digest()
        groups.append(seen.setdefault(key, i))
    return torch.tensor(groups, dtype=torch.long)


def fingerprint_of(images: torch.Tensor, labels: torch.Tensor) -> str:
    digest = hashlib.sha256(images.numpy().tobytes())
    digest.update(labels.numpy().tobytes())
    return digest.hexdigest()[:16]


def _conflicts(groups: torch.Tensor, labels: torch.Tensor, names: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    out = []
    for g in torch.unique(groups).tolist():
        members = (groups == g).nonzero().flatten().tolist()
        if len(members) > 1 and len({int(labels[m]) for m in members}) > 1:
            out.append(tuple(names[m] for m in members))
    return tuple(out)


def load_busi(path: str | os.PathLike, image_size: int = 128, use_cache: bool = True) -> ImageSet:
    """Load a BUSI folder (as downloaded, nested or not); decoded once, then read from a tensor cache."""
    if image_size < 8:
        raise DatasetError(f"image size {image_size} is too small (at least 8 pixels).")
    root = find_busi_root(path)
    files = list_busi_files(root)
    key = _folder_key(files, root, image_size)
    cache_file = cache_dir() / f"busi-{key}.pt"
    if use_cache and cache_file.exists():
        try:
            blob = torch.load(cache_file, weights_only=True)
            return _from_blob(blob, root)
        except Exception:  # a damaged cache is rebuilt, never trusted
            cache_file.unlink(missing_ok=True)

    arrays, labels, names, skipped = [], [], [], []
    for file, label in files:
        try:
            arrays.append(decode_image(file, image_size))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            skipped.append(str(file.relative_to(root)))
            warnings.warn(f"{file}: unreadable image skipped ({type(exc).__name__}: {exc})", stacklevel=2)
            continue
        labels.append(label)
        names.append(str(file.relative_to(root)))
    for label, name in enumerate(CLASSES):
        if label not in labels:
            raise DatasetError(f"{root / name}: none of its images could be read.")
    images = torch.from_numpy(np.stack(arrays)).unsqueeze(1).contiguous()
    label_t = torch.tensor(labels, dtype=torch.long)
    blob = {"images": images, "labels": label_t, "names": names, "skipped": skipped,
            "fingerprint": fingerprint_of(images, label_t)}
    if use_cache:
        atomic_torch_save(blob, cache_file)
    return _from_blob(blob, root)


def _from_blob(blob: dict, root: Path) -> ImageSet:
    groups = _pixel_groups(blob["images"])
    names = tuple(blob["names"])
    return ImageSet(images=blob["images"], labels=blob["labels"], names=names,
                    source=f"BUSI at {root.resolve()}", simulated=False, fingerprint=blob["fingerprint"],
                    groups=groups, skipped=tuple(blob["skipped"]),
                    conflicts=_conflicts(groups, blob["labels"], names))


def atomic_torch_save(obj: object, target: Path) -> Path:
    """Write beside the target, then rename: readers never see half a file, a crash keeps the old one."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


# ----------------------------------------------------------------------------- the default dataset

def load_dataset(path: str | os.PathLike | None = None, image_size: int = 128) -> ImageSet:
    """The explicit folder, else $BUSADV_DATA, else the simulated phantoms (no download needed)."""
    chosen = path if path not in (None, "") else os.environ.get(DATA_ENV) or None
    if chosen is None:
        from busadv.phantoms import make_phantoms
        return make_phantoms(image_size=image_size)
    return load_busi(chosen, image_size=image_size)


def dataset_summary(dataset: ImageSet) -> dict:
    """Plain facts for the UI and logs: where the images came from and what is wrong with them."""
    dup_images = int(len(dataset) - torch.unique(dataset.groups).numel())
    return {
        "source": dataset.source,
        "simulated": dataset.simulated,
        "images": len(dataset),
        "counts": dataset.counts(),
        "image_size": dataset.image_size,
        "fingerprint": dataset.fingerprint,
        "duplicate_images": dup_images,
        "label_conflicts": [list(c) for c in dataset.conflicts],
        "skipped": list(dataset.skipped),
    }


# ----------------------------------------------------------------------------- split

def split_indices(dataset: ImageSet, test_fraction: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified, seeded split that keeps identical images together (no copies across the split)."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be between 0 and 1, got {test_fraction}")
    group_ids = torch.unique(dataset.groups).tolist()
    group_labels = [int(dataset.labels[dataset.groups == g][0]) for g in group_ids]
    train_groups, test_groups = train_test_split(group_ids, test_size=test_fraction, random_state=seed,
                                                 stratify=group_labels)
    test_set = set(test_groups)
    is_test = torch.tensor([int(g) in test_set for g in dataset.groups.tolist()])
    idx = torch.arange(len(dataset))
    return idx[~is_test], idx[is_test]


def split_dataset(dataset: ImageSet, test_fraction: float = 0.2, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    train_idx, test_idx = split_indices(dataset, test_fraction, seed)
    return dataset.subset(train_idx), dataset.subset(test_idx)

