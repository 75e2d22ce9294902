"""What the sections share in one run: how much to measure, the data folder, the device and the checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from busadv.data import BUSI, ImageSet, data_setting, load_busi, make_phantoms, split_dataset
from busadv.data.phantoms import PHANTOM_VERSION
from busadv.models import build_model
from busadv.models.checkpoints import load_checkpoint, save_checkpoint
from busadv.settings import cache_dir

BUSI_PROPORTIONS = {"benign": 437, "malignant": 210, "normal": 133}
SIMPLE, RESNET = "simplecnn", "resnet50"


@dataclass(frozen=True)
class Plan:
    """How much each section measures: the full run (under 10 minutes on 2 cores) or --quick (a minute or two)."""

    quick: bool
    repeats: int                      # FGSM timing repeats
    warmup: int
    fgsm_batch: int
    resnet_batch: int
    sweep_images: int | None          # None: the whole test split
    sweep_repeats: int
    slider_repeats: int
    resnet_slider_repeats: int
    train_repeats: int                # timed training steps per side
    resnet_train_batch: int
    study_images: int | None          # images the measured runs split 80/20 (None: all)
    study_epochs_each: int            # measured epochs per mode, interleaved standard/FGSM/FGSM/standard

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(True, 2, 1, 16, 2, 16, 2, 8, 3, 3, 4, 48, 1)
        return cls(False, 4, 1, 64, 4, None, 2, 20, 4, 12, 4, None, 1)


# ============================================================================ data

def class_counts(total: int) -> dict[str, int]:
    whole = sum(BUSI_PROPORTIONS.values())
    return {c: max(3, round(total * n / whole)) for c, n in BUSI_PROPORTIONS.items()}


def phantom_folder(total: int = 240, size: int = 128, folder: Path | None = None) -> Path:
    """The engine's phantoms written as a BUSI-shaped folder of PNGs (cached), so that both sides of a
    comparison, busadv's loader and torchvision's ImageFolder, decode the same files."""
    counts = class_counts(total)
    folder = folder or cache_dir() / (f"bench-phantoms-v{PHANTOM_VERSION}-{size}px-"
                                      + "-".join(str(counts[c]) for c in BUSI.classes))
    marker = folder / ".complete"
    if marker.exists():
        return folder
    phantoms = make_phantoms(size, counts, use_cache=False)
    for image, name in zip(phantoms.images, phantoms.names, strict=True):
        cls, index = name.split("/")[1], int(name.rsplit("-", 1)[1].split(".")[0])
        path = folder / cls / f"{cls} ({index + 1}).png"  # named like BUSI's files
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(path)
    marker.write_text("ok")
    return folder


def resolve_data(path: str | None, phantoms: int) -> tuple[Path, bool]:
    """(folder, simulated): --data, else $BUSADV_DATA, else a phantom folder written once to the cache."""
    chosen = data_setting(path)
    if chosen is not None:
        return Path(chosen), False
    return phantom_folder(phantoms), True


# ============================================================================ one run's shared state

@dataclass
class Bench:
    plan: Plan
    device: torch.device
    folder: Path
    simulated: bool
    work: Path                        # a temporary folder, removed at the end of the run
    browser: bool = True              # the headless-Chromium startup row
    _data: dict[int, ImageSet] = field(default_factory=dict)
    _checkpoints: dict[str, Path] = field(default_factory=dict)

    @property
    def checkpoint_dir(self) -> Path:
        """What the app sees as BUSADV_CHECKPOINTS: the SimpleCNN checkpoint only."""
        path = self.work / "checkpoints"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def data(self, size: int = 128) -> ImageSet:
        if size not in self._data:
            self._data[size] = load_busi(self.folder, size)
        return self._data[size]

    def split(self, size: int = 128) -> tuple[ImageSet, ImageSet]:
        return split_dataset(self.data(size), 0.2, seed=0)

    def checkpoint(self, arch: str) -> Path:
        """SimpleCNN: one epoch of a real `run_one` on the data, saved as the jobs save theirs (the app's test
        images and labels come from its metadata). ResNet50: untrained weights (only its cost is measured)."""
        if arch not in self._checkpoints:
            if arch == SIMPLE:
                from busadv.experiments import run_one
                from busadv.training import TrainConfig

                config = TrainConfig.study(arch=SIMPLE, epochs=1, image_size=128, device=self.device.type)
                outcome = run_one(config, self.data(128), save=True, checkpoint_folder=self.checkpoint_dir)
                assert outcome.checkpoint is not None
                self._checkpoints[arch] = outcome.checkpoint
            else:
                torch.manual_seed(0)
                size = 224
                self._checkpoints[arch] = save_checkpoint(
                    build_model(arch, size).eval(), self.work / f"{arch}-bench.pt", arch=arch, image_size=size,
                    train_config={"arch": arch, "mode": "standard"}, data={"simulated": self.simulated})
        return self._checkpoints[arch]

    def model(self, arch: str) -> nn.Module:
        """The model as the app and `evaluate` get it: loaded from its checkpoint (channels_last on CPU)."""
        return load_checkpoint(self.checkpoint(arch), device=self.device).require_model()
