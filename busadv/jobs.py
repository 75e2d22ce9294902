"""Background jobs: training, evaluation and experiments run in worker processes, state in SQLite.

Why this shape: Streamlit reruns a page script on every interaction and must not train models
itself. A page therefore only *submits* a job; a separate worker process
(``python -m busadv.jobs run ID``) runs it and writes status, progress, logs and the result to a
SQLite file (WAL mode, so pages read while a worker writes). Jobs then survive closed browser tabs,
several tabs at once and restarts of ``streamlit run``; a worker that dies (kill -9, reboot) is
noticed by :meth:`JobStore.reap` and its job marked ``interrupted``.

This module imports no torch: pages import it on every rerun. The job functions
(``busadv.workflows.<kind>_job``) are resolved by name only inside the worker.
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import functools
import importlib
import json
import logging
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from busadv.progress import Cancelled, ProgressEvent, ProgressFn

log = logging.getLogger("busadv.jobs")

JOB_KINDS: tuple[str, ...] = ("train", "evaluate", "experiment")
TEST_KINDS: tuple[str, ...] = ("sleep",)  # only with BUSADV_TEST_JOBS=1: lets tests run without torch
STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled", "interrupted")
ACTIVE_STATUSES: tuple[str, ...] = ("queued", "running")

# The same folder as busadv.settings.PROJECT_ROOT; computed here because busadv.settings imports torch.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

HEARTBEAT_SECONDS = 5.0        # how often a running worker proves it is alive
STALE_SECONDS = 60.0           # a running job without a heartbeat for this long is declared dead
MIN_WRITE_SECONDS = 0.25       # progress rows: at most ~4 writes per second (epoch ends always written)
CANCEL_GRACE_SECONDS = 30.0    # a job that ignores the cancel flag this long gets a KeyboardInterrupt
SCHEMA_VERSION = 1
_BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    epoch INTEGER, epochs INTEGER, loss REAL, accuracy REAL, eta_seconds REAL,
    result TEXT, error TEXT,
    pid INTEGER, pid_start TEXT, host TEXT, gpu TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    log_path TEXT,
    created REAL NOT NULL, started REAL, finished REAL, heartbeat REAL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, id);
CREATE TABLE IF NOT EXISTS progress (
    job_id INTEGER NOT NULL,
    time REAL NOT NULL,
    fraction REAL NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    epoch INTEGER, epochs INTEGER, loss REAL, accuracy REAL, eta_seconds REAL
);
CREATE INDEX IF NOT EXISTS progress_job ON progress (job_id, time);
"""


class JobStoreError(RuntimeError):
    """The job database cannot be used (not SQLite, corrupt, newer schema, unwritable)."""


class JobStateError(RuntimeError):
    """A job is not in a state that allows the request (e.g. running a job that already finished)."""


class _Terminated(BaseException):
    """The worker got SIGTERM (shutdown, or the reaper stopping a hung worker)."""


@dataclass
class Job:
    """One row of the job table, as pages and the CLI see it."""

    id: int
    kind: str
    status: str
    config: dict
    progress: float
    message: str
    epoch: int | None
    epochs: int | None
    loss: float | None
    accuracy: float | None
    eta_seconds: float | None
    result: dict | None
    error: str | None
    pid: int | None
    created: float
    started: float | None
    finished: float | None
    heartbeat: float | None
    cancel_requested: bool = False
    log_path: str | None = None
    gpu: str | None = None

    @property
    def active(self) -> bool:
        """Queued or running: pages poll only while some job is active."""
        return self.status in ACTIVE_STATUSES

    @property
    def elapsed(self) -> float | None:
        """Seconds the job has run (so far, or in total once finished)."""
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started


# ----------------------------------------------------------------------------------------------
# Concurrency limit and GPUs


