"""The job table in one SQLite file (WAL mode): pages, tabs, the CLI and workers each open their own store.

Why SQLite: Streamlit reruns a page on every interaction and must not train models itself, so pages
only submit jobs; worker processes run them and write status, progress, logs and results here. Jobs
then survive closed tabs, several tabs and restarts of the server. A worker that dies is noticed by
`reap` (pid + process start time + heartbeat) and its job marked interrupted.

This module imports no torch.
"""

from __future__ import annotations

import collections
import datetime as _dt
import errno
import glob
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any

from busadv.jobs.job import Job, JobStateError, JobStoreError, SavedEpoch, one_line
from busadv.jobs.kinds import JOB_KINDS
from busadv.jobs.processes import (
    collect_children,
    max_concurrent,
    terminate,
    track_child,
    visible_gpus,
)
from busadv.jobs.status import JobStatus
from busadv.pids import pid_alive, proc_start_time
from busadv.settings import PROJECT_ROOT, home

HEARTBEAT_SECONDS = 5.0        # how often a running worker proves it is alive
STALE_SECONDS = 60.0           # a running job without a heartbeat for this long is declared dead
SCHEMA_VERSION = 1
_BUSY_TIMEOUT_MS = 30_000
QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = (s.value for s in JobStatus)
# Return types named here: inside JobStore, `list` is its method.
ProgressRows = list[dict[str, Any]]
LogLines = list[str]
JobIds = list[int]

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


def default_db_path() -> Path:
    """home() / "jobs.sqlite" ($BUSADV_HOME moves it)."""
    return home() / "jobs.sqlite"


def _disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL or the system's ENOSPC/EDQUOT: no room, the database itself is fine."""
    return ("disk is full" in str(exc) or getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL"
            or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT))


def _full_message(path: Path) -> str:
    return (f"The disk that holds the job database {path} is full: free some space there (old job logs in "
            f"{path.parent / 'job-logs'}, old checkpoints) or set BUSADV_HOME to a folder on another disk. The "
            f"database itself is fine.")


