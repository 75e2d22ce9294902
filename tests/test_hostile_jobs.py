"""The job runner under a careless operator (issue 19 weak cases): a bad BUSADV_MAX_JOBS, a full disk, a closed
pipe. Each is one clear line, and nothing is queued that can never run."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.hostile
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("bad", ["two", "0", "-1", "1.5", "99999"])
def test_a_bad_max_jobs_is_refused_at_submit_and_queues_nothing(tmp_path, monkeypatch, bad):
    from busadv.jobs import JobStore
    from busadv.settings import SettingError

    store = JobStore(tmp_path / "jobs.sqlite")
    monkeypatch.setenv("BUSADV_MAX_JOBS", bad)
    with pytest.raises(SettingError) as info:
        store.submit("sleep", {"steps": 1})
    assert str(info.value).startswith("BUSADV_MAX_JOBS=") and "unset it" in str(info.value)
    assert store.list() == []


class _FullDisk:
    """A connection whose writes fail as SQLite's do when the disk is full."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, *args):
        if sql.lstrip().upper().startswith(("PRAGMA JOURNAL_MODE", "INSERT", "BEGIN", "UPDATE", "CREATE")):
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self.conn, name)


def test_a_new_job_database_on_a_full_disk_is_a_clear_message_and_no_empty_file(tmp_path, monkeypatch):
    from busadv.jobs import JobStore, JobStoreError

    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: _FullDisk(real(*a, **k)))
    path = tmp_path / "jobs.sqlite"
    with pytest.raises(JobStoreError) as info:
        JobStore(path)
    message = str(info.value)
    assert "full" in message and "free" in message and "BUSADV_HOME" in message
    assert "damaged" not in message and "move it away" not in message
    assert not path.exists(), "a 0-byte job database was left behind"


def test_a_job_submitted_on_a_full_disk_says_so_not_damaged(tmp_path, monkeypatch):
    from busadv.jobs import JobStore, JobStoreError

    store = JobStore(tmp_path / "jobs.sqlite")
    real = store.connect
    monkeypatch.setattr(store, "connect", lambda: _FullDisk(real()))
    with pytest.raises(JobStoreError) as info:
        store.submit("sleep", {"steps": 1}, start=False)
    message = str(info.value)
    assert "full" in message and "free" in message and "damaged" not in message and "move" not in message
    monkeypatch.undo()
    assert JobStore(tmp_path / "jobs.sqlite").list() == []  # the database itself is fine


def test_the_cli_says_full_disk_in_one_line(tmp_path, monkeypatch, capsys):
    from busadv.cli import main
    from busadv.jobs import JobStore

    JobStore(tmp_path / "jobs.sqlite")
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: _FullDisk(real(*a, **k)))
    assert main(["jobs", "--db", str(tmp_path / "jobs.sqlite"), "resume", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "full" in err and "damaged" not in err


def test_jobs_list_into_a_closed_pipe_ends_quietly(tmp_path):
    from busadv.jobs import JobStore

    store = JobStore(tmp_path / "jobs.sqlite")
    for _ in range(20):
        store.submit("sleep", {"steps": 1}, start=False)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "busadv", "jobs", "--db", str(tmp_path / "jobs.sqlite"),
                                "list"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    process.stdout.close()  # what `| head` does once it has its lines; closed before busadv writes a byte
    _, err = process.communicate(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert process.returncode in (0, 141)
