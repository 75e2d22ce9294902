"""busadv.jobs: real worker processes on a temporary database, driven by the hidden 'sleep' kind."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from busadv import jobs, pids
from busadv.jobs import JobStore, JobStoreError, processes
from busadv.jobs.store import STALE_SECONDS
from busadv.pids import proc_start_time

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 15.0  # generous: the machine is shared; a passing run takes well under a second per wait


@pytest.fixture
def store(tmp_path, monkeypatch) -> JobStore:
    monkeypatch.setenv("BUSADV_MAX_JOBS", "2")
    monkeypatch.setenv("BUSADV_HOME", str(tmp_path / "home"))
    s = JobStore(tmp_path / "jobs.sqlite")
    yield s
    for job in s.list(1000):  # leave no workers behind
        if job.status == "running" and job.pid and job.pid != os.getpid():
            try:
                os.kill(job.pid, signal.SIGKILL)
            except OSError:
                pass


def wait_for(predicate, what: str, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {deadline} s waiting for {what}")


def wait_status(store: JobStore, job_id: int, *statuses: str, reap: bool = False) -> jobs.Job:
    def check():
        if reap:
            store.reap()
        job = store.get(job_id)
        return job if job.status in statuses else None
    try:
        return wait_for(check, f"job {job_id} to become {statuses}")
    except AssertionError:
        job = store.get(job_id)
        raise AssertionError(f"job {job_id} is {job.status} ({job.message}, {job.error}); log:\n"
                             + "\n".join(store.logs(job_id)))


def test_import_does_not_import_torch():
    code = "import sys, busadv.jobs; assert 'torch' not in sys.modules, 'busadv.jobs pulled in torch'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_sleep_job_runs_to_done(store):
    job_id = store.submit("sleep", {"steps": 6, "seconds": 0.02, "epochs": 3})
    job = wait_status(store, job_id, "done", "failed")
    assert job.status == "done", job.error
    assert job.progress == 1.0
    assert job.result == {"steps": 6, "seconds": pytest.approx(0.12)}
    assert (job.epoch, job.epochs) == (3, 3)
    assert job.accuracy == pytest.approx(1.0)
    assert job.started is not None and job.finished is not None and job.finished >= job.started
    assert job.pid is not None and job.error is None and not job.active
    assert any("sleep job: 6 steps" in line for line in store.logs(job_id)), "print() output missing from log"
    assert any("sleep job starting" in line for line in store.logs(job_id)), "logging output missing from log"
    assert not store.any_active()


def test_progress_is_throttled_but_keeps_epoch_ends(store):
    job_id = store.submit("sleep", {"steps": 3000, "seconds": 0, "epochs": 4})
    wait_status(store, job_id, "done")
    rows = store.history(job_id)
    assert len(rows) < 100, f"{len(rows)} progress rows for 3000 reports: not throttled"
    ends = [row for row in rows if row["accuracy"] is not None]
    assert [row["epoch"] for row in ends] == [1, 2, 3, 4]
    assert ends[-1]["fraction"] == 1.0


def test_failing_job_is_failed_with_its_error(store):
    job_id = store.submit("sleep", {"steps": 4, "seconds": 0.01, "fail": True})
    job = wait_status(store, job_id, "failed", "done")
    assert job.status == "failed"
    assert job.error == "RuntimeError: sleep job failed on purpose at step 3"
    assert job.result is None and job.finished is not None
    log_text = "\n".join(store.logs(job_id))
    assert "Traceback" in log_text and "failed on purpose" in log_text


def test_cancel_running_job(store):
    job_id = store.submit("sleep", {"steps": 1000, "seconds": 0.02})
    wait_for(lambda: store.get(job_id).progress > 0, "the job to report progress")
    store.cancel(job_id)
    job = wait_status(store, job_id, "cancelled", "done", "failed")
    assert job.status == "cancelled"
    assert job.progress < 1.0 and job.result is None and job.finished is not None
    store.cancel(job_id)  # cancelling a finished job is harmless (a second tab clicking too)
    assert store.get(job_id).status == "cancelled"


def test_cancel_queued_job_never_starts(store):
    job_id = store.submit("sleep", {"steps": 1}, start=False)
    assert store.get(job_id).status == "queued" and store.any_active()
    store.cancel(job_id)
    assert store.get(job_id).status == "cancelled"
    assert store.dispatch() == []
    assert store.get(job_id).pid is None and not store.any_active()


def test_jobs_beyond_max_concurrent_wait_then_run(store, monkeypatch):
    monkeypatch.setenv("BUSADV_MAX_JOBS", "1")
    first = store.submit("sleep", {"steps": 20, "seconds": 0.03})
    second = store.submit("sleep", {"steps": 2, "seconds": 0.01})
    assert store.get(first).status == "running"
    assert store.get(second).status == "queued"
    assert store.dispatch() == []  # no free slot
    assert store.get(second).status == "queued"
    # No dispatch() from here on: the first worker starts the second when it finishes.
    done = wait_status(store, second, "done", "failed")
    assert done.status == "done"
    assert done.started >= store.get(first).finished


def test_kill_9_worker_is_interrupted_and_frees_its_slot(store, monkeypatch):
    monkeypatch.setenv("BUSADV_MAX_JOBS", "1")
    victim = store.submit("sleep", {"steps": 1000, "seconds": 0.02})
    waiting = store.submit("sleep", {"steps": 2, "seconds": 0.01})
    wait_for(lambda: store.get(victim).progress > 0, "the job to report progress")
    os.kill(store.get(victim).pid, signal.SIGKILL)

    def reaped():
        started = store.dispatch()
        return store.get(victim).status != "running" and (started or True)
    wait_for(reaped, "dispatch() to notice the dead worker", deadline=10)
    job = store.get(victim)
    assert job.status == "interrupted"
    assert "died" in job.error and str(job.pid) in job.error
    assert job.finished is not None
    assert any("marked interrupted" in line for line in store.logs(victim))
    assert wait_status(store, waiting, "done", "failed").status == "done"


def _fake_running(store: JobStore, pid: int, pid_start: str | None, heartbeat: float) -> int:
    """A 'running' row whose worker we choose (no real worker): for reaper edge cases."""
    job_id = store.submit("sleep", {"steps": 1}, start=False)
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE jobs SET status='running', pid=?, pid_start=?, heartbeat=?, started=? WHERE id=?",
                     (pid, pid_start, heartbeat, heartbeat, job_id))
    return job_id


def test_reused_pid_is_not_mistaken_for_the_worker(store):
    # The pid exists (it is this test process) but its start time differs: a reused pid.
    job_id = _fake_running(store, os.getpid(), "1", time.time())
    alive_id = _fake_running(store, os.getpid(), proc_start_time(os.getpid()), time.time())
    assert store.reap() == 1
    assert store.get(job_id).status == "interrupted"
    assert store.get(alive_id).status == "running"  # the same pid with the right start time lives


def test_zombie_worker_counts_as_dead(store):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: pids._proc_state(child.pid) == "Z", "the child to become a zombie")
    try:
        job_id = _fake_running(store, child.pid, proc_start_time(child.pid), time.time())
        assert store.reap() == 1
        assert store.get(job_id).status == "interrupted"
    finally:
        child.wait()


def test_stale_heartbeat_is_interrupted_and_hung_worker_stopped(store):
    hung = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        job_id = _fake_running(store, hung.pid, proc_start_time(hung.pid),
                               time.time() - STALE_SECONDS - 5)
        assert store.reap() == 1
        job = store.get(job_id)
        assert job.status == "interrupted" and "heartbeat" in job.error
        assert hung.wait(timeout=10) == -signal.SIGTERM
    finally:
        hung.kill()
        hung.wait()


def test_cancel_of_a_dead_worker_marks_cancelled(store):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    start = proc_start_time(gone.pid)
    gone.wait()
    job_id = _fake_running(store, gone.pid, start, time.time())
    store.cancel(job_id)
    assert store.get(job_id).status == "cancelled"


def test_run_job_refuses_a_finished_job(store):
    job_id = store.submit("sleep", {"steps": 1, "seconds": 0})
    wait_status(store, job_id, "done")
    with pytest.raises(jobs.JobStateError, match="only a queued job"):
        jobs.run_job(job_id, store)


def test_run_job_in_process(store):
    job_id = store.submit("sleep", {"steps": 3, "seconds": 0}, start=False)
    jobs.run_job(job_id, store)
    job = store.get(job_id)
    assert job.status == "done" and job.pid == os.getpid() and job.result["steps"] == 3
    assert any("sleep job starting" in line for line in store.logs(job_id))


def test_unknown_kind_names_the_valid_ones(store):
    with pytest.raises(ValueError) as info:
        store.submit("trian", {})
    for kind in jobs.JOB_KINDS.names():
        assert kind in str(info.value)
    assert store.list() == []


def test_the_sleep_kind_comes_from_the_tests_plugin_not_from_busadv():
    code = ("import busadv.jobs; names = busadv.jobs.JOB_KINDS.names(); "
            "assert 'sleep' not in names and {'train', 'evaluate', 'experiment'} <= set(names), names")
    env = {k: v for k, v in os.environ.items() if k != "BUSADV_PLUGINS"}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


def test_config_must_be_plain_json(store):
    with pytest.raises(ValueError, match="JSON"):
        store.submit("sleep", {"path": object()})
    with pytest.raises(TypeError):
        store.submit("sleep", ["steps", 3])


def test_unknown_job_id_is_a_key_error(store):
    for call in (store.get, store.cancel, store.logs, store.history):
        with pytest.raises(KeyError, match="No job with id 999"):
            call(999)


@pytest.mark.parametrize("content", [b"this is not a database\n" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_corrupt_database_file_names_the_path(tmp_path, content):
    path = tmp_path / "jobs.sqlite"
    path.write_bytes(content)
    with pytest.raises(JobStoreError) as info:
        JobStore(path)
    assert str(path) in str(info.value)


def test_foreign_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE jobs (name TEXT)")
        conn.execute("PRAGMA user_version = 1")
    with pytest.raises(JobStoreError, match="not busadv's"):
        JobStore(path)


def test_second_store_on_the_same_file_sees_the_same_jobs(store):
    other_tab = JobStore(store.path)
    job_id = store.submit("sleep", {"steps": 1000, "seconds": 0.02})
    assert [job.id for job in other_tab.list()] == [job_id]
    wait_for(lambda: other_tab.get(job_id).progress > 0, "the other tab to see progress")
    other_tab.cancel(job_id)
    assert wait_status(store, job_id, "cancelled").status == "cancelled"
    assert store.list()[0] == other_tab.list()[0]


def test_concurrent_dispatchers_start_each_job_once(store, monkeypatch):
    monkeypatch.setenv("BUSADV_MAX_JOBS", "3")
    ids = [store.submit("sleep", {"steps": 20, "seconds": 0.02}, start=False) for _ in range(5)]
    started: list[int] = []
    barrier = threading.Barrier(4)

    def tab():
        barrier.wait()
        started.extend(JobStore(store.path).dispatch())
    threads = [threading.Thread(target=tab) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(started) == len(set(started)) == 3
    assert sum(job.status == "running" for job in store.list()) == 3
    for job_id in ids:
        assert wait_status(store, job_id, "done", "failed").status == "done"


def test_max_concurrent(monkeypatch):
    monkeypatch.setenv("BUSADV_MAX_JOBS", "3")
    assert jobs.max_concurrent() == 3
    for bad in ("0", "two"):
        monkeypatch.setenv("BUSADV_MAX_JOBS", bad)
        with pytest.raises(ValueError, match="BUSADV_MAX_JOBS"):
            jobs.max_concurrent()
    monkeypatch.delenv("BUSADV_MAX_JOBS")
    monkeypatch.setattr(processes, "visible_gpus", list)
    assert jobs.max_concurrent() == max(1, (os.cpu_count() or 1) // 2)
    monkeypatch.setattr(processes, "visible_gpus", lambda: ["0", "1", "2", "3"])
    assert jobs.max_concurrent() == 4


def test_cli_list_and_logs(store):
    job_id = store.submit("sleep", {"steps": 2, "seconds": 0})
    wait_status(store, job_id, "done")
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "busadv", "jobs", "list", "--db", str(store.path)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert f"{job_id}  sleep" in out and "done" in out and "100%" in out
    logs = subprocess.run([sys.executable, "-m", "busadv", "jobs", "--db", str(store.path), "logs", str(job_id)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "sleep job: 2 steps" in logs
    bad = subprocess.run([sys.executable, "-m", "busadv", "jobs", "--db", str(store.path), "run", "999"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "No job with id 999" in bad.stderr
