"""The body of a worker process: claim a job, run its function, report progress, record the outcome.

Progress reports double as cancel checks: a job stops at its next report after the user cancels it.
A heartbeat thread proves the worker alive; a cancel ignored for too long interrupts it. Kinds that
keep state (training) get a state file saved after every epoch, so a resumed job goes on from it; the
file is deleted when the job is done.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
import traceback
from contextlib import closing
from pathlib import Path
from typing import Any

from busadv.jobs.job import Job, JobStateError, finite, json_default, one_line
from busadv.jobs.kinds import JOB_KINDS
from busadv.jobs.status import JobStatus
from busadv.jobs.store import HEARTBEAT_SECONDS, JobStore
from busadv.pids import proc_start_time
from busadv.progress import Cancelled, ProgressEvent

log = logging.getLogger("busadv.jobs")

MIN_WRITE_SECONDS = 0.25       # progress rows: at most ~4 writes per second (epoch ends always written)
CANCEL_GRACE_SECONDS = 30.0    # a job that ignores the cancel flag this long gets a KeyboardInterrupt
QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = (s.value for s in JobStatus)


class _Terminated(BaseException):
    """The worker got SIGTERM (shutdown, or the reaper stopping a hung worker)."""


class _Reporter:
    """The progress callback handed to a job function: throttled writes, cancel checks."""

    def __init__(self, store: JobStore, job_id: int, conn: sqlite3.Connection) -> None:
        self.store, self.job_id, self.conn = store, job_id, conn
        self.started = time.monotonic()
        self.last_write = -math.inf
        self.last_epoch: int | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if not isinstance(event, ProgressEvent):  # tolerate a bare fraction
            event = ProgressEvent(float(event))
        row = self.conn.execute("SELECT status, cancel_requested FROM jobs WHERE id = ?", (self.job_id,)).fetchone()
        if row["cancel_requested"]:
            raise Cancelled("cancelled by the user")
        if row["status"] != RUNNING:
            raise Cancelled(f"job is now {row['status']}; stopping")
        fraction = min(1.0, max(0.0, finite(event.fraction) or 0.0))
        now = time.monotonic()
        boundary = (event.epoch != self.last_epoch or event.accuracy is not None or fraction >= 1.0)
        if not boundary and now - self.last_write < MIN_WRITE_SECONDS:
            return
        eta = finite(event.eta_seconds)
        if eta is None and fraction > 0.01:
            eta = (now - self.started) * (1 - fraction) / fraction
        values = (fraction, str(event.message or ""), event.epoch, event.epochs, finite(event.loss),
                  finite(event.accuracy), eta)
        wall = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute(
                "UPDATE jobs SET progress = ?, message = ?, epoch = ?, epochs = ?, loss = COALESCE(?, loss), "
                "accuracy = COALESCE(?, accuracy), eta_seconds = ?, heartbeat = ? WHERE id = ?",
                (*values, wall, self.job_id))
            self.conn.execute(
                "INSERT INTO progress (job_id, time, fraction, message, epoch, epochs, loss, accuracy, eta_seconds) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (self.job_id, wall, *values))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.last_write, self.last_epoch = now, event.epoch


def _heartbeat(store: JobStore, job_id: int, stop: threading.Event) -> None:
    """Beat every HEARTBEAT_SECONDS; if a cancel is ignored too long, interrupt the main thread."""
    import _thread

    cancel_seen: float | None = None
    with closing(store.connect()) as conn:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                conn.execute("UPDATE jobs SET heartbeat = ? WHERE id = ? AND status = ?",
                             (time.time(), job_id, RUNNING))
                row = conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
            except sqlite3.Error as exc:  # a busy database must not kill the job; the next beat retries
                print(f"[busadv.jobs] heartbeat failed: {exc}", file=sys.stderr, flush=True)
                continue
            if row and row["cancel_requested"]:
                cancel_seen = cancel_seen or time.monotonic()
                if time.monotonic() - cancel_seen > CANCEL_GRACE_SECONDS:
                    print("[busadv.jobs] the job ignored the cancel request; interrupting it",
                          file=sys.stderr, flush=True)
                    _thread.interrupt_main()
                    cancel_seen = time.monotonic()


def run_job(job_id: int, store: JobStore | None = None) -> None:
    """Run one job in this process (the worker's body): claim, run, record the outcome, dispatch.

    Raises JobStateError when the job is neither queued nor claimed for this process.
    """
    store = store or JobStore()
    pid = os.getpid()
    now = time.time()
    with store.transaction() as conn:
        row = store.row_of(conn, job_id)
        cursor = conn.execute(
            "UPDATE jobs SET status = ?, message = 'preparing (loading libraries and data)', "
            "pid = ?, pid_start = ?, host = ?, "
            "started = COALESCE(started, ?), heartbeat = ?, log_path = COALESCE(log_path, ?) "
            "WHERE id = ? AND (status = ? OR (status = ? AND (pid IS NULL OR pid = ?)))",
            (RUNNING, pid, proc_start_time(pid), socket.gethostname(), now, now, str(store.log_path(job_id)),
             int(job_id), QUEUED, RUNNING, pid))
    if not cursor.rowcount:
        raise JobStateError(f"Job {job_id} is {row['status']}"
                            + (f" in worker pid {row['pid']}" if row["status"] == RUNNING else "")
                            + "; only a queued job can be run.")
    job = store.get(job_id)

    handlers, old_level = _attach_log(store, job)
    old_term = None
    if threading.current_thread() is threading.main_thread():
        def on_term(signum: int, frame: Any) -> None:
            raise _Terminated("worker received SIGTERM")
        old_term = signal.signal(signal.SIGTERM, on_term)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(store, job_id, stop), daemon=True, name="busadv-heartbeat")
    beat.start()
    log.info("job %s (%s) started in pid %s with config %s", job_id, job.kind, pid, json.dumps(job.config))
    t0 = time.monotonic()
    outcome: dict[str, Any]
    try:
        with closing(store.connect()) as conn:
            kind = JOB_KINDS.get(job.kind)
            config = dict(job.config)
            if kind.keeps_state:  # saved every epoch; a resumed job goes on from it
                config["state_file"] = str(store.state_path(job))
            result = kind.function()(config, _Reporter(store, job_id, conn))
            result_json = json.dumps(result if result is not None else {}, default=json_default)
        outcome = dict(status=DONE, message="done", error=None, result=result_json)
        log.info("job %s done in %.1f s", job_id, time.monotonic() - t0)
    except Cancelled as exc:
        outcome = dict(status=CANCELLED, message=str(exc) or "cancelled", error=None, result=None)
        log.info("job %s stopped: %s", job_id, exc)
    except KeyboardInterrupt:
        cancelled = store.get(job_id).cancel_requested
        outcome = dict(status=CANCELLED if cancelled else INTERRUPTED,
                       message="cancelled" if cancelled else "interrupted (Ctrl-C)",
                       error=None if cancelled else "Interrupted: the worker got KeyboardInterrupt.", result=None)
        log.info("job %s %s", job_id, outcome["status"])
    except _Terminated:
        outcome = dict(status=INTERRUPTED, message="interrupted: worker terminated",
                       error="Interrupted: the worker process received SIGTERM.", result=None)
        log.warning("job %s interrupted by SIGTERM", job_id)
    except Exception as exc:  # noqa: BLE001 - any failure of the job is recorded, never lost
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        outcome = dict(status=FAILED, message="failed", error=one_line(exc), result=None)
        log.error("job %s failed: %s", job_id, outcome["error"])
    finally:
        stop.set()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    beat.join(timeout=HEARTBEAT_SECONDS + 1)
    _finish(store, job_id, outcome)
    if outcome["status"] == DONE:  # kept otherwise: a failed, cancelled or interrupted job can be resumed
        store.drop_state(job)
    for handler in handlers:
        logging.getLogger().removeHandler(handler)
        handler.close()
    logging.getLogger().setLevel(old_level)
    try:
        store.dispatch()  # a slot is free: start the next queued job even with no page open
    except Exception:
        log.exception("dispatching the next job failed")


def _finish(store: JobStore, job_id: int, outcome: dict[str, Any]) -> None:
    now = time.time()
    # 'done' also overwrites 'interrupted': a worker wrongly reaped (e.g. a suspended laptop) still
    # produced a valid result. Other outcomes only replace 'running'.
    allowed = (RUNNING, INTERRUPTED) if outcome["status"] == DONE else (RUNNING, RUNNING)
    with store.db() as conn:
        conn.execute(
            "UPDATE jobs SET status = ?, message = ?, error = ?, result = ?, finished = ?, eta_seconds = NULL, "
            "progress = CASE WHEN ? THEN 1.0 ELSE progress END WHERE id = ? AND status IN (?, ?)",
            (outcome["status"], outcome["message"], outcome["error"], outcome["result"], now,
             outcome["status"] == DONE, int(job_id), *allowed))


def _attach_log(store: JobStore, job: Job) -> tuple[list[logging.Handler], int]:
    """Send Python logging to the job's log: stderr when dispatch redirected it there, else the file."""
    root = logging.getLogger()
    handlers: list[logging.Handler] = []
    path = Path(job.log_path) if job.log_path else store.log_path(job.id)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    if not _stderr_is(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, encoding="utf-8"))
    if not root.handlers:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    old_level = root.level
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handlers, old_level


def _stderr_is(path: Path) -> bool:
    try:
        a, b = os.fstat(sys.stderr.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


