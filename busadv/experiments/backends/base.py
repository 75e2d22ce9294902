"""What every backend shares: a grid's runs as tasks, one run executed, a retry, many runs' progress as one.

A backend only decides *where* a run executes. Each run is `run_one(config, dataset, ...)` with the same
seed wherever it lands, so a backend choice never changes a result row (tests/test_backends.py checks
that the local pool and Ray give the same rows). Rows come back in grid order, whatever finishes first.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from busadv.data import ImageSet, fingerprint_of
from busadv.progress import Cancelled, ProgressEvent, ProgressFn
from busadv.training import TrainConfig

if TYPE_CHECKING:
    from busadv.results import ResultRow

log = logging.getLogger("busadv.experiments")

MAX_ATTEMPTS = 2          # a run that fails is tried once more (a lost worker, a full disk), then reported
KEEPALIVE_SECONDS = 2.0   # the longest the caller's progress callback waits for a call (a cancel is seen then)


@dataclass
class RunOutcome:
    """What one run gives back, wherever it ran: its rows, per-epoch history, checkpoint and time."""

    config: TrainConfig
    rows: list[ResultRow]
    history: list[dict[str, Any]]
    checkpoint: Path | None
    seconds: float


RunFn = Callable[..., RunOutcome]  # busadv.experiments.runner.run_one's signature


class GridSettings(Protocol):
    """What a backend reads of a grid (busadv.experiments.config.ExperimentConfig has it all).

    Why a protocol: the grid's config checks its backend's name against this package's registry, so this
    package must not import the config back.
    """

    @property
    def backend(self) -> str: ...
    @property
    def address(self) -> str | None: ...
    @property
    def workers(self) -> int | None: ...
    @property
    def data(self) -> str | None: ...
    @property
    def device(self) -> str: ...
    @property
    def test_attacks(self) -> list[str]: ...
    @property
    def test_epsilons(self) -> list[float]: ...
    @property
    def save_checkpoints(self) -> bool: ...
    @property
    def eval_pgd_steps(self) -> int: ...
    def runs(self) -> list[TrainConfig]: ...


class BackendError(ValueError):
    """A backend that cannot run here (Ray missing, a cluster out of reach): said in one line to the user."""


class DataMismatch(RuntimeError):
    """The images a worker received are not the ones the grid was planned on."""


@dataclass(frozen=True)
class RunTask:
    """One run of a grid and what it holds while it runs (from its model's ModelSpec)."""

    index: int             # position in the grid
    config: TrainConfig
    run_id: str
    label: str             # "run 3/20 (simplecnn, fgsm-study training at eps=0.05, seed 2)"
    cpus: int
    gpus: float            # share of one GPU, when the run trains on CUDA
    memory_gb: float

    @property
    def size(self) -> int:
        return int(self.config.image_size or 0)


@dataclass(frozen=True)
class RunOptions:
    """What every run of a grid is tested and saved with."""

    test_attacks: tuple[str, ...]
    test_epsilons: tuple[float, ...]
    save: bool
    eval_pgd_steps: int
    checkpoint_folder: Path | None


@dataclass
class GridPlan:
    tasks: list[RunTask]
    datasets: dict[int, ImageSet]  # image size -> the decoded images, loaded once by the caller
    options: RunOptions
    run_fn: RunFn
    workers: int | None = None     # runs at once (None: as many as the machine or cluster holds)
    address: str | None = None     # a Ray cluster; None: $RAY_ADDRESS, else Ray on this machine
    device: str = "auto"
    # Called here, on the caller's machine, with each outcome as it lands: a run that ran on another machine kept
    # its rows on that machine's disk, and a grid cancelled later must still find them on this one.
    keep: Callable[[RunOutcome], None] | None = None

    def fingerprints(self) -> dict[int, str]:
        """The hash of the very images sent (not `ImageSet.fingerprint`: a subset keeps its parent's, for its rows)."""
        return {size: fingerprint_of(data.images, data.labels) for size, data in self.datasets.items()}


@dataclass(frozen=True)
class RunFailure:
    index: int
    label: str
    error: str
    attempts: int

    def text(self) -> str:
        return f"{self.label} failed {self.attempts} times and has no rows: {self.error}"


@dataclass
class GridOutcome:
    outcomes: dict[int, RunOutcome] = field(default_factory=dict)
    failures: list[RunFailure] = field(default_factory=list)

    def rows(self) -> list[ResultRow]:
        """Every run's rows in grid order."""
        return [row for index in sorted(self.outcomes) for row in self.outcomes[index].rows]


def describe_error(exc: BaseException) -> str:
    """'TypeName: first line of the message', for logs and the job's progress (Ray's wrapper unwrapped)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def check_arrival(dataset: ImageSet, fingerprint: str) -> None:
    """Recompute the fingerprint of images that crossed a process or machine boundary; refuse any other set."""
    found = fingerprint_of(dataset.images, dataset.labels)
    if found != fingerprint:
        raise DataMismatch(f"the images that arrived have fingerprint {found}, the grid was planned on {fingerprint}")


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with n torch threads (None: leave the process's count), restored afterwards."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def execute(task: RunTask, dataset: ImageSet, options: RunOptions, run_fn: RunFn, progress: ProgressFn,
            threads: int | None = None, checkpoint_folder: Path | None = None) -> RunOutcome:
    """One run, as every backend runs it: `run_fn` (run_one) with the grid's test settings and the run's id."""
    with torch_threads(threads):
        return run_fn(task.config, dataset, list(options.test_attacks), list(options.test_epsilons),
                      save=options.save, eval_pgd_steps=options.eval_pgd_steps, run_id=task.run_id,
                      checkpoint_folder=checkpoint_folder or options.checkpoint_folder, progress=progress)


def phase(message: str) -> str:
    """What a run is doing, by its message's first word: 'epoch', 'evaluating', 'AutoAttack', 'PGD'..."""
    return message.split(" ", 1)[0]


class Throttle:
    """A worker's progress, thinned before it crosses a process boundary: epoch ends, a run's end and a new
    phase (the message's first word changes: training to evaluation, one attack to the next) always pass,
    other events at most every `seconds` (a batch event per step would swamp the queue). Without the phase
    rule, 'evaluating' right after the last epoch was dropped and a grid read 'epoch 40/40' for minutes."""

    def __init__(self, send: Callable[[ProgressEvent], Any], seconds: float = 0.3) -> None:
        self.send, self.seconds, self.last, self.phase = send, seconds, -math.inf, ""

    def __call__(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        current = phase(event.message)
        if (event.accuracy is None and event.fraction < 1.0 and current == self.phase
                and now - self.last < self.seconds):
            return
        self.last, self.phase = now, current
        self.send(event)


class Grid:
    """The bookkeeping of a grid in flight, on the caller's side: outcomes, retries, and one progress stream.

    The caller's progress callback (a job's reporter, the CLI's bar) sees one task: the fraction is the mean
    over runs, every message names its run, and one run at a time lends its epoch, loss and accuracy, so
    the live training curves follow one run instead of mixing several. It is called at least every
    KEEPALIVE_SECONDS while runs go on: the job's reporter raises Cancelled there when the user cancels.
    """

    def __init__(self, tasks: list[RunTask], progress: ProgressFn, every: float = 0.5,
                 keep: Callable[[RunOutcome], None] | None = None) -> None:
        self.tasks = {t.index: t for t in tasks}
        self.keep = keep
        self.progress, self.every = progress, every
        self.fractions = dict.fromkeys(self.tasks, 0.0)
        self.attempts = dict.fromkeys(self.tasks, 0)
        self.outcome = GridOutcome()
        self.followed: int | None = None
        self.last_sent, self.last_message = -math.inf, "starting"
        self.unsent: tuple[int, ProgressEvent] | None = None  # the newest event held back by `every`
        self.phases: dict[int, str] = {}  # per run, the phase of the last event sent

    def _send(self, event: ProgressEvent) -> None:
        self.last_sent, self.last_message = time.monotonic(), event.message
        self.progress(event)

    def overall(self) -> float:
        return sum(self.fractions.values()) / max(len(self.fractions), 1)

    def event(self, index: int, event: ProgressEvent) -> None:
        self.fractions[index] = min(1.0, max(0.0, float(event.fraction)))
        if self.followed is None:
            self.followed = index
        urgent = event.accuracy is not None or phase(event.message) != self.phases.get(index)
        if not urgent and time.monotonic() - self.last_sent < self.every:
            self.unsent = (index, event)  # sent by tick() unless a newer one comes first
            return
        self._send_run(index, event)

    def _send_run(self, index: int, event: ProgressEvent) -> None:
        self.unsent = None
        self.phases[index] = phase(event.message)
        mine = index == self.followed
        self._send(ProgressEvent(self.overall(), f"{self.tasks[index].label}: {event.message}",
                                 event.epoch if mine else None, event.epochs if mine else None,
                                 event.loss if mine else None, event.accuracy if mine else None))

    def tick(self) -> None:
        """Report the newest event held back, or the current state when nothing was reported for a while (a
        cancel is noticed here). Events drained from a queue arrive together: without the held-back one, a
        grid repeated the first of them ('PGD, images 1-64') while the last ('AutoAttack, 65-128') ran."""
        if self.unsent is not None and time.monotonic() - self.last_sent >= self.every:
            self._send_run(*self.unsent)
        elif time.monotonic() - self.last_sent >= KEEPALIVE_SECONDS:
            self._send(ProgressEvent(self.overall(), self.last_message))

    def _release(self, index: int, fraction: float) -> None:
        self.fractions[index] = fraction
        if self.followed == index:
            self.followed = None

    def succeeded(self, index: int, outcome: RunOutcome) -> None:
        self.outcome.outcomes[index] = outcome
        if self.keep is not None:
            self.keep(outcome)
        self._release(index, 1.0)
        finished = len(self.outcome.outcomes) + len(self.outcome.failures)
        self._send(ProgressEvent(self.overall(), f"{self.tasks[index].label}: done ({finished} of "
                                                 f"{len(self.tasks)} runs finished)"))

    def failed(self, index: int, exc: BaseException) -> bool:
        """Record a failed attempt; True when the run should be tried again, False when it is given up."""
        if isinstance(exc, Cancelled):
            raise exc
        self.attempts[index] += 1
        task, error = self.tasks[index], describe_error(exc)
        # An error that says so (a full disk: CheckpointNotSaved) is not retried: training again would end alike.
        if self.attempts[index] < MAX_ATTEMPTS and getattr(getattr(exc, "cause", None) or exc, "retry", True):
            log.warning("%s failed (%s); trying it once more", task.label, error)
            self._release(index, 0.0)
            self._send(ProgressEvent(self.overall(), f"{task.label}: failed ({error}); trying it once more"))
            return True
        failure = RunFailure(index, task.label, error, self.attempts[index])
        log.error("%s", failure.text())
        self.outcome.failures.append(failure)
        self._release(index, 1.0)
        self._send(ProgressEvent(self.overall(), failure.text()))
        return False

    def finish(self) -> GridOutcome:
        done, failures = len(self.outcome.outcomes), self.outcome.failures
        message = f"finished {done} runs" if not failures else (
            f"finished {done} of {len(self.tasks)} runs; {len(failures)} failed twice and are missing: "
            + "; ".join(f.text() for f in failures))
        self._send(ProgressEvent(1.0, message))
        return self.outcome


def run_in_turn(plan: GridPlan, grid: Grid) -> None:
    """Every run in this process, one after another (the sequential mode: one worker, or no pool wanted)."""
    for task in plan.tasks:
        report = functools.partial(grid.event, task.index)
        while True:
            try:
                outcome = execute(task, plan.datasets[task.size], plan.options, plan.run_fn, report)
            except Exception as exc:  # noqa: BLE001 - a failed run is retried once, then reported
                if grid.failed(task.index, exc):
                    continue
            else:
                grid.succeeded(task.index, outcome)
            break
