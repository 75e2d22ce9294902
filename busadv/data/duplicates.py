"""Copies of one image: found so that a split never puts one copy in training and another in testing.

BUSI holds byte-identical images (and some filed under two classes); a random split would let a model
be tested on images it learned from, which inflates accuracy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def exact_groups(images: torch.Tensor) -> torch.Tensor:
    """Group ids of identical decoded images (the first occurrence's index is the id)."""
    seen: dict[bytes, int] = {}
    groups = []
    for i in range(images.shape[0]):
        key = hashlib.blake2b(images[i].numpy().tobytes(), digest_size=16).digest()
        groups.append(seen.setdefault(key, i))
    return torch.tensor(groups, dtype=torch.long)


def label_conflicts(groups: torch.Tensor, labels: torch.Tensor, names: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Names of each group whose copies carry different labels."""
    out = []
    for g in torch.unique(groups).tolist():
        members = (groups == g).nonzero().flatten().tolist()
        if len(members) > 1 and len({int(labels[m]) for m in members}) > 1:
            out.append(tuple(names[m] for m in members))
    return tuple(out)