class JobStore:
    """The job table in one SQLite file; every page, tab, CLI and worker opens its own JobStore.

    Each call opens a short-lived connection, so one JobStore may be shared between threads
    (e.g. cached with ``st.cache_resource``).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.path = self.path.expanduser().resolve()
        self.log_dir = self.path.parent / "job-logs"
        existed = self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self.connect()) as conn:
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
            if not existed:  # never leave a 0-byte file that the next start would call damaged
                for leftover in (self.path, self.path.with_name(self.path.name + "-wal"),
                                 self.path.with_name(self.path.name + "-shm")):
                    with suppress(OSError):
                        if leftover.stat().st_size == 0 or leftover != self.path:
                            leftover.unlink()
            if _disk_full(exc):
                raise JobStoreError(_full_message(self.path)) from None
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

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; no fsync per progress row
        return conn

    def _unusable(self, exc: sqlite3.Error) -> JobStoreError:
        if _disk_full(exc):
            return JobStoreError(_full_message(self.path))
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return JobStoreError(f"The job database {self.path} stayed locked by another process for "
                                 f"{_BUSY_TIMEOUT_MS // 1000} s; try again.")
        return JobStoreError(
            f"The job database {self.path} is damaged ({exc}). Jobs cannot be listed or started until it is "
            f"moved away (busadv then creates a new one); checkpoints and results are not affected.")

    @contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection; any SQLite failure becomes one clear JobStoreError."""
        try:
            conn = self.connect()
        except sqlite3.Error as exc:
            raise self._unusable(exc) from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            raise self._unusable(exc) from exc
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: one writer at a time across processes (claims, counts)."""
        with self.db() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with suppress(sqlite3.Error):  # the original error says more
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- reading ---------------------------------------------------------------------------------

    @staticmethod
    def _job(row: sqlite3.Row) -> Job:
        return Job(
            id=row["id"], kind=row["kind"], status=JobStatus(row["status"]), config=json.loads(row["config"]),
            progress=row["progress"], message=row["message"], epoch=row["epoch"], epochs=row["epochs"],
            loss=row["loss"], accuracy=row["accuracy"], eta_seconds=row["eta_seconds"],
            result=json.loads(row["result"]) if row["result"] is not None else None,
            error=row["error"], pid=row["pid"], created=row["created"], started=row["started"],
            finished=row["finished"], heartbeat=row["heartbeat"],
            cancel_requested=bool(row["cancel_requested"]), log_path=row["log_path"], gpu=row["gpu"])

    def row_of(self, conn: sqlite3.Connection, job_id: int) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (int(job_id),)).fetchone()
        if row is None:
            raise KeyError(f"No job with id {job_id} in {self.path}")
        return row

    def get(self, job_id: int) -> Job:
        """One job; KeyError when the id is unknown (e.g. a stale link in another tab)."""
        with self.db() as conn:
            return self._job(self.row_of(conn, job_id))

    def list(self, limit: int = 100) -> list[Job]:
        """The newest `limit` jobs, newest first."""
        with self.db() as conn:
            rows = conn.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (int(limit),)).fetchall()
        return [self._job(row) for row in rows]

    def any_active(self) -> bool:
        """Whether some job is queued or running: pages keep polling only while this is true."""
        with self.db() as conn:
            row = conn.execute("SELECT 1 FROM jobs WHERE status IN (?, ?) LIMIT 1", (QUEUED, RUNNING)).fetchone()
        return row is not None

    def history(self, job_id: int) -> ProgressRows:
        """The job's progress rows, oldest first (loss/accuracy curves; epoch ends carry accuracy)."""
        with self.db() as conn:
            self.row_of(conn, job_id)
            rows = conn.execute("SELECT * FROM progress WHERE job_id = ? ORDER BY time, rowid",
                                (int(job_id),)).fetchall()
        return [{key: row[key] for key in row.keys() if key != "job_id"} for row in rows]  # noqa: SIM118

    def log_path(self, job_id: int) -> Path:
        """Where the worker of this job writes its stdout, stderr and logging output."""
        return self.log_dir / f"job-{int(job_id)}.log"

    def logs(self, job_id: int, tail: int = 200) -> LogLines:
        """The last `tail` lines of the job's log (prints, logging, tracebacks)."""
        with self.db() as conn:
            row = self.row_of(conn, job_id)
        path = Path(row["log_path"]) if row["log_path"] else self.log_path(job_id)
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                return [line.rstrip("\n") for line in collections.deque(handle, maxlen=max(0, int(tail)))]
        except FileNotFoundError:
            return []

    def state_path(self, job: Job) -> Path:
        """Where a job of a kind that keeps state (JobKind.keeps_state) saves it after every epoch.

        Named by id and creation time: a database moved away and recreated numbers its jobs from 1
        again, and a new job 1 must never continue an old job 1's training.
        """
        return self.path.parent / "job-state" / f"job-{int(job.id)}-{int(job.created * 1000)}.pt"

    def saved_epoch(self, job: Job) -> SavedEpoch | None:
        """How far the job's saved training state goes; None when none is kept. A refit run that reached its
        second pass resumes there (busadv.training.loop.refit_state_file names its state `<state>.refit`)."""
        path = self.state_path(job)
        for state, refit in ((path.with_name(path.name + ".refit"), True), (path, False)):
            try:
                info = json.loads(state.with_name(state.name + ".json").read_text())  # busadv.training.state
                epoch, epochs = int(info["epoch"]), int(info["epochs"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if 0 < epoch <= epochs and state.exists():
                return SavedEpoch(epoch, epochs, refit)
        return None

    def drop_state(self, job: Job) -> None:
        """Delete a finished job's training state (its checkpoint holds the model now): the state file and every
        file named after it (its sidecar, a refit run's second pass and its sidecar)."""
        path = self.state_path(job)
        for file in [path, *path.parent.glob(glob.escape(path.name) + "?*")]:
            with suppress(OSError):
                file.unlink(missing_ok=True)

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
        kind = JOB_KINDS.coerce(kind)
        if not isinstance(config, dict):
            raise TypeError(f"A job config must be a dict, not {type(config).__name__}")
        try:
            config_json = json.dumps(config, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"A job config must be plain JSON (numbers, strings, lists, dicts): {exc}") from exc
        max_concurrent()  # a bad BUSADV_MAX_JOBS is refused here: a queued job would never start
        with self.db() as conn:
            cursor = conn.execute(
                "INSERT INTO jobs (kind, status, config, message, created) VALUES (?, ?, ?, 'queued', ?)",
                (kind, QUEUED, config_json, time.time()))
            job_id = int(cursor.lastrowid or 0)
        if start:
            self.dispatch()
        return job_id

    def cancel(self, job_id: int) -> None:
        """Stop a job: queued ones at once; running ones at their next progress report.

        Cancelling a job that already finished does nothing (two tabs may both click).
        """
        now = time.time()
        with self.transaction() as conn:
            row = self.row_of(conn, job_id)
            if row["status"] == QUEUED:
                conn.execute("UPDATE jobs SET status = ?, message = 'cancelled before it started', "
                             "finished = ?, cancel_requested = 1 WHERE id = ?", (CANCELLED, now, row["id"]))
                return
            if row["status"] != RUNNING:
                return
            conn.execute("UPDATE jobs SET cancel_requested = 1, message = 'cancelling...' WHERE id = ?",
                         (row["id"],))
        self.reap()  # a dead worker will never see the flag: reap() marks its job cancelled

    def resume(self, job_id: int) -> Job:
        """Queue an interrupted, failed or cancelled job again; it goes on from its saved state.

        A training job continues after its last finished epoch (its state is saved after every
        epoch); other jobs, and a training job stopped before its first epoch ended, run again from
        the start. Its progress rows and log are kept. Returns the job as queued (a worker may have
        started it since). JobStateError for a job that is queued, running or done.
        """
        with self.transaction() as conn:
            row = self.row_of(conn, job_id)
            if row["status"] not in (INTERRUPTED, FAILED, CANCELLED):
                raise JobStateError(f"Job {job_id} is {row['status']}; only an interrupted, failed or cancelled "
                                    f"job can be resumed.")
            saved = self.saved_epoch(self._job(row))
            message = (f"queued to resume after {saved}" if saved
                       else "queued to run again from the start")
            conn.execute("UPDATE jobs SET status = ?, message = ?, error = NULL, result = NULL, finished = NULL, "
                         "eta_seconds = NULL, cancel_requested = 0, pid = NULL, pid_start = NULL, host = NULL, "
                         "gpu = NULL WHERE id = ?", (QUEUED, message, row["id"]))
        self._append_log(job_id, f"resumed by the user: {message}")
        queued = self.get(job_id)
        self.dispatch()
        return queued

    def reap(self) -> int:
        """Mark running jobs whose worker died (or stopped beating) 'interrupted'; returns how many.

        A worker counts as dead when its pid is gone, a zombie, or now a different process (start
        time differs), or when its heartbeat is older than STALE_SECONDS (e.g. on another host).
        """
        collect_children()
        now = time.time()
        host = socket.gethostname()
        with self.db() as conn:
            rows = conn.execute("SELECT * FROM jobs WHERE status = ?", (RUNNING,)).fetchall()
        reaped = 0
        for row in rows:
            pid, start = row["pid"], row["pid_start"]
            same_host = row["host"] in (None, host)
            beat = row["heartbeat"] or row["started"] or row["created"]
            if pid is not None and same_host and not pid_alive(pid, start):
                why = f"the worker process (pid {pid}) died without finishing (killed, crashed or a reboot)"
                where, args = "pid = ?", (pid,)
            elif now - beat > STALE_SECONDS:
                why = (f"the worker {f'(pid {pid}) ' if pid else ''}sent no heartbeat for "
                       f"{now - beat:.0f} s; it died or hung")
                where, args = "COALESCE(heartbeat, started, created) < ?", (now - STALE_SECONDS,)
            else:
                continue
            status = CANCELLED if row["cancel_requested"] else INTERRUPTED
            with self.db() as conn:
                cursor = conn.execute(
                    f"UPDATE jobs SET status = ?, error = ?, message = ?, finished = ?, eta_seconds = NULL "
                    f"WHERE id = ? AND status = ? AND {where}",
                    (status, f"Interrupted: {why}." if status == INTERRUPTED else None,
                     "cancelled (worker gone)" if status == CANCELLED else "interrupted: worker died",
                     now, row["id"], RUNNING, *args))
            if cursor.rowcount:
                reaped += 1
                self._append_log(row["id"], f"marked {status}: {why}")
                if pid is not None and same_host and pid_alive(pid, start) and start is not None:
                    terminate(pid)  # hung but alive: free its memory and GPU
        return reaped

    def dispatch(self) -> JobIds:
        """Reap dead workers, then start queued jobs, oldest first, while slots are free."""
        self.reap()
        limit = max_concurrent()
        gpus = visible_gpus()
        started: list[int] = []
        while True:
            with self.transaction() as conn:  # count and claim under one write lock
                running = conn.execute("SELECT gpu FROM jobs WHERE status = ?", (RUNNING,)).fetchall()
                if len(running) >= limit:
                    break
                row = conn.execute("SELECT id FROM jobs WHERE status = ? ORDER BY id LIMIT 1", (QUEUED,)).fetchone()
                if row is None:
                    break
                job_id = row["id"]
                gpu = None
                if gpus:
                    in_use = collections.Counter(r["gpu"] for r in running)
                    gpu = min(gpus, key=lambda g: (in_use[g], gpus.index(g)))
                now = time.time()
                conn.execute(
                    "UPDATE jobs SET status = ?, message = 'starting worker', started = ?, heartbeat = ?, "
                    "pid = NULL, pid_start = NULL, host = ?, gpu = ?, log_path = ? WHERE id = ? AND status = ?",
                    (RUNNING, now, now, socket.gethostname(), gpu, str(self.log_path(job_id)), job_id, QUEUED))
            try:
                self._spawn(job_id, gpu)
            except Exception as exc:  # noqa: BLE001 - the job fails, the page keeps working
                with self.db() as conn:
                    conn.execute("UPDATE jobs SET status = ?, error = ?, message = 'could not start', "
                                 "finished = ? WHERE id = ? AND status = ?",
                                 (FAILED, f"Could not start the worker process: {one_line(exc)}", time.time(), job_id,
                                  RUNNING))
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
                [sys.executable, "-m", "busadv", "jobs", "--db", str(self.path), "run", str(job_id)],
                cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True)
        track_child(popen)
        start = proc_start_time(popen.pid)
        with self.db() as conn:
            conn.execute("UPDATE jobs SET pid = ?, pid_start = ? WHERE id = ? AND (pid IS NULL OR pid = ?)",
                         (popen.pid, start, job_id, popen.pid))


