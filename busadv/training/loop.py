"""One epoch, one training run: the study's recipe (cross-entropy, Adam, 10 epochs, batch 32) and the levers
a careful researcher adds (busadv.training.config.TrainingLevers): augmentation, AdamW, a schedule, an EMA of
the weights, and a validation split carved from the training side that chooses the epoch.

The test split never chooses anything. With a validation split, training does not look at the test images
at all: the per-epoch watch, early stopping and the choice of the saved epoch read the validation images.
Without one (the study's recipe), the per-epoch clean and attack measures of the test images are kept in the
history for the record and the last epoch is the model.

Adversarial runs are watched after every epoch under FGSM and PGD at the training epsilon: PGD accuracy
collapsing while FGSM accuracy holds is catastrophic overfitting (Wong et al. 2020), and the history keeps
the epoch it happened. Given a state file, every finished epoch is saved there and a killed run goes on
from it (busadv.training.state).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from busadv.data.imageset import ImageSet
from busadv.data.split import split_dataset, stratified_subset
from busadv.evaluation import evaluate
from busadv.models.registry import build_model, describe_init
from busadv.progress import ProgressEvent, ProgressFn, ignore_progress
from busadv.settings import pick_device
from busadv.training import state
from busadv.training.augment import augment_batch
from busadv.training.config import CHOOSING_SELECTIONS, SENSITIVITY_FLOOR, TrainConfig
from busadv.training.modes import MODES
from busadv.training.optim import (
    SELECTION_WINDOW,
    Averager,
    EpochChoice,
    ema_ramp_note,
    first_eligible_epoch,
    make_optimizer,
    make_schedule,
)

VALIDATION_PGD_STEPS = 5  # the cheap robust score that chooses an adversarial run's epoch


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
    val_accuracy: float | None = None           # the validation split (carved from the training side), if any
    val_balanced_accuracy: float | None = None
    val_fgsm_accuracy: float | None = None
    val_pgd_accuracy: float | None = None
    val_pgd_balanced_accuracy: float | None = None  # PGD-5 at the training epsilon: adversarial runs' score
    val_sensitivity: float | None = None        # malignant recall on validation (select=best-sensitive counts it)
    val_pgd_sensitivity: float | None = None    # the same under PGD-5 at the training epsilon
    score: float | None = None                  # what chooses the epoch (select=best), from validation only
    lr: float | None = None                     # at the end of the epoch
    seconds: float = 0.0


@dataclass
class TrainResult:
    model: nn.Module
    config: TrainConfig
    history: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0
    init_note: str = ""
    chosen_epoch: int | None = None  # the epoch whose weights `model` holds
    n_val: int = 0                   # validation images carved from the training side
    refit_history: list[EpochStats] = field(default_factory=list)  # config.refit: the second pass, on every image


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


def loss_weights(train_set: ImageSet, config: TrainConfig, device: torch.device) -> torch.Tensor | None:
    """Per-class weights of the training loss: inverse frequency (class_balance='loss'), the critical class's
    times critical_weight; None where every class counts the same."""
    weighted = config.critical_weight != 1
    if config.class_balance != "loss" and not weighted:
        return None
    weights = (class_weights(train_set, device) if config.class_balance == "loss"
               else torch.ones(len(train_set.classes), device=device))
    if weighted:
        weights[train_set.classes.index(train_set.spec.critical)] *= float(config.critical_weight)
    return weights


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
                    on_batch: Callable[[int, int, float], None] | None = None, epoch: int = 1,
                    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
                    averager: Averager | None = None) -> tuple[float, float]:
    """One pass over the training set; returns (mean loss, accuracy on the images it learned from).

    Each batch is augmented (config.augment) before it is attacked, so adversarial batches are augmented too;
    the schedule steps and the weight average updates after every optimizer step.
    """
    model.train()
    channels_last = device.type == "cpu"
    order = epoch_order(train_set, config, generator)
    weights = loss_weights(train_set, config, device)
    batches = math.ceil(len(order) / config.batch_size)
    total_loss, correct, seen = 0.0, 0, 0
    for b in range(batches):
        index = order[b * config.batch_size:(b + 1) * config.batch_size]
        x, y = batch_to_device(train_set, index, device, channels_last)
        x = augment_batch(x, config.augment, generator)
        loss, logits = batch_loss(model, x, y, config, epsilon_at(config, epoch, b / batches), generator, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        if averager is not None:
            averager.update(model)
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
    """Clean test metrics after an epoch, and FGSM/PGD on the watch set for adversarial runs (study recipe: no
    validation split; kept for the record, never used to choose)."""
    clean = evaluate(model, test_set, [], [], device=device)[0]
    stats.test_accuracy, stats.test_balanced_accuracy = clean.accuracy, clean.balanced_accuracy
    if watch_set is not None and len(watch_set):
        results = evaluate(model, watch_set, ["fgsm", "pgd"], [config.epsilon], device=device,
                           pgd_steps=config.pgd_steps)
        by_attack = {r.attack: r for r in results}
        stats.test_fgsm_accuracy = by_attack["fgsm"].accuracy
        stats.test_pgd_accuracy = by_attack["pgd"].accuracy
        stats.test_pgd_balanced_accuracy = by_attack["pgd"].balanced_accuracy


def validate_epoch(model: nn.Module, stats: EpochStats, val_set: ImageSet, config: TrainConfig,
                   device: torch.device) -> float:
    """Validation measures after an epoch; returns the score that chooses the epoch.

    Standard training is scored by clean balanced accuracy; adversarial training by balanced accuracy under
    PGD-5 at the training epsilon (cheap, and what robust training is for), clean balanced accuracy breaking ties;
    with select=best-both by the mean of the two; with select=best-sensitive as best-both, less the malignant
    sensitivity's shortfall below SENSITIVITY_FLOOR (balanced accuracy alone chose epochs that miss half the
    cancers under attack).
    """
    adversarial = MODES.get(config.mode).adversarial and config.epsilon > 0
    results = evaluate(model, val_set, ["fgsm", "pgd"] if adversarial else [], [config.epsilon] if adversarial else [],
                       device=device, pgd_steps=VALIDATION_PGD_STEPS, seed=config.seed)
    clean = results[0]
    stats.val_accuracy, stats.val_balanced_accuracy = clean.accuracy, clean.balanced_accuracy
    stats.val_sensitivity = clean.sensitivity
    if not adversarial:
        return float(clean.balanced_accuracy) - sensitivity_shortfall(clean.sensitivity, config.select)
    by_attack = {r.attack: r for r in results[1:]}
    stats.val_fgsm_accuracy = by_attack["fgsm"].accuracy
    stats.val_pgd_accuracy = by_attack["pgd"].accuracy
    stats.val_pgd_balanced_accuracy = by_attack["pgd"].balanced_accuracy
    stats.val_pgd_sensitivity = by_attack["pgd"].sensitivity
    robust = float(by_attack["pgd"].balanced_accuracy)
    if config.select in ("best-both", "best-sensitive"):
        return ((robust + float(clean.balanced_accuracy)) / 2
                - sensitivity_shortfall(by_attack["pgd"].sensitivity, config.select))
    return robust + 1e-3 * float(clean.balanced_accuracy)


def sensitivity_shortfall(sensitivity: float, select: str) -> float:
    """What select=best-sensitive docks from an epoch's score: how far malignant sensitivity falls short of the
    floor (0 for other selections, and where the validation split holds no malignant image)."""
    if select != "best-sensitive" or math.isnan(sensitivity):
        return 0.0
    return max(0.0, SENSITIVITY_FLOOR - float(sensitivity))


def carve_validation(train_set: ImageSet, config: TrainConfig) -> tuple[ImageSet, ImageSet | None]:
    """(images to learn from, validation images): stratified, seeded, near-duplicate groups kept whole."""
    if not config.val_fraction:
        return train_set, None
    try:
        fit, val = split_dataset(train_set, config.val_fraction, seed=config.seed, policy=config.split_policy)
    except ValueError as exc:
        raise ValueError(f"cannot carve a validation split from {len(train_set)} training images: {exc} "
                         f"(train with val_fraction=0 and select=last on so few images)") from None
    return fit, val


def epoch_message(stats: EpochStats) -> str:
    message = f"epoch {stats.epoch}/{stats.epochs}: loss {stats.train_loss:.3f}, train acc {stats.train_accuracy:.3f}"
    if stats.val_balanced_accuracy is not None:
        message += f", validation balanced acc {stats.val_balanced_accuracy:.3f}"
    if stats.val_pgd_balanced_accuracy is not None:
        message += f" (under PGD-5 {stats.val_pgd_balanced_accuracy:.3f})"
    found = stats.val_pgd_sensitivity if stats.val_pgd_sensitivity is not None else stats.val_sensitivity
    if found is not None and not math.isnan(found):
        message += f", cancers found {found:.2f}" + (" under PGD-5" if stats.val_pgd_sensitivity is not None else "")
    if stats.test_accuracy is not None:
        message += f", test acc {stats.test_accuracy:.3f} (balanced {stats.test_balanced_accuracy:.3f})"
    if stats.test_pgd_accuracy is not None:
        message += f", watch FGSM {stats.test_fgsm_accuracy:.3f}, PGD {stats.test_pgd_accuracy:.3f}"
    return message


def train_model(config: TrainConfig, train_set: ImageSet, test_set: ImageSet | None = None,
                progress: ProgressFn = ignore_progress, state_file: str | os.PathLike | None = None) -> TrainResult:
    """Train one model; reports every batch (for progress bars) and every epoch (with its measures).

    With config.val_fraction > 0 a validation split is carved from `train_set` and `test_set` is not looked
    at; without one, `test_set` is watched after every epoch for the record (never to choose).
    state_file: where the per-epoch state is kept (busadv.training.state). When it holds a state of
    this very run (same settings, same training images), training goes on after its last finished
    epoch; a state that cannot be used is reported and training starts from epoch 1.
    With config.refit the run is two passes (validate_then_refit).
    """
    if train_set.image_size != config.image_size:
        raise ValueError(f"training images are {train_set.image_size}px but the config asks for "
                         f"{config.image_size}px; load the data at the model's size")
    if config.refit:
        return validate_then_refit(config, train_set, progress, state_file)
    device = pick_device(config.device)
    mode = MODES.get(config.mode)
    train_set, val_set = carve_validation(train_set, config)
    if mode.prepare is not None:  # before seeding: the fresh model starts exactly as a standard run would
        train_set = mode.prepare(config, train_set, progress, train_model)
        progress = scaled_progress(progress, 0.5, 0.5)
    generator = seed_everything(config.seed)
    model = build_model(config.arch, config.image_size, config.pretrained, num_classes=len(train_set.classes))
    model = model.to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    schedule = make_schedule(optimizer, config, steps_per_epoch)
    averager = Averager(model, config.ema_decay) if config.ema_decay else None
    choice = EpochChoice(patience=config.patience, window=SELECTION_WINDOW, start=first_eligible_epoch(config))
    result = TrainResult(model=model, config=config, init_note=describe_init(config.arch, config.pretrained),
                         n_val=len(val_set) if val_set is not None else 0)
    run = state.identity(config, train_set) if state_file is not None else ""
    resumed = _resume(state_file, run, model, optimizer, generator, config, progress)
    if resumed.extras:
        _restore_extras(resumed.extras, schedule, averager, choice)
    first = resumed.epoch + 1
    known = {f.name for f in fields(EpochStats)}
    result.history = [EpochStats(**{k: v for k, v in h.items() if k in known}) for h in resumed.history]
    watch_set = None
    if val_set is None and test_set is not None and mode.adversarial and config.monitor_images > 0:
        watch_set = stratified_subset(test_set, config.monitor_images, seed=config.seed)
    started = time.perf_counter()
    done_before = resumed.epoch / config.epochs

    def eta(done: float) -> float | None:
        elapsed, gained = time.perf_counter() - started, done - done_before
        return elapsed / gained * (1 - done) if gained > 0 else None

    if not resumed.epoch:
        note = f"{config.describe()}: {result.init_note}"
        if val_set is not None:
            note += f"; {len(val_set)} validation images carved from the training side choose the epoch"
        elif test_set is not None and len(test_set):
            note += ("; no validation split: the test images are watched after each epoch for the record"
                     + (" (and the overfitting flag)" if watch_set is not None else "")
                     + ", never to choose; the last epoch is kept")
        if averager is not None and (ramp := ema_ramp_note(config.ema_decay, steps_per_epoch * config.epochs)):
            note += f"; {ramp}"
        progress(ProgressEvent(0.0, note, epoch=0, epochs=config.epochs))
    stopped = choice.exhausted(resumed.epoch)
    with cudnn_settings(device, config.deterministic):
        for epoch in range(first, config.epochs + 1):
            if stopped:
                break
            epoch_start = time.perf_counter()

            def on_batch(batch: int, batches: int, loss: float, epoch: int = epoch) -> None:
                done = (epoch - 1 + batch / batches) / config.epochs
                progress(ProgressEvent(done, f"epoch {epoch}/{config.epochs}, batch {batch}/{batches}",
                                       epoch=epoch, epochs=config.epochs, loss=loss, eta_seconds=eta(done)))

            loss, train_acc = train_one_epoch(model, optimizer, train_set, config, generator, device, on_batch, epoch,
                                              schedule, averager)
            stats = EpochStats(epoch=epoch, epochs=config.epochs, train_loss=loss, train_accuracy=train_acc,
                               lr=float(optimizer.param_groups[0]["lr"]))
            judged = averager.model if averager is not None else model  # the weights that would be saved
            if val_set is not None:
                stats.score = validate_epoch(judged, stats, val_set, config, device)
                choice.offer(epoch, stats.score, judged)
                stopped = choice.exhausted(epoch)
            elif test_set is not None and len(test_set):
                watch_epoch(judged, stats, test_set, watch_set, config, device)
            stats.seconds = time.perf_counter() - epoch_start
            result.history.append(stats)
            if state_file is not None:  # after the watch: the generators are saved as the next epoch finds them
                state.save_state(state_file, run, state.TrainState(
                    epoch, [asdict(h) for h in result.history], resumed.seconds + time.perf_counter() - started,
                    extras=_extras(schedule, averager, choice)),
                    model, optimizer, generator, config.epochs)
            done = epoch / config.epochs
            message = epoch_message(stats) + (f"; no better for {config.patience} epochs: stopping" if stopped else "")
            progress(ProgressEvent(1.0 if stopped else done, message, epoch=epoch, epochs=config.epochs, loss=loss,
                                   accuracy=next((a for a in (stats.val_accuracy, stats.test_accuracy)
                                                  if a is not None), train_acc),
                                   eta_seconds=0.0 if stopped else eta(done)))
    result.seconds = resumed.seconds + time.perf_counter() - started
    final = averager.model if averager is not None else model
    result.chosen_epoch = len(result.history) or None
    if config.select in CHOOSING_SELECTIONS and choice.best_weights is not None:
        final.load_state_dict(choice.best_weights)
        result.chosen_epoch = choice.best_epoch
    result.model = final
    final.eval()
    return result


CHOOSING_SHARE = 0.6  # of a refit run's progress bar: the first pass (it also validates every epoch)


def refit_state_file(state_file: str | os.PathLike) -> Path:
    """Where a refit run's second pass keeps its state: beside the first pass's, named after it (a job store
    that removes the files starting with the state file's name removes both)."""
    path = Path(state_file)
    return path.with_name(path.name + ".refit")


def validate_then_refit(config: TrainConfig, train_set: ImageSet, progress: ProgressFn = ignore_progress,
                        state_file: str | os.PathLike | None = None) -> TrainResult:
    """Choose the number of epochs on a validation split, then train again on every training image for that many.

    Why: the validation split that chooses the epoch is 15% of the images a model could have learnt from; a
    run that chooses and then refits learns from all of them, and the test split still chooses nothing. The
    second pass runs the whole schedule over the chosen number of epochs (not the first pass's schedule cut
    short) and keeps its last epoch. Each pass keeps its own state, so a killed run goes on in either.
    """
    chooser = replace(config, refit=False)
    first = train_model(chooser, train_set, None, scaled_progress(progress, 0.0, CHOOSING_SHARE), state_file)
    epochs = int(first.chosen_epoch or config.epochs)
    refit = replace(chooser, epochs=epochs, val_fraction=0.0, select="last", patience=0)
    progress(ProgressEvent(CHOOSING_SHARE, f"validation chose epoch {epochs} of {len(first.history)}: training "
                                          f"again on all {len(train_set)} training images for {epochs} epochs",
                           epoch=0, epochs=epochs))
    second = train_model(refit, train_set, None, scaled_progress(progress, CHOOSING_SHARE, 1 - CHOOSING_SHARE),
                         refit_state_file(state_file) if state_file is not None else None)
    return TrainResult(model=second.model, config=config, history=first.history, seconds=first.seconds + second.seconds,
                       init_note=first.init_note, chosen_epoch=epochs, n_val=first.n_val,
                       refit_history=second.history)


def _extras(schedule: torch.optim.lr_scheduler.LRScheduler | None, averager: Averager | None,
            choice: EpochChoice) -> dict[str, object]:
    """What a resumed run needs beyond model and optimizer: where the schedule is, the average, the best epoch."""
    return {"schedule": schedule.state_dict() if schedule is not None else None,
            "ema": averager.state_dict() if averager is not None else None, "choice": choice.state_dict()}


def _restore_extras(extras: dict[str, object], schedule: torch.optim.lr_scheduler.LRScheduler | None,
                    averager: Averager | None, choice: EpochChoice) -> None:
    if schedule is not None and isinstance(extras.get("schedule"), dict):
        schedule.load_state_dict(extras["schedule"])  # type: ignore[arg-type]
    if averager is not None and isinstance(extras.get("ema"), dict):
        averager.load_state_dict(extras["ema"])  # type: ignore[arg-type]
    if isinstance(extras.get("choice"), dict):
        choice.load_state_dict(extras["choice"])  # type: ignore[arg-type]


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
