"""One epoch, one training run: the study's recipe (cross-entropy, Adam, 10 epochs, batch 32) and its variants.

Adversarial runs are watched after every epoch on a seeded, stratified subset of the test images under
FGSM and PGD at the training epsilon: PGD accuracy collapsing while FGSM accuracy holds is catastrophic
overfitting (Wong et al. 2020), and the history keeps the epoch it happened. Given a state file, every
finished epoch is saved there and a killed run goes on from it (busadv.training.state).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from busadv.data.imageset import ImageSet
from busadv.data.split import stratified_subset
from busadv.evaluation import evaluate
from busadv.models.registry import build_model, describe_init
from busadv.progress import ProgressEvent, ProgressFn, ignore_progress
from busadv.settings import pick_device
from busadv.training import state
from busadv.training.config import TrainConfig
from busadv.training.modes import MODES


@dataclass
class EpochStats:
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float | None = None  # None: trained without a test set to watch
    test_balanced_accuracy: float | None = None
    test_fgsm_accuracy: float | None = None  # on the watch set, at the training epsilon (adversarial modes)
    test_pgd_accuracy: float | None = None   # falls while FGSM accuracy holds: catastrophic overfitting
    test_pgd_balanced_accuracy: float | None = None
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


@contextmanager
def cudnn_settings(device: torch.device, deterministic: bool) -> Iterator[None]:
    """Fastest cuDNN kernels (autotuned for fixed input sizes) unless asked to be deterministic; restored after."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = (not deterministic), deterministic
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


