"""Standard and adversarial training: the study's recipe (cross-entropy, Adam, 10 epochs, batch 32)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from busadv.attacks import fgsm, fgsm_random_start, pgd
from busadv.choices import coerce_choice
from busadv.data import ImageSet
from busadv.models import DEFAULT_IMAGE_SIZE, Arch, build_model, describe_init
from busadv.progress import ProgressEvent, ProgressFn, ignore_progress
from busadv.settings import pick_device


class TrainMode(str, Enum):
    STANDARD = "standard"
    FGSM = "fgsm"
    PGD = "pgd"

    @classmethod
    def coerce(cls, value: "str | TrainMode") -> "TrainMode":
        return coerce_choice(cls, value, "training mode")


@dataclass
class TrainConfig:
    """Everything that decides a training run; stored inside every checkpoint."""

    arch: str = "simplecnn"
    mode: str = "standard"
    epsilon: float = 0.0          # training epsilon, [0, 1] pixel scale; ignored by standard training
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    image_size: int | None = None  # None: the model's default (SimpleCNN 128, ResNet50 224)
    test_fraction: float = 0.2
    adv_labels: str = "true"       # "true" (the study) or "predicted" (avoids label leaking)
    random_start: bool = False     # FGSM from a random start with a 1.25*eps step (Wong et al. 2020)
    clean_mix: float = 0.0         # weight of the clean loss beside the adversarial loss (0 = adversarial only)
    pgd_steps: int = 7
    pretrained: bool = False
    device: str = "auto"
    data: str | None = None        # BUSI folder; None: $BUSADV_DATA, else the simulated phantoms
    monitor_images: int = 64       # test images attacked after each epoch of adversarial training

    def __post_init__(self) -> None:
        self.arch = Arch.coerce(self.arch).value
        self.mode = TrainMode.coerce(self.mode).value
        self.epsilon = float(self.epsilon)
        if self.image_size is None:
            self.image_size = DEFAULT_IMAGE_SIZE[Arch(self.arch)]
        problems = []
        if self.mode != TrainMode.STANDARD.value and not 0.0 < self.epsilon <= 1.0:
            problems.append(f"{self.mode} training needs an epsilon in (0, 1], got {self.epsilon}")
        if self.epochs < 1:
            problems.append(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            problems.append(f"learning rate must be positive, got {self.lr}")
        if self.adv_labels not in ("true", "predicted"):
            problems.append(f"adv_labels must be 'true' or 'predicted', got {self.adv_labels!r}")
        if not 0.0 <= self.clean_mix < 1.0:
            problems.append(f"clean_mix must be in [0, 1), got {self.clean_mix}")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if self.mode == TrainMode.STANDARD.value:
            return f"{self.arch}, standard training"
        return f"{self.arch}, {self.mode} training at eps={self.epsilon:.3g}"


@dataclass
class EpochStats:
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float | None = None
    test_fgsm_accuracy: float | None = None  # at the training epsilon, adversarial modes only
    test_pgd_accuracy: float | None = None   # falls while FGSM accuracy rises: catastrophic overfitting
    seconds: float = 0.0


@dataclass
class TrainResult:
    model: nn.Module
    config: TrainConfig
    history: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0
    init_note: str = ""


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def batch_to_device(dataset: ImageSet, index: torch.Tensor, device: torch.device,
                    channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = dataset.floats(index, device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, dataset.labels[index].to(device, non_blocking=True)


def adversarial_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig,
                      generator: torch.Generator) -> torch.Tensor:
    """The perturbed batch that this training mode learns from."""
    mode = TrainMode(config.mode)
    if mode is TrainMode.FGSM:
        labels = y if config.adv_labels == "true" else None
        if config.random_start:
            if labels is None:
                with torch.no_grad():
                    labels = model(x).argmax(1)
            return fgsm_random_start(model, x, labels, config.epsilon, generator=generator)
        return fgsm(model, x, labels, config.epsilon)
    return pgd(model, x, y, config.epsilon, steps=config.pgd_steps, generator=generator)


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, train_set: ImageSet,
                    config: TrainConfig, generator: torch.Generator, device: torch.device,
                    on_batch: "callable | None" = None) -> tuple[float, float]:
    """One pass over the training set; returns (mean loss, accuracy on the images it learned from)."""
    model.train()
    channels_last = device.type == "cpu"
    order = torch.randperm(len(train_set), generator=generator)
    batches = math.ceil(len(order) / config.batch_size)
    total_loss, correct, seen = 0.0, 0, 0
    adversarial = config.mode != TrainMode.STANDARD.value
    for b in range(batches):
        index = order[b * config.batch_size:(b + 1) * config.batch_size]
        x, y = batch_to_device(train_set, index, device, channels_last)
        if adversarial:
            x_adv = adversarial_batch(model, x, y, config, generator)
            if config.clean_mix > 0:
                logits = model(torch.cat([x_adv, x]))
                adv_logits, clean_logits = logits[: len(y)], logits[len(y):]
                loss = (1 - config.clean_mix) * F.cross_entropy(adv_logits, y) \
                    + config.clean_mix * F.cross_entropy(clean_logits, y)
                logits = adv_logits
            else:
                logits = model(x_adv)
                loss = F.cross_entropy(logits, y)
        else:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += float(loss.detach()) * len(y)
        correct += int((logits.detach().argmax(1) == y).sum())
        seen += len(y)
        if on_batch is not None:
            on_batch(b + 1, batches, total_loss / seen)
    return total_loss / max(seen, 1), correct / max(seen, 1)


def train_model(config: TrainConfig, train_set: ImageSet, test_set: ImageSet | None = None,
                progress: ProgressFn = ignore_progress) -> TrainResult:
    """Train one model; reports every batch (for progress bars) and every epoch (with test metrics)."""
    from busadv.evaluation import accuracy_under_attack

    if train_set.image_size != config.image_size:
        raise ValueError(f"training images are {train_set.image_size}px but the config asks for "
                         f"{config.image_size}px; load the data at the model's size")
    device = pick_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    generator = seed_everything(config.seed)
    model = build_model(config.arch, config.image_size, config.pretrained).to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    result = TrainResult(model=model, config=config, init_note=describe_init(config.arch, config.pretrained))
    started = time.perf_counter()
    progress(ProgressEvent(0.0, f"{config.describe()}: {result.init_note}", epoch=0, epochs=config.epochs))

    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()

        def on_batch(batch: int, batches: int, loss: float, epoch: int = epoch) -> None:
            done = (epoch - 1 + batch / batches) / config.epochs
            elapsed = time.perf_counter() - started
            progress(ProgressEvent(done, f"epoch {epoch}/{config.epochs}, batch {batch}/{batches}",
                                   epoch=epoch, epochs=config.epochs, loss=loss,
                                   eta_seconds=elapsed / done * (1 - done) if done > 0 else None))

        loss, train_acc = train_one_epoch(model, optimizer, train_set, config, generator, device, on_batch)
        stats = EpochStats(epoch=epoch, epochs=config.epochs, train_loss=loss, train_accuracy=train_acc)
        if test_set is not None and len(test_set):
            stats.test_accuracy = accuracy_under_attack(model, test_set, "none", 0.0, device=device)
            if config.mode != TrainMode.STANDARD.value and config.monitor_images > 0:
                watch = test_set.subset(torch.arange(min(config.monitor_images, len(test_set))))
                stats.test_fgsm_accuracy = accuracy_under_attack(model, watch, "fgsm", config.epsilon, device=device)
                stats.test_pgd_accuracy = accuracy_under_attack(model, watch, "pgd", config.epsilon, device=device,
                                                                pgd_steps=config.pgd_steps)
        stats.seconds = time.perf_counter() - epoch_start
        result.history.append(stats)
        elapsed = time.perf_counter() - started
        done = epoch / config.epochs
        message = f"epoch {epoch}/{config.epochs}: loss {loss:.3f}, train acc {train_acc:.3f}"
        if stats.test_accuracy is not None:
            message += f", test acc {stats.test_accuracy:.3f}"
        if stats.test_pgd_accuracy is not None:
            message += f", FGSM {stats.test_fgsm_accuracy:.3f}, PGD {stats.test_pgd_accuracy:.3f}"
        progress(ProgressEvent(done, message, epoch=epoch, epochs=config.epochs, loss=loss,
                               accuracy=stats.test_accuracy if stats.test_accuracy is not None else train_acc,
                               eta_seconds=elapsed / done * (1 - done)))
    result.seconds = time.perf_counter() - started
    model.eval()
    return result
