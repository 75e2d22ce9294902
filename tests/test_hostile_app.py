"""Hostile and unlucky state behind the pages (issue 9): a damaged job database, hostile checkpoints, the server.

A job database with a valid header and a damaged table is reported once, clearly, in the CLI and on
every page, and the pages keep working on the checkpoints; hostile checkpoints never draw an
exception box; the server is private by default.
"""

from __future__ import annotations

import shutil
import sqlite3
import tomllib
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from busadv.jobs import JobStore, JobStoreError, default_db_path
from tests.test_app import EXPLORER, JOBS, RESULTS, ROOT, open_app, texts, unescape

pytestmark = pytest.mark.hostile


def damage_table(path: Path) -> Path:
    """A job database whose header and schema are intact but whose table pages are overwritten."""
    store = JobStore(path)
    for i in range(40):
        store.submit("train", {"arch": "simplecnn", "note": f"{i} " + "x" * 400}, start=False)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    for offset in range(2 * 4096, len(data), 4096):  # page 1 (header, schema) and page 2 are kept
        data[offset:offset + 100] = b"\xff" * 100
    path.write_bytes(bytes(data))
    JobStore(path)  # still opens: the header and the schema are fine
    return path


def test_a_damaged_job_table_is_one_clear_line_in_the_cli(tmp_path, capsys):
    from busadv.cli import main

    path = damage_table(tmp_path / "jobs.sqlite")
    assert main(["jobs", "--db", str(path), "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: The job database {path} is damaged")
    assert "move" in err and "Traceback" not in err and "DatabaseError" not in err


def test_a_damaged_job_table_refuses_submit_and_resume_with_the_same_reason(tmp_path):
    store = JobStore(damage_table(tmp_path / "jobs.sqlite"))
    for action in (lambda: store.submit("sleep", {"steps": 1}), lambda: store.resume(1), store.list):
        with pytest.raises(JobStoreError, match=r"is damaged \(database disk image is malformed\)"):
            action()


def test_pages_report_a_damaged_job_database_once_and_keep_working(app_checkpoints):
    damage_table(default_db_path())
    for page in (None, JOBS):
        at = open_app(page)  # asserts that no exception box is drawn
        errors = [unescape(e.value) for e in at.error]
        assert len(errors) == 1 and errors[0].startswith("**Jobs are unavailable.** The job database"), errors
        assert "Trained models, the explorer and the results still work." in errors[0]
    explorer = open_app(EXPLORER)  # its first screen needs no job: it works, and says so at most once
    assert len(explorer.error) <= 1 and explorer.get("plotly_chart")
    home = open_app()
    assert len(home.dataframe) == 1 and "Checkpoints folder" in texts(home)  # the models are still listed
    jobs = open_app(JOBS)
    jobs.button(key="t_start").click().run()
    assert not jobs.exception
    assert any("Not done" in str(t.value) and "damaged" in str(t.value) for t in jobs.toast)
    results = open_app(RESULTS)
    assert len(results.error) <= 1 and not results.exception

    def helpers_each_opening_the_store() -> None:
        from busadv.app import jobs as page_jobs

        page_jobs.job_store().list()
        page_jobs.job_list(page_jobs.job_store(), page_jobs.active_first(page_jobs.job_store()))

    several = AppTest.from_function(helpers_each_opening_the_store, default_timeout=60).run()
    assert len(several.error) == 1 and not several.exception
    assert len(several.run().error) == 1  # and once again on the next run


def test_a_file_that_is_not_a_job_database_is_reported_once_on_home(app_checkpoints):
    default_db_path().write_bytes(b"this is not SQLite " * 100)
    at = open_app()
    errors = [unescape(e.value) for e in at.error]
    assert len(errors) == 1 and "as the busadv job database" in errors[0] and len(at.dataframe) == 1


def test_hostile_checkpoints_leave_home_jobs_and_the_explorer_working(app_checkpoints):
    good = sorted(app_checkpoints.glob("*.pt"))[0]
    blob = torch.load(good, weights_only=True)
    old = dict(blob)
    del old["created"]
    huge = dict(blob, image_size=100_000)
    torch.save(old, app_checkpoints / "no-created.pt")
    torch.save(huge, app_checkpoints / "huge.pt")
    (app_checkpoints / "cut.pt").write_bytes(good.read_bytes()[:5000])
    shutil.copy(ROOT / "pyproject.toml", app_checkpoints / "not-a-model.pt")
    home = open_app()
    listed = home.dataframe[0].value
    assert len(listed) == 3  # the two good models and the one without a creation time; nothing else
    for page in (JOBS, EXPLORER):
        open_app(page)  # no exception box


def test_the_server_is_private_by_default():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] in ("127.0.0.1", "localhost")
    assert config["client"]["showErrorDetails"] == "none"
    assert config["server"]["maxUploadSize"] <= 20
    assert config["server"].get("enableXsrfProtection", True) and config["server"].get("enableCORS", True)
