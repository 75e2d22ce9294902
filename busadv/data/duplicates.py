"""Copies and near-copies of one image: found so that a split never puts one in training and another in testing.

BUSI holds byte-identical images (some filed under two classes) and many near-duplicates: the same scan
with other calipers, crops or text. A random split lets a model be tested on images it learned from,
which inflates accuracy. Near-duplicates are found with a 64-bit perceptual hash (imagehash's pHash) and
grouped when their hashes differ in at most NEAR_DUPLICATE_BITS bits, transitively (union-find).

The threshold was measured on BUSI: of 780 images, nearest-neighbour distances fall in two clusters,
0-12 bits (same scans) and 14-22 bits (different scans that simply all look like breast ultrasound).
Pairs viewed side by side were the same scan at every distance up to 10 bits; at 12 bits some pairs were
different lesions. So 10.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

NEAR_DUPLICATE_BITS = 10


def exact_groups(images: torch.Tensor) -> torch.Tensor:
    """Group ids of identical decoded images (the first occurrence's index is the id)."""
    seen: dict[bytes, int] = {}
    groups = []
    for i in range(images.shape[0]):
        key = hashlib.blake2b(images[i].numpy().tobytes(), digest_size=16).digest()
        groups.append(seen.setdefault(key, i))
    return torch.tensor(groups, dtype=torch.long)


def perceptual_hashes(images: torch.Tensor) -> torch.Tensor:
    """64-bit pHash of each uint8 [N, 1, H, W] image, as int64 (the bits matter, not the sign)."""
    import imagehash
    from PIL import Image

    values = [int(str(imagehash.phash(Image.fromarray(img[0].numpy()), hash_size=8)), 16) for img in images]
    return torch.from_numpy(np.array(values, dtype=np.uint64).view(np.int64))


def hash_distances(hashes: torch.Tensor) -> np.ndarray:
    """Hamming distances between every pair of 64-bit hashes, [N, N]."""
    h = hashes.numpy().view(np.uint64)
    xor = h[:, None] ^ h[None, :]
    return np.unpackbits(xor.view(np.uint8).reshape(len(h), len(h), 8), axis=2).sum(2)


def near_groups(hashes: torch.Tensor, max_bits: int = NEAR_DUPLICATE_BITS,
                also: torch.Tensor | None = None) -> torch.Tensor:
    """Group ids joining images whose hashes differ in at most max_bits bits (and images `also` groups)."""
    n = len(hashes)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(a: int, b: int) -> None:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    close = np.argwhere(np.triu(hash_distances(hashes) <= max_bits, 1))
    for a, b in close.tolist():
        join(a, b)
    if also is not None:
        for i, g in enumerate(also.tolist()):
            join(i, int(g))
    return torch.tensor([root(i) for i in range(n)], dtype=torch.long)


def members(groups: torch.Tensor) -> list[list[int]]:
    """The groups of more than one image, largest first."""
    by_id: dict[int, list[int]] = {}
    for i, g in enumerate(groups.tolist()):
        by_id.setdefault(int(g), []).append(i)
    return sorted((m for m in by_id.values() if len(m) > 1), key=len, reverse=True)


def label_conflicts(groups: torch.Tensor, labels: torch.Tensor, names: Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """Names of each group whose copies carry different labels."""
    return tuple(tuple(names[m] for m in group) for group in members(groups)
                 if len({int(labels[m]) for m in group}) > 1)