def _visible_gpus() -> list[str]:
    """GPU ids a worker may be pinned to (values for CUDA_VISIBLE_DEVICES), found without torch."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if "torch" in sys.modules:  # already paid for: ask it (it honours CUDA_VISIBLE_DEVICES)
        try:
            count = sys.modules["torch"].cuda.device_count()
        except Exception:  # noqa: BLE001 - a broken CUDA setup means "no GPU", not a crash
            count = 0
    else:
        count = _gpu_count_without_torch()
    if env is not None:
        ids = [part.strip() for part in env.split(",") if part.strip()]
        if "-1" in ids:
            ids = ids[: ids.index("-1")]
        return ids[:count] if count else []
    return [str(i) for i in range(count)]


@functools.lru_cache(maxsize=1)
def _gpu_count_without_torch() -> int:
    """NVIDIA GPUs in this machine: /proc/driver/nvidia, else `nvidia-smi -L`; 0 when neither."""
    proc = Path("/proc/driver/nvidia/gpus")
    try:
        count = sum(1 for _ in proc.iterdir())
        if count:
            return count
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
            return sum(1 for line in out.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            pass
    return 0


def max_concurrent() -> int:
    """How many jobs may run at once: $BUSADV_MAX_JOBS, else one per GPU, else half the CPU cores.

    Why: two CPU trainings on a 2-core machine only slow each other down; on GPUs each worker gets
    its own card.
    """
    raw = os.environ.get("BUSADV_MAX_JOBS", "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"BUSADV_MAX_JOBS must be a whole number >= 1, not {raw!r}") from None
        if value < 1:
            raise ValueError(f"BUSADV_MAX_JOBS must be a whole number >= 1, not {raw!r}")
        return value
    gpus = _visible_gpus()
    if gpus:
        return len(gpus)
    return max(1, (os.cpu_count() or 1) // 2)


# ----------------------------------------------------------------------------------------------
# Processes


@functools.lru_cache(maxsize=1)
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_start_time(pid: int) -> str | None:
    """When a process started: "<boot id>:<clock ticks since boot>" (/proc/<pid>/stat field 22).

    Why: pids are reused (also after a reboot); a pid plus its start time names one process for
    good. None where /proc is missing (not Linux) or the process is gone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return f"{_boot_id()}:{fields[19]}" if len(fields) > 19 else None


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[0]


