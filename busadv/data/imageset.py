"""A labelled image set held in memory as uint8, so decoding happens once per folder and size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from busadv.data.spec import BUSI, DatasetSpec


@dataclass(frozen=True)
class ImageSet:
    images: torch.Tensor  # uint8 [N, 1, H, W]
    labels: torch.Tensor  # int64 [N]
    names: tuple[str, ...]
    source: str
    simulated: bool
    fingerprint: str
    groups: torch.Tensor  # int64 [N]; equal ids mark byte-identical copies of one image
    skipped: tuple[str, ...] = ()
    spec: DatasetSpec = BUSI
    conflicts: tuple[tuple[str, ...], ...] = field(default=())  # copies filed under different classes
    masks: torch.Tensor | None = None  # bool [N, 1, H, W] lesion masks where known (phantoms, BUSI downloads)
    similar: torch.Tensor | None = None  # int64 [N]; near-duplicate groups (same scan), None: same as groups
    hashes: torch.Tensor | None = None   # int64 [N] perceptual hashes behind `similar`

    @property
    def near_groups(self) -> torch.Tensor:
        """The groups a duplicate-aware split keeps together: near-duplicates where known, else exact copies."""
        return self.groups if self.similar is None else self.similar

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.classes)}

    def majority_rate(self) -> float:
        """The accuracy of a model that always answers the most common class: the floor to beat."""
        return max(self.counts().values()) / max(len(self), 1)

    def subset(self, index: Sequence[int] | torch.Tensor) -> ImageSet:
        idx = torch.as_tensor(index, dtype=torch.long)
        return replace(self, images=self.images[idx], labels=self.labels[idx],
                       names=tuple(self.names[i] for i in idx.tolist()), groups=self.groups[idx],
                       masks=None if self.masks is None else self.masks[idx],
                       similar=None if self.similar is None else self.similar[idx],
                       hashes=None if self.hashes is None else self.hashes[idx])

    def floats(self, index: Sequence[int] | torch.Tensor | slice | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """[0, 1] float images, the only scale models and epsilons use."""
        images = self.images if index is None else self.images[index]
        return images.to(device, non_blocking=True).float().div_(255.0)

    def describe(self) -> str:
        counts = ", ".join(f"{n} {c}" for c, n in self.counts().items())
        return f"{self.source}: {len(self)} images ({counts})"