def batch_to_device(dataset: ImageSet, index: torch.Tensor, device: torch.device,
                    channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = dataset.floats(index, device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, dataset.labels[index].to(device, non_blocking=True)


def class_weights(train_set: ImageSet, device: torch.device) -> torch.Tensor:
    """Inverse class frequency, scaled so that a balanced set gets weight 1 for every class."""
    counts = torch.bincount(train_set.labels, minlength=len(train_set.classes)).float().clamp(min=1)
    return (counts.sum() / (len(counts) * counts)).to(device)


def epoch_order(train_set: ImageSet, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """The images of one epoch: a permutation, or (class_balance='sampler') a class-balanced draw."""
    if config.class_balance == "sampler":
        counts = torch.bincount(train_set.labels, minlength=len(train_set.classes)).float()
        weights = 1.0 / counts[train_set.labels]
        return torch.multinomial(weights, len(train_set), replacement=True, generator=generator)
    return torch.randperm(len(train_set), generator=generator)


def epsilon_at(config: TrainConfig, epoch: int, progress_in_epoch: float) -> float:
    """The training epsilon now: ramped linearly from 0 over the warm-up epochs (epoch counts from 1)."""
    if not config.warmup_epochs:
        return config.epsilon
    return config.epsilon * min(1.0, (epoch - 1 + progress_in_epoch) / config.warmup_epochs)


def batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig, eps: float,
               generator: torch.Generator, weights: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits) of one batch under the run's mode: clean, perturbed (with clean mix) or the mode's own."""
    mode = MODES.get(config.mode)
    if mode.loss is not None:
        return mode.loss(model, x, y, config, eps, generator, weights)
    if mode.perturb is None or eps <= 0:
        logits = model(x)
        return F.cross_entropy(logits, y, weight=weights), logits
    x_adv = mode.perturb(model, x, y, config, eps, generator)
    if not config.clean_mix:
        logits = model(x_adv)
        return F.cross_entropy(logits, y, weight=weights), logits
    logits = model(torch.cat([x_adv, x]))
    adv_logits, clean_logits = logits[: len(y)], logits[len(y):]
    mix = float(config.clean_mix)
    loss = (1 - mix) * F.cross_entropy(adv_logits, y, weight=weights) + mix * F.cross_entropy(clean_logits, y,
                                                                                             weight=weights)
    return loss, adv_logits


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, train_set: ImageSet,
                    config: TrainConfig, generator: torch.Generator, device: torch.device,
                    on_batch: Callable[[int, int, float], None] | None = None, epoch: int = 1) -> tuple[float, float]:
    """One pass over the training set; returns (mean loss, accuracy on the images it learned from)."""
    model.train()
    channels_last = device.type == "cpu"
    order = epoch_order(train_set, config, generator)
    weights = class_weights(train_set, device) if config.class_balance == "loss" else None
    batches = math.ceil(len(order) / config.batch_size)
    total_loss, correct, seen = 0.0, 0, 0
    for b in range(batches):
        index = order[b * config.batch_size:(b + 1) * config.batch_size]
        x, y = batch_to_device(train_set, index, device, channels_last)
        loss, logits = batch_loss(model, x, y, config, epsilon_at(config, epoch, b / batches), generator, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += float(loss.detach()) * len(y)
        correct += int((logits.detach().argmax(1) == y).sum())
        seen += len(y)
        if on_batch is not None:
            on_batch(b + 1, batches, total_loss / seen)
    return total_loss / max(seen, 1), correct / max(seen, 1)


def scaled_progress(progress: ProgressFn, start: float, span: float) -> ProgressFn:
    def report(event: ProgressEvent) -> None:
        progress(ProgressEvent(start + span * event.fraction, event.message, event.epoch, event.epochs, event.loss,
                               event.accuracy, None))
    return report


def watch_epoch(model: nn.Module, stats: EpochStats, test_set: ImageSet, watch_set: ImageSet | None,
                config: TrainConfig, device: torch.device) -> None:
    """Clean test metrics after an epoch, and FGSM/PGD on the watch set for adversarial runs."""
    clean = evaluate(model, test_set, [], [], device=device)[0]
    stats.test_accuracy, stats.test_balanced_accuracy = clean.accuracy, clean.balanced_accuracy
    if watch_set is not None and len(watch_set):
        results = evaluate(model, watch_set, ["fgsm", "pgd"], [config.epsilon], device=device,
                           pgd_steps=config.pgd_steps)
        by_attack = {r.attack: r for r in results}
        stats.test_fgsm_accuracy = by_attack["fgsm"].accuracy
        stats.test_pgd_accuracy = by_attack["pgd"].accuracy
        stats.test_pgd_balanced_accuracy = by_attack["pgd"].balanced_accuracy


def epoch_message(stats: EpochStats) -> str:
    message = f"epoch {stats.epoch}/{stats.epochs}: loss {stats.train_loss:.3f}, train acc {stats.train_accuracy:.3f}"
    if stats.test_accuracy is not None:
        message += f", test acc {stats.test_accuracy:.3f} (balanced {stats.test_balanced_accuracy:.3f})"
    if stats.test_pgd_accuracy is not None:
        message += f", watch FGSM {stats.test_fgsm_accuracy:.3f}, PGD {stats.test_pgd_accuracy:.3f}"
    return message


def train_model(config: TrainConfig, train_set: ImageSet, test_set: ImageSet | None = None,
                progress: ProgressFn = ignore_progress, state_file: str | os.PathLike | None = None) -> TrainResult:
    """Train one model; reports every batch (for progress bars) and every epoch (with test metrics).

    state_file: where the per-epoch state is kept (busadv.training.state). When it holds a state of
    this very run (same settings, same training images), training goes on after its last finished
    epoch; a state that cannot be used is reported and training starts from epoch 1.
    """
    if train_set.image_size != config.image_size:
        raise ValueError(f"training images are {train_set.image_size}px but the config asks for "
                         f"{config.image_size}px; load the data at the model's size")
    device = pick_device(config.device)
    mode = MODES.get(config.mode)
    if mode.prepare is not None:  # before seeding: the fresh model starts exactly as a standard run would
        train_set = mode.prepare(config, train_set, progress, train_model)
        progress = scaled_progress(progress, 0.5, 0.5)
    generator = seed_everything(config.seed)
    model = build_model(config.arch, config.image_size, config.pretrained, num_classes=len(train_set.classes))
    model = model.to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    result = TrainResult(model=model, config=config, init_note=describe_init(config.arch, config.pretrained))
    run = state.identity(config, train_set) if state_file is not None else ""
    resumed = _resume(state_file, run, model, optimizer, generator, config, progress)
    first = resumed.epoch + 1
    known = {f.name for f in fields(EpochStats)}
    result.history = [EpochStats(**{k: v for k, v in h.items() if k in known}) for h in resumed.history]
    watch_set = None
    if test_set is not None and mode.adversarial and config.monitor_images > 0:
        watch_set = stratified_subset(test_set, config.monitor_images, seed=config.seed)
    started = time.perf_counter()
    done_before = resumed.epoch / config.epochs

    def eta(done: float) -> float | None:
        elapsed, gained = time.perf_counter() - started, done - done_before
        return elapsed / gained * (1 - done) if gained > 0 else None

    if not resumed.epoch:
        progress(ProgressEvent(0.0, f"{config.describe()}: {result.init_note}", epoch=0, epochs=config.epochs))
    with cudnn_settings(device, config.deterministic):
        for epoch in range(first, config.epochs + 1):
            epoch_start = time.perf_counter()

            def on_batch(batch: int, batches: int, loss: float, epoch: int = epoch) -> None:
                done = (epoch - 1 + batch / batches) / config.epochs
                progress(ProgressEvent(done, f"epoch {epoch}/{config.epochs}, batch {batch}/{batches}",
                                       epoch=epoch, epochs=config.epochs, loss=loss, eta_seconds=eta(done)))

            loss, train_acc = train_one_epoch(model, optimizer, train_set, config, generator, device, on_batch, epoch)
            stats = EpochStats(epoch=epoch, epochs=config.epochs, train_loss=loss, train_accuracy=train_acc)
            if test_set is not None and len(test_set):
                watch_epoch(model, stats, test_set, watch_set, config, device)
            stats.seconds = time.perf_counter() - epoch_start
            result.history.append(stats)
            if state_file is not None:  # after the watch: the generators are saved as the next epoch finds them
                state.save_state(state_file, run, state.TrainState(
                    epoch, [asdict(h) for h in result.history], resumed.seconds + time.perf_counter() - started),
                    model, optimizer, generator, config.epochs)
            done = epoch / config.epochs
            progress(ProgressEvent(done, epoch_message(stats), epoch=epoch, epochs=config.epochs, loss=loss,
                                   accuracy=stats.test_accuracy if stats.test_accuracy is not None else train_acc,
                                   eta_seconds=eta(done)))
    result.seconds = resumed.seconds + time.perf_counter() - started
    model.eval()
    return result


def _resume(state_file: str | os.PathLike | None, run: str, model: nn.Module, optimizer: torch.optim.Optimizer,
            generator: torch.Generator, config: TrainConfig, progress: ProgressFn) -> state.TrainState:
    """The state to go on from: the saved one, or epoch 0 (none saved, or one that cannot be used, said so)."""
    if state_file is None:
        return state.TrainState(epoch=0)
    try:
        saved = state.load_state(state_file, run, model, optimizer, generator, config.epochs)
    except state.StateUnusable as exc:
        warnings.warn(f"training starts from epoch 1: the saved training state is not used ({exc})", stacklevel=3)
        progress(ProgressEvent(0.0, f"starting from epoch 1: saved state not used ({exc})", epoch=0,
                               epochs=config.epochs))
        return state.TrainState(epoch=0)
    if saved is None:
        return state.TrainState(epoch=0)
    # Reported as the epoch about to run: progress curves read a falling epoch as the start of a new run.
    progress(ProgressEvent(saved.epoch / config.epochs,
                           f"{config.describe()}: resumed after epoch {saved.epoch}/{config.epochs}",
                           epoch=min(saved.epoch + 1, config.epochs), epochs=config.epochs))
    return saved
