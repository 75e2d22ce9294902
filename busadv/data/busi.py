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


def _mask_owner(path: Path) -> str:
    """'benign (1)_mask_1.png' -> 'benign (1)': the image a segmentation mask belongs to (lower case)."""
    stem = path.stem.lower()
    return stem[:stem.rindex("_mask")]


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


def shown_name(path: Path | str) -> str:
    """A path as text that can always be printed and stored: bytes that are not UTF-8 become \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _valid_name(path: Path, root: Path, skipped: list[str] | None) -> bool:
    """Whether a file's name is valid UTF-8; a name that is not (Latin-1 bytes, say) is warned about by name.

    Why: such a name cannot be shown, stored in a result or sent to the browser; it used to make the whole
    folder refused. Only that one file is left out, and the warning says how to bring it back.
    """
    try:
        str(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        name = shown_name(path.relative_to(root))
        warnings.warn(f"{shown_name(path)}: file name is not valid UTF-8, so the image is skipped; rename it "
                      f"(e.g. convmv -f latin1 -t utf8) to use it", stacklevel=3)
        if skipped is not None:
            skipped.append(name)
        return False


def _regular_file(path: Path, root: Path, skipped: list[str] | None) -> bool:
    """Whether an image's name leads to a regular file; a pipe, socket, folder or broken link is named, not read.

    Why: reading a FIFO blocks forever, and one left out without a word makes a folder look smaller for no
    reason anyone can see.
    """
    try:
        if path.is_file():
            return True
    except OSError:  # e.g. a link loop
        pass
    name = shown_name(path.relative_to(root))
    warnings.warn(f"{shown_name(path)}: not a regular file (a pipe, folder or broken link?), so it is skipped",
                  stacklevel=3)
    if skipped is not None:
        skipped.append(f"{name} (not a regular file)")
    return False


def list_busi_files(root: Path, spec: DatasetSpec = BUSI, skipped: list[str] | None = None) -> list[tuple[Path, int]]:
    """Image files with their class index; masks, hidden files and non-images are left out, and so are names
    that are not valid UTF-8 (warned about, and added to `skipped` when given)."""
    files: list[tuple[Path, int]] = []
    for label, name in enumerate(spec.classes):
        folder = root / name
        named = [p for p in sorted(folder.iterdir())
                 if not _is_hidden(p) and not _is_mask(p) and p.suffix.lower() in IMAGE_SUFFIXES
                 and _valid_name(p, root, skipped)]
        found = [p for p in named if _regular_file(p, root, skipped)]
        if not found:
            raise DatasetError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}, "
                               f"segmentation masks excluded).")
        files.extend((p, label) for p in found)
    return files


def mask_files(files: Iterable[tuple[Path, int]]) -> dict[Path, list[Path]]:
    """Each image's segmentation masks (Kaggle's BUSI: 'x_mask.png', sometimes 'x_mask_1.png' too), found beside it.

    Images without a mask are left out of the dict; a folder without any mask gives an empty dict.
    """
    images = list(files)
    by_folder: dict[Path, dict[str, list[Path]]] = {}
    for folder in {path.parent for path, _ in images}:
        owners: dict[str, list[Path]] = {}
        for p in sorted(folder.iterdir()):
            if (p.is_file() and not _is_hidden(p) and _is_mask(p) and p.suffix.lower() in IMAGE_SUFFIXES
                    and _valid_name(p, folder, None)):
                owners.setdefault(_mask_owner(p), []).append(p)
        by_folder[folder] = owners
    found = {path: by_folder[path.parent].get(path.stem.lower(), []) for path, _ in images}
    return {path: masks for path, masks in found.items() if masks}


def _folder_key(files: Iterable[tuple[Path, int]], root: Path, size: int,
                masks: dict[Path, list[Path]] | None = None) -> str:
    """The cache's name: the files' names, sizes and times. Mask files enter only where present, so a folder
    without masks keeps the key (and the cached images) it had before masks were read."""
    digest = hashlib.sha256(f"v{LOADER_VERSION}|{size}".encode())
    for path, label in files:
        for part in [path, *(masks or {}).get(path, [])]:
            stat = part.stat()
            digest.update(f"{part.relative_to(root)}|{label}|{stat.st_size}|{stat.st_mtime_ns}\n"
                          .encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:20]


def _decode_mask(paths: list[Path], size: int) -> np.ndarray:
    """The union of an image's masks at the working size (resized exactly as the image is, so they line up)."""
    union = np.zeros((size, size), dtype=bool)
    for path in paths:
        try:
            union |= decode_image(path, size) >= 128
        except READ_ERRORS as exc:
            warnings.warn(f"{path}: unreadable lesion mask skipped ({type(exc).__name__}: {exc})", stacklevel=3)
    return union


def fingerprint_of(images: torch.Tensor, labels: torch.Tensor) -> str:
    """The identity of a decoded set: checkpoints and result rows record it, so runs on other data never mix."""
    digest = hashlib.sha256(images.numpy().tobytes())
    digest.update(labels.numpy().tobytes())
    return digest.hexdigest()[:16]


def load_busi(path: str | os.PathLike, image_size: int = 128, use_cache: bool = True,
              spec: DatasetSpec = BUSI) -> ImageSet:
    """Load a BUSI folder; decoded once, then read from a tensor cache keyed by the folder's contents.

    Lesion masks found beside the images (Kaggle's download has them) are decoded with them, as the union of
    an image's `_mask*.png` files; `masks` is None when the folder holds none.
    """
    if image_size < 8:
        raise DatasetError(f"image size {image_size} is too small (at least 8 pixels).")
    root = find_busi_root(path, spec)
    odd_names: list[str] = []
    files = list_busi_files(root, spec, odd_names)
    masks_of = mask_files(files)
    cache_file = cache_dir() / f"busi-{_folder_key(files, root, image_size, masks_of)}.pt"
    blob = load_cached(cache_file) if use_cache else None
    if blob is None:
        arrays, labels, names, skipped, masks = [], [], [], [], []
        for file, label in files:
            try:
                arrays.append(decode_image(file, image_size))
            except READ_ERRORS as exc:
                skipped.append(str(file.relative_to(root)))
                warnings.warn(f"{file}: unreadable image skipped ({type(exc).__name__}: {exc})", stacklevel=2)
                continue
            labels.append(label)
            names.append(str(file.relative_to(root)))
            if masks_of:
                masks.append(_decode_mask(masks_of.get(file, []), image_size))
        for label, name in enumerate(spec.classes):
            if label not in labels:
                raise DatasetError(f"{root / name}: none of its images could be read.")
        images = torch.from_numpy(np.stack(arrays)).unsqueeze(1).contiguous()
        label_t = torch.tensor(labels, dtype=torch.long)
        blob = {"images": images, "labels": label_t, "names": names, "skipped": skipped,
                "fingerprint": fingerprint_of(images, label_t), "hashes": perceptual_hashes(images)}
        if masks:  # lesion masks are not part of the fingerprint: the images a model learned from are the same
            blob["masks"] = torch.from_numpy(np.stack(masks)).unsqueeze(1).contiguous()
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
                    groups=groups, skipped=tuple(odd_names) + tuple(blob["skipped"]), spec=spec,
                    conflicts=label_conflicts(similar, blob["labels"], names_t), similar=similar, hashes=hashes,
                    masks=blob.get("masks"))
