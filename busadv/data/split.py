"""Seeded, stratified train/test splits and subsets.

Three policies: "near" (default) keeps every group of near-duplicates (the same scan with other calipers,
crops or text; busadv.data.duplicates) on one side, so a model is never tested on a scan it learned from;
"exact" keeps only byte-identical copies together (busadv 0.1's "grouped", so older checkpoints re-derive
their test images); "random" is the study's image-level train_test_split, kept to measure how much copies
across the split inflate accuracy. Subsets for per-epoch watching are stratified too:
the split keeps class order, so "the first 64 test images" would all be one class.
"""

from __future__ import annotations

import math

import torch

from busadv.data.imageset import ImageSet

SPLIT_POLICIES: dict[str, str] = {
    "near": "duplicate-aware: near-duplicates (the same scan) stay on one side of the split",
    "exact": "only byte-identical copies stay on one side of the split",
    "random": "image-level random split, as in the study (copies may land on both sides)",
}
DEFAULT_SPLIT_POLICY = "near"
LEGACY_POLICIES = {"grouped": "exact"}  # names written by busadv 0.1


def check_split_policy(policy: str) -> str:
    name = str(policy).strip().lower()
    name = LEGACY_POLICIES.get(name, name)
    if name not in SPLIT_POLICIES:
        raise ValueError(f"unknown split policy {policy!r}; choose one of: {', '.join(SPLIT_POLICIES)}")
    return name


def _check_stratifiable(labels: list[int], classes: tuple[str, ...], test_fraction: float, unit: str) -> None:
    counts = {c: labels.count(i) for i, c in enumerate(classes)}
    few = {c: n for c, n in counts.items() if n < 2}
    if few:
        listed = ", ".join(f"'{c}' has {n}" for c, n in few.items())
        raise ValueError(f"cannot split: {listed} {unit}(s); a stratified split needs at least 2 per class "
                         f"(one to train on, one to test on).")
    n_test = math.ceil(test_fraction * len(labels))
    if n_test < len(classes) or len(labels) - n_test < len(classes):
        raise ValueError(f"cannot split {len(labels)} {unit}s with test fraction {test_fraction:g}: each side needs "
                         f"at least one {unit} per class ({len(classes)} classes). Use more images or another "
                         f"test fraction.")


def split_indices(dataset: ImageSet, test_fraction: float = 0.2, seed: int = 0,
                  policy: str = DEFAULT_SPLIT_POLICY) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, test indices), stratified by class and seeded."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be between 0 and 1, got {test_fraction}")
    policy = check_split_policy(policy)
    idx = torch.arange(len(dataset))
    if policy == "random":
        labels = dataset.labels.tolist()
        _check_stratifiable(labels, dataset.classes, test_fraction, "image")
        train, test = train_test_split(idx.tolist(), test_size=test_fraction, random_state=seed, stratify=labels)
        return torch.tensor(sorted(train)), torch.tensor(sorted(test))
    groups = dataset.near_groups if policy == "near" else dataset.groups
    group_ids = torch.unique(groups).tolist()
    # A group filed under two classes is stratified by its first image's label; it still moves as one.
    group_labels = [int(dataset.labels[groups == g][0]) for g in group_ids]
    _check_stratifiable(group_labels, dataset.classes, test_fraction, "distinct image")
    _, test_groups = train_test_split(group_ids, test_size=test_fraction, random_state=seed, stratify=group_labels)
    test_set = set(test_groups)
    is_test = torch.tensor([int(g) in test_set for g in groups.tolist()])
    return idx[~is_test], idx[is_test]


def split_dataset(dataset: ImageSet, test_fraction: float = 0.2, seed: int = 0,
                  policy: str = DEFAULT_SPLIT_POLICY) -> tuple[ImageSet, ImageSet]:
    train_idx, test_idx = split_indices(dataset, test_fraction, seed, policy)
    return dataset.subset(train_idx), dataset.subset(test_idx)


def stratified_subset(dataset: ImageSet, size: int, seed: int = 0) -> ImageSet:
    """At most `size` images with the classes in their proportions (each class at least once), seeded."""
    if size >= len(dataset):
        return dataset
    generator = torch.Generator().manual_seed(seed)
    chosen: list[int] = []
    per_class = [(dataset.labels == c).nonzero().flatten() for c in range(len(dataset.classes))]
    present = [members for members in per_class if len(members)]
    shares = [size * len(m) / len(dataset) for m in present]
    quotas = [max(1, math.floor(s)) for s in shares]
    by_remainder = sorted(range(len(present)), key=lambda i: shares[i] - math.floor(shares[i]), reverse=True)
    for i in by_remainder:  # largest remainders first, so the subset has exactly `size` images
        if sum(quotas) >= size:
            break
        quotas[i] = min(quotas[i] + 1, len(present[i]))
    while sum(quotas) > size and max(quotas) > 1:
        quotas[quotas.index(max(quotas))] -= 1
    for members, quota in zip(present, quotas, strict=True):
        order = torch.randperm(len(members), generator=generator)[:quota]
        chosen += members[order].tolist()
    return dataset.subset(sorted(chosen))


__all__ = [
    "DEFAULT_SPLIT_POLICY",
    "SPLIT_POLICIES",
    "check_split_policy",
    "split_dataset",
    "split_indices",
    "stratified_subset",
]
