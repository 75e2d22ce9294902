"""Ray: every run of a grid as a Ray task, on a cluster (--address, $RAY_ADDRESS) or on a Ray started here.

Why plain tasks, not Tune trials: a grid is a fixed list of independent runs with known resources, and a
task is Ray's tool for exactly that; Tune's search, schedulers and trial state would go unused.

- Data: each image size's decoded ImageSet (a few MB) goes into Ray's object store once; workers read it
  from there (they need no data folder) and check its fingerprint on arrival.
- Resources: a task asks for its model's ModelSpec.cpus_per_run and memory_gb_per_run, and on CUDA for
  its gpu_fraction; runs that fit together share a node or a GPU.
- Progress: a task is a streaming generator: it yields its (thinned) progress events and, last, its
  outcome, so the job store and the CLI follow a Ray grid as they follow a local one.
- Failures: Ray's own retries are off; base.Grid tries a failed run once more, then reports it.
- Cancel: when the caller's progress callback raises Cancelled (the user cancelled the job), every
  outstanding task is cancelled with force (its worker process ends) before the exception goes on.
- Checkpoints (--save-checkpoints): written on the worker into a scratch folder, shipped back as bytes
  and saved here, so they land in this machine's checkpoints folder as a local run's do. A task cancelled
  with force never removes its scratch folder; the folder's name carries its worker's host and pid, and the
  next task on that host removes the folders of workers that have ended (never another host's: a /tmp may be shared).
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import busadv
from busadv.data import ImageSet
from busadv.data.cache import atomic_write
from busadv.experiments.backends.base import (
    BackendError,
    Grid,
    GridOutcome,
    GridPlan,
    RunFn,
    RunOptions,
    RunTask,
    Throttle,
    check_arrival,
    execute,
)
from busadv.pids import pid_alive
from busadv.progress import ProgressEvent, ProgressFn
from busadv.settings import checkpoints_dir

POLL_SECONDS = 0.25
CONNECT_SECONDS = 5.0
WORKER_ENV = ("BUSADV_PLUGINS",)  # what a worker must share with the driver (plugins register models, attacks)
SCRATCH_PREFIX = "busadv-ray-"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BackendError("the ray backend needs Ray: pip install 'ray[tune]==2.60.0'") from None
    return ray


# ------------------------------------------------------------------------------------------- connecting

def check_reachable(address: str, timeout: float = CONNECT_SECONDS) -> None:
    """Fail in seconds, with one line, where ray.init would retry for minutes: is anything listening there?"""
    if address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise BackendError(f"--address {address!r} is not host:port (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001)")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise BackendError(f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one with "
                           "`ray start --head` there, or leave --address out to start Ray on this machine") from None


def preflight(address: str | None) -> None:
    """Before the images are decoded: Ray is installed, and the cluster named (if any) answers."""
    _ray()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address)


def connect(address: str | None, workers: int | None) -> bool:
    """Join the cluster at `address` (else $RAY_ADDRESS), else start Ray here; True when this call started it.

    A Ray this process already joined (ray.init in a notebook, the tests' fixture) is used as it is.
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    options: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    if address:
        check_reachable(address)
    elif workers:
        options["num_cpus"] = workers
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise BackendError(f"could not start or join {where}: {str(exc).strip().splitlines()[0]}") from None
    return True


def gpu_wanted(device: str) -> bool:
    ray = _ray()
    return device == "cuda" or (device == "auto" and ray.cluster_resources().get("GPU", 0) > 0)


def check_resources(tasks: list[RunTask], gpu: bool) -> None:
    """Refuse a grid that no node can run (its tasks would wait for ever), naming what is missing."""
    ray = _ray()
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for task in {(t.cpus, t.gpus if gpu else 0.0, t.memory_gb): t for t in tasks}.values():
        needs = {"CPU": task.cpus, "GPU": task.gpus if gpu else 0.0, "memory": task.memory_gb * 2**30}
        if not any(all(node.get(k, 0) >= v for k, v in needs.items() if v) for node in nodes):
            raise BackendError(f"no node of the Ray cluster has {task.cpus} CPU(s), {task.memory_gb:g} GB of memory"
                               + (f" and {task.gpus:g} of a GPU" if gpu else "") + f" for {task.config.arch} runs")


# ------------------------------------------------------------------------------------------- on a worker

@dataclass
class Finished:
    """A task's last item: the run's outcome, and its checkpoint file's bytes when it saved one."""

    outcome: Any  # RunOutcome
    checkpoint: bytes | None


def scratch_prefix(pid: int | None = None) -> str:
    """The start of a scratch folder's name: this host's, then the worker's pid when given."""
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"
    return f"{SCRATCH_PREFIX}{host}-" + (f"{pid}-" if pid is not None else "")


def sweep_scratch(folder: Path | None = None) -> list[Path]:
    """Removes this host's scratch folders of ended workers (a force-cancelled task leaves its own behind)."""
    swept, ours = [], scratch_prefix()
    for path in Path(folder or tempfile.gettempdir()).glob(f"{ours}*-*"):
        pid = path.name[len(ours):].split("-", 1)[0]
        if path.is_dir() and not path.is_symlink() and pid.isdigit() and not pid_alive(int(pid), None):
            shutil.rmtree(path, ignore_errors=True)
            swept.append(path)
    return swept


def run_task(dataset: ImageSet, fingerprint: str, task: RunTask, options: RunOptions, run_fn: RunFn,
             version: str) -> Iterator[ProgressEvent | Finished]:
    """The body of a Ray task: a thread runs the run while this generator yields its progress, then its outcome."""
    if version != busadv.__version__:
        raise BackendError(f"this Ray worker has busadv {busadv.__version__} but the driver {version}; "
                           "install the same busadv on every node")
    check_arrival(dataset, fingerprint)
    sweep_scratch()
    events: queue.Queue[ProgressEvent | None] = queue.Queue()
    result: dict[str, Any] = {}

    def body() -> None:
        try:
            with tempfile.TemporaryDirectory(prefix=scratch_prefix(os.getpid())) as scratch:
                outcome = execute(task, dataset, options, run_fn, Throttle(events.put), threads=task.cpus,
                                  checkpoint_folder=Path(scratch))
                blob = Path(outcome.checkpoint).read_bytes() if outcome.checkpoint else None
                result["finished"] = Finished(outcome, blob)
        except BaseException as exc:  # noqa: BLE001 - raised again below, in the task's own thread
            result["error"] = exc
        finally:
            events.put(None)

    threading.Thread(target=body, name="busadv-run", daemon=True).start()
    while (event := events.get()) is not None:
        yield event
    if "error" in result:
        raise result["error"]
    yield result["finished"]


# ------------------------------------------------------------------------------------------- on the driver

def land(finished: Finished, options: RunOptions) -> Any:
    """The outcome as a local run's: its checkpoint saved in this machine's folder, its rows pointing there."""
    outcome = finished.outcome
    if finished.checkpoint is not None and outcome.checkpoint:
        blob = finished.checkpoint
        target = (options.checkpoint_folder or checkpoints_dir()) / Path(outcome.checkpoint).name
        atomic_write(target, lambda tmp: tmp.write_bytes(blob))
        outcome.checkpoint = target
        outcome.rows = [replace(row, checkpoint=str(target)) for row in outcome.rows]
    return outcome


def worker_env() -> dict[str, str]:
    return {k: os.environ[k] for k in WORKER_ENV if os.environ.get(k)}


def run(plan: GridPlan, progress: ProgressFn) -> GridOutcome:
    ray = _ray()
    grid = Grid(plan.tasks, progress, keep=plan.keep)
    owned = connect(plan.address, plan.workers)
    running: dict[Any, RunTask] = {}
    try:
        gpu = gpu_wanted(plan.device)
        check_resources(plan.tasks, gpu)
        data = {size: ray.put(dataset) for size, dataset in plan.datasets.items()}
        fingerprints = plan.fingerprints()
        remote, env = ray.remote(run_task), worker_env()

        def submit(task: RunTask) -> None:
            options: dict[str, Any] = dict(num_returns="streaming", max_retries=0, num_cpus=task.cpus,
                                           num_gpus=task.gpus if gpu else 0, memory=int(task.memory_gb * 2**30))
            if env:
                options["runtime_env"] = {"env_vars": env}
            generator = remote.options(**options).remote(data[task.size], fingerprints[task.size],
                                                         task, plan.options, plan.run_fn, busadv.__version__)
            running[generator] = task

        def take(generator: Any) -> None:
            """The next item of a task that has one: a progress event, its outcome, or its error."""
            task = running[generator]
            try:
                item = ray.get(next(generator))
            except Exception as exc:  # noqa: BLE001 - StopIteration included: a task that ended with no outcome
                del running[generator]
                if grid.failed(task.index, exc):
                    submit(task)
                return
            if isinstance(item, Finished):
                del running[generator]
                grid.succeeded(task.index, land(item, plan.options))
            else:
                grid.event(task.index, item)

        for task in plan.tasks:
            submit(task)
        while running:
            ready, _ = ray.wait(list(running), num_returns=len(running), timeout=POLL_SECONDS, fetch_local=True)
            for generator in ready:
                take(generator)
            grid.tick()
    except BaseException:
        for generator in running:
            ray.cancel(generator, force=True)
        raise
    finally:
        if owned:
            ray.shutdown()
    return grid.finish()