def _pid_alive(pid: int, start: str | None) -> bool:
    """True while `pid` is the very process that was recorded (not dead, a zombie, or a reuse)."""
    if pid <= 0:
        return False
    if Path("/proc/self/stat").exists():
        state = _proc_state(pid)
        if state is None or state in ("Z", "X", "x"):
            return False
        return start is None or _proc_start_time(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Popen objects of workers this process started: polled so that finished workers do not linger as
# zombies in a long-lived dispatcher (the Streamlit server).
_CHILDREN: dict[int, subprocess.Popen] = {}
_CHILDREN_LOCK = threading.Lock()


def _collect_children() -> None:
    with _CHILDREN_LOCK:
        for pid, popen in list(_CHILDREN.items()):
            if popen.poll() is not None:
                del _CHILDREN[pid]


# ----------------------------------------------------------------------------------------------
# JSON


def _json_default(value: Any) -> Any:
    """Results hold numpy scalars, paths, tuples...: store what JSON can say, text otherwise."""
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(value)
    return str(value)


def _finite(value: Any) -> float | None:
    """Floats for the progress columns; NaN/inf and non-numbers become None."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _one_line(exc: BaseException, limit: int = 500) -> str:
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------
# The store


def default_db_path() -> Path:
    """busadv.settings.home() / "jobs.sqlite" ($BUSADV_HOME moves it)."""
    from busadv import settings  # imported late: settings imports torch

    return settings.home() / "jobs.sqlite"


class JobStore:
    """The job table in one SQLite file; every page, tab, CLI and worker opens its own JobStore.

    Each call opens a short-lived connection, so one JobStore may be shared between threads
    (e.g. cached with ``st.cache_resource``).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.path = self.path.expanduser().resolve()
        self.log_dir = self.path.parent / "job-logs"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise JobStoreError(
                        f"Job database {self.path} has schema version {version}, newer than this "
                        f"busadv ({SCHEMA_VERSION}); update busadv or point BUSADV_HOME elsewhere.")
                if version < SCHEMA_VERSION:
                    conn.execute("BEGIN IMMEDIATE")  # two first-time openers: one creates, one waits
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    conn.execute("COMMIT")
                self._check_tables(conn)
        except JobStoreError:
            raise
        except (sqlite3.DatabaseError, OSError) as exc:
            raise JobStoreError(
                f"Cannot use {self.path} as the busadv job database ({exc}). If it is not a job "
                f"database, or is damaged, move it away (or delete it) and busadv creates a new one; "
                f"or set BUSADV_HOME to another folder.") from exc

    def _check_tables(self, conn: sqlite3.Connection) -> None:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
        missing = {"id", "kind", "status", "config", "cancel_requested", "heartbeat"} - columns
        if missing:
            raise JobStoreError(
                f"{self.path} has a 'jobs' table that is not busadv's (missing {sorted(missing)}); "
                f"move the file away or set BUSADV_HOME to another folder.")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; no fsync per progress row
        return conn

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: one writer at a time across processes (claims, counts)."""
        with self._db() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- reading ---------------------------------------------------------------------------------

    @staticmethod
    def _job(row: sqlite3.Row) -> Job:
        return Job(
            id=row["id"], kind=row["kind"], status=row["status"], config=json.loads(row["config"]),
            progress=row["progress"], message=row["message"], epoch=row["epoch"], epochs=row["epochs"],
            loss=row["loss"], accuracy=row["accuracy"], eta_seconds=row["eta_seconds"],
            result=json.loads(row["result"]) if row["result"] is not None else None,
            error=row["error"], pid=row["pid"], created=row["created"], started=row["started"],
            finished=row["finished"], heartbeat=row["heartbeat"],
            cancel_requested=bool(row["cancel_requested"]), log_path=row["log_path"], gpu=row["gpu"])

    def _row(self, conn: sqlite3.Connection, job_id: int) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
        if row is None:
            raise KeyError(f"No job with id {job_id} in {self.path}")
        return row

    def get(self, job_id: int) -> Job:
        """One job; KeyError when the id is unknown (e.g. a stale link in another tab)."""
        with self._db() as conn:
            return self._job(self._row(conn, job_id))

    def list(self, limit: int = 100) -> list[Job]:
        """The newest `limit` jobs, newest first."""
        with self._db() as conn:
            rows = conn.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (int(limit),)).fetchall()
        return [self._job(row) for row in rows]

    def any_active(self) -> bool:
        """Whether some job is queued or running: pages keep polling only while this is true."""
        with self._db() as conn:
            row = conn.execute("SELECT 1 FROM jobs WHERE status IN ('queued', 'running') LIMIT 1").fetchone()
        return row is not None

    def history(self, job_id: int) -> list[dict]:
        """The job's progress rows, oldest first (loss/accuracy curves; epoch ends carry accuracy)."""
        with self._db() as conn:
            self._row(conn, job_id)
            rows = conn.execute("SELECT * FROM progress WHERE job_id = ? ORDER BY time, rowid",
                                (int(job_id),)).fetchall()
        return [{key: row[key] for key in row.keys() if key != "job_id"} for row in rows]

    def log_path(self, job_id: int) -> Path:
        """Where the worker of this job writes its stdout, stderr and logging output."""
        return self.log_dir / f"job-{int(job_id)}.log"

    def logs(self, job_id: int, tail: int = 200) -> list[str]:
        """The last `tail` lines of the job's log (prints, logging, tracebacks)."""
        with self._db() as conn:
            row = self._row(conn, job_id)
        path = Path(row["log_path"]) if row["log_path"] else self.log_path(job_id)
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                return [line.rstrip("\n") for line in collections.deque(handle, maxlen=max(0, int(tail)))]
        except FileNotFoundError:
            return []

    def _append_log(self, job_id: int, text: str) -> None:
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log_path(job_id), "a", encoding="utf-8") as handle:
                handle.write(f"[busadv.jobs {_dt.datetime.now():%Y-%m-%d %H:%M:%S}] {text}\n")
        except OSError:
            pass

    # -- writing ---------------------------------------------------------------------------------

    def submit(self, kind: str, config: dict, start: bool = True) -> int:
        """Queue a job (and, with `start`, start it now if a slot is free); returns its id."""
        kinds = allowed_kinds()
        if kind not in kinds:
            raise ValueError(f"Unknown job kind {kind!r}; valid kinds: {', '.join(kinds)}")
        if not isinstance(config, dict):
            raise TypeError(f"A job config must be a dict, not {type(config).__name__}")
        try:
            config_json = json.dumps(config, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"A job config must be plain JSON (numbers, strings, lists, dicts): {exc}") from exc
        with self._db() as conn:
            cursor = conn.execute(
                "INSERT INTO jobs (kind, status, config, message, created) VALUES (?, 'queued', ?, 'queued', ?)",
                (kind, config_json, time.time()))
            job_id = int(cursor.lastrowid)
        if start:
            self.dispatch()
        return job_id

    def cancel(self, job_id: int) -> None:
        """Stop a job: queued ones at once; running ones at their next progress report.

        Cancelling a job that already finished does nothing (two tabs may both click).
        """
        now = time.time()
        with self._transaction() as conn:
            row = self._row(conn, job_id)
            if row["status"] == "queued":
                conn.execute("UPDATE jobs SET status = 'cancelled', message = 'cancelled before it started', "
                             "finished = ?, cancel_requested = 1 WHERE id = ?", (now, row["id"]))
                return
            if row["status"] != "running":
                return
            conn.execute("UPDATE jobs SET cancel_requested = 1, message = 'cancelling...' WHERE id = ?",
                         (row["id"],))
        self.reap()  # a dead worker will never see the flag: reap() marks its job cancelled

    def reap(self) -> int:
        """Mark running jobs whose worker died (or stopped beating) 'interrupted'; returns how many.

        A worker counts as dead when its pid is gone, a zombie, or now a different process (start
        time differs), or when its heartbeat is older than STALE_SECONDS (e.g. on another host).
        """
        _collect_children()
        now = time.time()
        host = socket.gethostname()
        with self._db() as conn:
            rows = conn.execute("SELECT * FROM jobs WHERE status = 'running'").fetchall()
        reaped = 0
        for row in rows:
            pid, start = row["pid"], row["pid_start"]
            same_host = row["host"] in (None, host)
            beat = row["heartbeat"] or row["started"] or row["created"]
            if pid is not None and same_host and not _pid_alive(pid, start):
                why = f"the worker process (pid {pid}) died without finishing (killed, crashed or a reboot)"
                where, args = "pid = ?", (pid,)
            elif now - beat > STALE_SECONDS:
                why = (f"the worker {f'(pid {pid}) ' if pid else ''}sent no heartbeat for "
                       f"{now - beat:.0f} s; it died or hung")
                where, args = "COALESCE(heartbeat, started, created) < ?", (now - STALE_SECONDS,)
            else:
                continue
            status = "cancelled" if row["cancel_requested"] else "interrupted"
            with self._db() as conn:
                cursor = conn.execute(
                    f"UPDATE jobs SET status = ?, error = ?, message = ?, finished = ?, eta_seconds = NULL "
                    f"WHERE id = ? AND status = 'running' AND {where}",
                    (status, f"Interrupted: {why}." if status == "interrupted" else None,
                     "cancelled (worker gone)" if status == "cancelled" else "interrupted: worker died",
                     now, row["id"], *args))
            if cursor.rowcount:
                reaped += 1
                self._append_log(row["id"], f"marked {status}: {why}")
                if pid is not None and same_host and _pid_alive(pid, start) and start is not None:
                    _terminate(pid)  # hung but alive: free its memory and GPU
        return reaped

    def dispatch(self) -> list[int]:
        """Reap dead workers, then start queued jobs, oldest first, while slots are free."""
        self.reap()
        limit = max_concurrent()
        gpus = _visible_gpus()
        started: list[int] = []
        while True:
            with self._transaction() as conn:  # count and claim under one write lock
                running = conn.execute("SELECT gpu FROM jobs WHERE status = 'running'").fetchall()
                if len(running) >= limit:
                    break
                row = conn.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1").fetchone()
                if row is None:
                    break
                job_id = row["id"]
                gpu = None
                if gpus:
                    in_use = collections.Counter(r["gpu"] for r in running)
                    gpu = min(gpus, key=lambda g: (in_use[g], gpus.index(g)))
                now = time.time()
                conn.execute(
                    "UPDATE jobs SET status = 'running', message = 'starting worker', started = ?, heartbeat = ?, "
                    "pid = NULL, pid_start = NULL, host = ?, gpu = ?, log_path = ? WHERE id = ? AND status = 'queued'",
                    (now, now, socket.gethostname(), gpu, str(self.log_path(job_id)), job_id))
            try:
                self._spawn(job_id, gpu)
            except Exception as exc:  # noqa: BLE001 - the job fails, the page keeps working
                with self._db() as conn:
                    conn.execute("UPDATE jobs SET status = 'failed', error = ?, message = 'could not start', "
                                 "finished = ? WHERE id = ? AND status = 'running'",
                                 (f"Could not start the worker process: {_one_line(exc)}", time.time(), job_id))
                continue
            started.append(job_id)
        return started

    def _spawn(self, job_id: int, gpu: str | None) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        with open(self.log_path(job_id), "ab") as log_file:
            popen = subprocess.Popen(
                [sys.executable, "-m", "busadv.jobs", "run", str(job_id), "--db", str(self.path)],
                cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True)
        with _CHILDREN_LOCK:
            _CHILDREN[popen.pid] = popen
        start = _proc_start_time(popen.pid)
        with self._db() as conn:
            conn.execute("UPDATE jobs SET pid = ?, pid_start = ? WHERE id = ? AND (pid IS NULL OR pid = ?)",
                         (popen.pid, start, job_id, popen.pid))


