"""Images on disk -> labelled uint8 tensors: the BUSI loader, the simulated phantoms, splits and caches."""

from __future__ import annotations

import os
from typing import Any

import torch

from busadv.data.busi import DatasetError, find_busi_root, fingerprint_of, list_busi_files, load_busi
from busadv.data.cache import atomic_torch_save, atomic_write_text, exclusive_torch_save
from busadv.data.decode import MAX_DECODE_PIXELS, ImageRejected, decode_image
from busadv.data.duplicates import NEAR_DUPLICATE_BITS, members
from busadv.data.imageset import ImageSet
from busadv.data.phantoms import DEFAULT_COUNTS, SIMULATED_SOURCE, make_phantoms
from busadv.data.spec import BUSI, DatasetSpec
from busadv.data.split import (
    DEFAULT_SPLIT_POLICY,
    SPLIT_POLICIES,
    check_split_policy,
    split_dataset,
    split_indices,
    stratified_subset,
)

DATA_ENV = "BUSADV_DATA"


def data_setting(path: str | os.PathLike | None = None) -> str | None:
    """The explicit folder, else $BUSADV_DATA, else None (the simulated phantoms)."""
    chosen = path if path not in (None, "") else os.environ.get(DATA_ENV) or None
    return None if chosen is None else str(chosen)


def load_dataset(path: str | os.PathLike | None = None, image_size: int = 128) -> ImageSet:
    """The explicit folder, else $BUSADV_DATA, else the simulated phantoms (no download needed)."""
    chosen = data_setting(path)
    if chosen is None:
        return make_phantoms(image_size=image_size)
    return load_busi(chosen, image_size=image_size)


def class_counts(path: str | os.PathLike | None = None) -> dict[str, int]:
    """Images per class of the folder `load_dataset` would read, from file names alone (nothing decoded), so a
    time estimate or a banner costs milliseconds. Raises DatasetError for a folder that is not BUSI."""
    chosen = data_setting(path)
    if chosen is None:
        return dict(DEFAULT_COUNTS)
    files = list_busi_files(find_busi_root(chosen))
    return {c: sum(1 for _, label in files if label == i) for i, c in enumerate(BUSI.classes)}


def dataset_summary(dataset: ImageSet) -> dict[str, Any]:
    """Plain facts for the UI and logs: where the images came from and what is wrong with them."""
    return {
        "source": dataset.source,
        "simulated": dataset.simulated,
        "images": len(dataset),
        "counts": dataset.counts(),
        "majority_rate": dataset.majority_rate(),
        "image_size": dataset.image_size,
        "fingerprint": dataset.fingerprint,
        "duplicate_images": int(len(dataset) - torch.unique(dataset.groups).numel()),
        "near_duplicate_groups": len(members(dataset.near_groups)),
        "images_in_near_duplicate_groups": sum(len(g) for g in members(dataset.near_groups)),
        "label_conflicts": [list(c) for c in dataset.conflicts],
        "skipped": list(dataset.skipped),
        "lesion_masks": 0 if dataset.masks is None else int(dataset.masks.flatten(1).any(1).sum()),
    }


__all__ = [
    "BUSI",
    "DATA_ENV",
    "DEFAULT_COUNTS",
    "DEFAULT_SPLIT_POLICY",
    "MAX_DECODE_PIXELS",
    "NEAR_DUPLICATE_BITS",
    "SIMULATED_SOURCE",
    "SPLIT_POLICIES",
    "DatasetError",
    "DatasetSpec",
    "ImageRejected",
    "ImageSet",
    "atomic_torch_save",
    "atomic_write_text",
    "check_split_policy",
    "class_counts",
    "data_setting",
    "dataset_summary",
    "decode_image",
    "exclusive_torch_save",
    "find_busi_root",
    "fingerprint_of",
    "list_busi_files",
    "load_busi",
    "load_dataset",
    "make_phantoms",
    "members",
    "split_dataset",
    "split_indices",
    "stratified_subset",
]
