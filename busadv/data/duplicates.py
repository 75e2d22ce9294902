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
    """Hamming distances between every pair of 64-bit hashes, [N, N] (small N only: N x N bytes)."""
    h = hashes.numpy().view(np.uint64)
    return np.bitwise_count(h[:, None] ^ h[None, :]).astype(np.int64)


def group_spread(hashes: torch.Tensor, group: Sequence[int]) -> int:
    """The largest Hamming distance between two members of one group (what the Dataset page shows)."""
    return int(hash_distances(hashes[torch.as_tensor(list(group), dtype=torch.long)]).max(initial=0))


# Cells of the distance matrix computed at once: 4M x 8 bytes = 32 MB whatever N is, so memory stays O(N).
_BLOCK_CELLS = 1 << 22


def close_pairs(hashes: torch.Tensor, max_bits: int) -> np.ndarray:
    """Index pairs (i < j) of hashes at most max_bits apart, [P, 2], computed block by block.

    Why blocks: the whole N x N matrix was N^2 x 64 bytes (8.7 GB for 10,000 images). Exact copies of a hash
    are merged first, so a folder of many identical images yields a chain of pairs, not all N^2 of them.
    """
    values = hashes.numpy().view(np.uint64)
    unique, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    pairs = [np.stack([first[inverse], np.arange(len(values))], 1)[first[inverse] != np.arange(len(values))]]
    n = len(unique)
    rows = max(1, _BLOCK_CELLS // max(n, 1))
    for start in range(0, n, rows):
        block = unique[start:start + rows]
        near = np.bitwise_count(block[:, None] ^ unique[None, start:]) <= max_bits  # the upper triangle's band
        a, b = np.nonzero(near)
        keep = b > a  # columns start at `start`: b > a is j > i
        pairs.append(np.stack([first[start + a[keep]], first[start + b[keep]]], 1))
    found = np.concatenate(pairs).astype(np.int64)
    return np.sort(found, axis=1) if len(found) else found.reshape(0, 2)


def near_groups(hashes: torch.Tensor, max_bits: int = NEAR_DUPLICATE_BITS,
                also: torch.Tensor | None = None) -> torch.Tensor:
    """Group ids joining images whose hashes differ in at most max_bits bits (and images `also` groups), transitively;
    a group's id is its first image's index. O(N) memory (see close_pairs), components found by scipy."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(hashes)
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    edges = [close_pairs(hashes, max_bits)]
    if also is not None:
        edges.append(np.stack([np.arange(n), also.numpy().astype(np.int64)], 1))
    pairs = np.concatenate(edges)
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    smallest = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(n))
    return torch.from_numpy(smallest[labels])


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