def _terminate(pid: int) -> None:
    """SIGTERM a worker and its process group (it leads its own session when dispatch started it)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    except OSError:
        pass


# ----------------------------------------------------------------------------------------------
# Job functions


def allowed_kinds() -> tuple[str, ...]:
    """JOB_KINDS, plus the test kind 'sleep' when BUSADV_TEST_JOBS=1."""
    if os.environ.get("BUSADV_TEST_JOBS") == "1":
        return JOB_KINDS + TEST_KINDS
    return JOB_KINDS


def sleep_job(config: dict, progress: ProgressFn) -> dict:
    """Test job: `steps` steps of `seconds` each, `epochs` epochs; `fail` raises half-way."""
    steps = int(config.get("steps", 5))
    seconds = float(config.get("seconds", 0.01))
    epochs = max(1, int(config.get("epochs", steps or 1)))
    fail = bool(config.get("fail", False))
    print(f"sleep job: {steps} steps of {seconds} s", flush=True)
    log.info("sleep job starting")
    for step in range(steps):
        if fail and step >= steps // 2:
            raise RuntimeError(f"sleep job failed on purpose at step {step + 1}")
        time.sleep(seconds)
        epoch = step * epochs // max(steps, 1) + 1
        epoch_end = (step + 1) * epochs // max(steps, 1) >= epoch
        fraction = (step + 1) / steps
        progress(ProgressEvent(fraction, f"step {step + 1}/{steps}", epoch=epoch, epochs=epochs,
                               loss=1.0 / (step + 1)))
        if epoch_end:
            progress(ProgressEvent(fraction, f"epoch {epoch}/{epochs} done", epoch=epoch, epochs=epochs,
                                   loss=1.0 / (step + 1), accuracy=fraction))
    if fail:
        raise RuntimeError("sleep job failed on purpose")
    return {"steps": steps, "seconds": steps * seconds}


def job_function(kind: str) -> Callable[[dict, ProgressFn], dict]:
    """`busadv.workflows.<kind>_job`, imported only when a worker needs it (workflows imports torch)."""
    if kind not in allowed_kinds():
        raise ValueError(f"Unknown job kind {kind!r}; valid kinds: {', '.join(allowed_kinds())}")
    if kind in TEST_KINDS:
        return sleep_job
    module = importlib.import_module("busadv.workflows")
    try:
        return getattr(module, f"{kind}_job")
    except AttributeError:
        raise RuntimeError(f"busadv.workflows has no function {kind}_job for job kind {kind!r}") from None


# ----------------------------------------------------------------------------------------------
# The worker


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
        if row["status"] != "running":
            raise Cancelled(f"job is now {row['status']}; stopping")
        fraction = min(1.0, max(0.0, _finite(event.fraction) or 0.0))
        now = time.monotonic()
        boundary = (event.epoch != self.last_epoch or event.accuracy is not None or fraction >= 1.0)
        if not boundary and now - self.last_write < MIN_WRITE_SECONDS:
            return
        eta = _finite(event.eta_seconds)
        if eta is None and fraction > 0.01:
            eta = (now - self.started) * (1 - fraction) / fraction
        values = (fraction, str(event.message or ""), event.epoch, event.epochs, _finite(event.loss),
                  _finite(event.accuracy), eta)
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
    with closing(store._connect()) as conn:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                conn.execute("UPDATE jobs SET heartbeat = ? WHERE id = ? AND status = 'running'",
                             (time.time(), job_id))
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
    with store._transaction() as conn:
        row = store._row(conn, job_id)
        cursor = conn.execute(
            "UPDATE jobs SET status = 'running', message = 'preparing (loading libraries and data)', "
            "pid = ?, pid_start = ?, host = ?, "
            "started = COALESCE(started, ?), heartbeat = ?, log_path = COALESCE(log_path, ?) "
            "WHERE id = ? AND (status = 'queued' OR (status = 'running' AND (pid IS NULL OR pid = ?)))",
            (pid, _proc_start_time(pid), socket.gethostname(), now, now, str(store.log_path(job_id)),
             int(job_id), pid))
    if not cursor.rowcount:
        raise JobStateError(f"Job {job_id} is {row['status']}"
                            + (f" in worker pid {row['pid']}" if row["status"] == "running" else "")
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
        with closing(store._connect()) as conn:
            function = job_function(job.kind)
            result = function(dict(job.config), _Reporter(store, job_id, conn))
            result_json = json.dumps(result if result is not None else {}, default=_json_default)
        outcome = dict(status="done", message="done", error=None, result=result_json)
        log.info("job %s done in %.1f s", job_id, time.monotonic() - t0)
    except Cancelled as exc:
        outcome = dict(status="cancelled", message=str(exc) or "cancelled", error=None, result=None)
        log.info("job %s stopped: %s", job_id, exc)
    except KeyboardInterrupt:
        cancelled = store.get(job_id).cancel_requested
        outcome = dict(status="cancelled" if cancelled else "interrupted",
                       message="cancelled" if cancelled else "interrupted (Ctrl-C)",
                       error=None if cancelled else "Interrupted: the worker got KeyboardInterrupt.", result=None)
        log.info("job %s %s", job_id, outcome["status"])
    except _Terminated:
        outcome = dict(status="interrupted", message="interrupted: worker terminated",
                       error="Interrupted: the worker process received SIGTERM.", result=None)
        log.warning("job %s interrupted by SIGTERM", job_id)
    except Exception as exc:  # noqa: BLE001 - any failure of the job is recorded, never lost
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        outcome = dict(status="failed", message="failed", error=_one_line(exc), result=None)
        log.error("job %s failed: %s", job_id, outcome["error"])
    finally:
        stop.set()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    beat.join(timeout=HEARTBEAT_SECONDS + 1)
    _finish(store, job_id, outcome)
    for handler in handlers:
        logging.getLogger().removeHandler(handler)
        handler.close()
    logging.getLogger().setLevel(old_level)
    try:
        store.dispatch()  # a slot is free: start the next queued job even with no page open
    except Exception:  # noqa: BLE001
        log.exception("dispatching the next job failed")


def _finish(store: JobStore, job_id: int, outcome: dict[str, Any]) -> None:
    now = time.time()
    # 'done' also overwrites 'interrupted': a worker wrongly reaped (e.g. a suspended laptop) still
    # produced a valid result. Other outcomes only replace 'running'.
    allowed = "('running', 'interrupted')" if outcome["status"] == "done" else "('running')"
    with store._db() as conn:
        conn.execute(
            f"UPDATE jobs SET status = ?, message = ?, error = ?, result = ?, finished = ?, eta_seconds = NULL, "
            f"progress = CASE WHEN ? = 'done' THEN 1.0 ELSE progress END WHERE id = ? AND status IN {allowed}",
            (outcome["status"], outcome["message"], outcome["error"], outcome["result"], now,
             outcome["status"], int(job_id)))


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


# ----------------------------------------------------------------------------------------------
# CLI


def _format_table(jobs: list[Job]) -> str:
    lines = [f"{'id':>5}  {'kind':<10}  {'status':<11}  {'progress':>8}  {'epoch':>7}  {'created':<16}  message"]
    for job in jobs:
        epoch = f"{job.epoch}/{job.epochs}" if job.epoch is not None and job.epochs else ""
        created = _dt.datetime.fromtimestamp(job.created).strftime("%Y-%m-%d %H:%M")
        message = job.error if job.status in ("failed", "interrupted") and job.error else job.message
        lines.append(f"{job.id:>5}  {job.kind:<10}  {job.status:<11}  {job.progress:>7.0%}  {epoch:>7}  "
                     f"{created:<16}  {message}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m busadv.jobs", description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="job database (default: $BUSADV_HOME/jobs.sqlite)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="show the newest jobs")
    p_list.add_argument("--limit", type=int, default=30)
    p_run = sub.add_parser("run", help="run one queued job in this process (what workers do)")
    p_run.add_argument("job_id", type=int)
    p_cancel = sub.add_parser("cancel", help="cancel a queued or running job")
    p_cancel.add_argument("job_id", type=int)
    p_logs = sub.add_parser("logs", help="print the end of a job's log")
    p_logs.add_argument("job_id", type=int)
    p_logs.add_argument("--tail", type=int, default=200)
    for p in (p_list, p_run, p_cancel, p_logs):  # --db accepted before or after the subcommand
        p.add_argument("--db", dest="db_sub", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    db = args.db_sub or args.db
    try:
        store = JobStore(db)
        if args.command == "list":
            store.reap()
            print(_format_table(store.list(args.limit)))
        elif args.command == "run":
            run_job(args.job_id, store)
            job = store.get(args.job_id)
            print(f"job {job.id}: {job.status}" + (f" - {job.error}" if job.error else ""), file=sys.stderr)
            return 0 if job.status == "done" else 1
        elif args.command == "cancel":
            store.cancel(args.job_id)
            print(f"job {args.job_id}: {store.get(args.job_id).status}")
        elif args.command == "logs":
            print("\n".join(store.logs(args.job_id, args.tail)))
    except (JobStoreError, JobStateError, KeyError, ValueError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy, so that there is one _CHILDREN registry and
    # one set of exception classes however the worker's code reaches busadv.jobs.
    from busadv.jobs import main as _main

    sys.exit(_main())
