"""The default backend: a pool of worker processes on this machine, each run on its own torch thread(s).

Why processes of one thread each: SimpleCNN's convolutions are small, and two one-thread runs side by
side train faster than one two-thread run (the benchmark's scale section measures it; the threads of one
run wait on each other, and on a shared machine on cores other processes hold). With one worker the runs
go one after another in this very process, as busadv always did: no process start, no copy of the data.

The pool's size follows the models (ModelSpec.cpus_per_run, memory_gb_per_run, gpu_fraction) and the
machine; `workers` overrides it. Workers are started with "spawn" (a fork of a process that already ran
torch threads can hang); the images reach them once, when they start, and are fingerprinted on arrival.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from busadv.data import ImageSet
from busadv.experiments.backends import base
from busadv.progress import ProgressFn

POLL_SECONDS = 0.25
STOP_SECONDS = 5.0  # a stopped worker that has not ended by then is killed

# ------------------------------------------------------------------------------------------- sizing


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available_memory_gb() -> float:
    """MemAvailable from /proc/meminfo (inf where unknown: memory then does not limit the pool)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return math.inf


def cuda_wanted(device: str) -> bool:
    import torch

    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def pool_size(plan: base.GridPlan) -> int:
    """Runs at once: `workers` if given, else what the cores, the memory and (on CUDA) one GPU's share hold."""
    if not plan.tasks:
        return 1
    if plan.workers:
        return max(1, min(plan.workers, len(plan.tasks)))
    limits = [usable_cpus() // max(t.cpus for t in plan.tasks),
              available_memory_gb() // max(t.memory_gb for t in plan.tasks)]
    share = max(t.gpus for t in plan.tasks)
    if share > 0 and cuda_wanted(plan.device):  # one GPU: Ray spreads runs over several
        limits.append(max(1, math.floor(1 / share)))
    return int(max(1, min(*limits, len(plan.tasks))))


# ------------------------------------------------------------------------------------------- a worker

_WORKER: dict[str, Any] = {}  # set once per worker process by _start_worker


def _start_worker(datasets: dict[int, ImageSet], fingerprints: dict[int, str], events: Any, threads: int,
                  run_fn: base.RunFn) -> None:
    import signal

    import torch

    # Ctrl-C in a terminal reaches the whole process group: the parent alone decides, and ends the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    _WORKER.update(datasets=datasets, fingerprints=fingerprints, events=events, threads=threads, run_fn=run_fn,
                   checked=set())


def _run_task(task: base.RunTask, options: base.RunOptions) -> Any:
    """In a worker: check the images once, run, and send the run's progress back through the queue."""
    if task.size not in _WORKER["checked"]:
        base.check_arrival(_WORKER["datasets"][task.size], _WORKER["fingerprints"][task.size])
        _WORKER["checked"].add(task.size)
    send = base.Throttle(lambda event: _WORKER["events"].put((task.index, event)))
    return base.execute(task, _WORKER["datasets"][task.size], options, _WORKER["run_fn"], send,
                        threads=_WORKER["threads"])


# ------------------------------------------------------------------------------------------- the pool

class _Pool:
    """A ProcessPoolExecutor that can be rebuilt when a worker dies (a killed worker breaks the whole pool)."""

    def __init__(self, plan: base.GridPlan, workers: int) -> None:
        self.plan, self.workers = plan, workers
        self.context = multiprocessing.get_context("spawn")
        self.events = self.context.Queue()
        self.threads = max(t.cpus for t in plan.tasks)
        self.executor = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=self.context, initializer=_start_worker,
                                   initargs=(self.plan.datasets, self.plan.fingerprints(), self.events,
                                             self.threads, self.plan.run_fn))

    def submit(self, task: base.RunTask) -> Future:
        try:
            return self.executor.submit(_run_task, task, self.plan.options)
        except BrokenProcessPool:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self._new()
            return self.executor.submit(_run_task, task, self.plan.options)

    def drain(self, grid: base.Grid) -> None:
        while True:
            try:
                index, event = self.events.get_nowait()
            except queue.Empty:
                return
            grid.event(index, event)

    def stop(self) -> None:
        """End every worker now (a cancel, Ctrl-C): running runs are dropped, queued ones never start."""
        processes = list((getattr(self.executor, "_processes", None) or {}).values())
        terminate = getattr(self.executor, "terminate_workers", None)  # Python 3.14
        if terminate is not None:
            terminate()
        else:
            for process in processes:
                process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for process in processes:  # gone for sure before the caller goes on: a worker holds ~1 GB
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)
        self.executor.shutdown(wait=False, cancel_futures=True)
        # Its manager thread closes its wake-up pipe as it ends; at exit Python wakes every executor's thread, and a
        # close racing that wake-up printed "OSError: Bad file descriptor" after a SIGTERM (CPython 3.11). Waited
        # for here, the pipe is closed before exit and the wake-up skips it.
        manager = getattr(self.executor, "_executor_manager_thread", None)
        if manager is not None and manager.is_alive():
            manager.join(STOP_SECONDS)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.events.close()


def run_pool(plan: base.GridPlan, grid: base.Grid, workers: int) -> None:
    pool = _Pool(plan, workers)
    pending = {pool.submit(task): task for task in plan.tasks}
    try:
        while pending:
            done, _ = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            pool.drain(grid)
            for future in done:
                task = pending.pop(future)
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001 - retried once, then reported
                    if grid.failed(task.index, exc):
                        pending[pool.submit(task)] = task
                else:
                    grid.succeeded(task.index, outcome)
            grid.tick()
        pool.drain(grid)
    except BaseException:
        pool.stop()
        raise
    pool.close()


def run(plan: base.GridPlan, progress: ProgressFn) -> base.GridOutcome:
    """The grid on this machine: a pool of worker processes, or in turn in this process for one worker."""
    grid = base.Grid(plan.tasks, progress, keep=plan.keep)
    workers = pool_size(plan)
    if workers == 1:
        base.run_in_turn(plan, grid)
    else:
        run_pool(plan, grid, workers)
    return grid.finish()
