"""Issue 17 item 3: the Jobs, Results, Study and Dataset pages after every kind of job has ended in every way.

Each kind's "done" job carries the result its real workflow returned (run once per session, in process, on
tiny 32 px phantom models), and its files (results rows, flips, transfer matrix, report) are in the store the
pages read; its "failed", "cancelled" and "interrupted" jobs are written as the worker would leave them.
A page must render all of them without an exception and say what each job ended as.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from tests.test_app import open_app, texts

PAGES = ("pages/2_Jobs.py", "pages/3_Results.py", "pages/4_Study.py", "pages/5_Dataset.py")
TEST_ONLY_KINDS = {"sleep"}  # registered by tests/job_plugins.py, never shipped
ENDINGS = ("done", "failed", "cancelled", "interrupted")


def _real_kinds() -> list[str]:
    from busadv.jobs import JOB_KINDS

    return [k.name for k in JOB_KINDS if k.name not in TEST_ONLY_KINDS]


@pytest.fixture(scope="session")
def finished_jobs(tmp_path_factory) -> tuple[Path, dict[str, tuple[dict, dict]]]:
    """(a busadv home and checkpoint folder with every kind's files, {kind: (config, result)}) from real runs."""
    base = tmp_path_factory.mktemp("every-kind")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BUSADV_HOME", str(base / "home"))
        mp.setenv("BUSADV_CHECKPOINTS", str(base / "checkpoints"))
        mp.setenv("BUSADV_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        mp.delenv("BUSADV_DATA", raising=False)
        from busadv.experiments import ExperimentConfig
        from busadv.jobs import JOB_KINDS

        def run(kind: str, config: dict) -> dict:
            """The kind's own function, as a worker resolves and calls it."""
            return JOB_KINDS.get(kind).function()(dict(config), lambda event: None)


        made: dict[str, tuple[dict, dict]] = {}
        train = {"epochs": 1, "image_size": 32, "device": "cpu", "test_epsilons": "2/255, 8/255",
                 "test_attacks": ["fgsm", "pgd"], "monitor_images": 0}
        made["train"] = (train, run("train", dict(train)))
        fgsm = dict(train, mode="fgsm", epsilon=8 / 255)
        second = run("train", dict(fgsm))
        first_ckpt, second_ckpt = made["train"][1]["checkpoint"], second["checkpoint"]
        evaluate = {"checkpoint": first_ckpt, "attacks": ["pgd"], "epsilons": ["8/255"], "pgd_steps": 2}
        made["evaluate"] = (evaluate, run("evaluate", dict(evaluate)))
        grid = ExperimentConfig(archs=["simplecnn"], modes=["standard"], seeds=[0], test_attacks=["fgsm"],
                                test_epsilons=[8 / 255], epochs=1, image_sizes={"simplecnn": 32}, device="cpu",
                                name="tiny", monitor_images=0).to_dict()
        made["experiment"] = (grid, run("experiment", dict(grid)))
        flips = {"checkpoint": first_ckpt, "attacks": ["fgsm"], "max_epsilon": "16/255"}
        made["flips"] = (flips, run("flips", dict(flips)))
        corruptions = {"checkpoint": first_ckpt, "corruptions": ["jpeg"], "severities": "2",
                       "epsilons": ["8/255"], "compare_attacks": ["fgsm"]}
        made["corruptions"] = (corruptions, run("corruptions", dict(corruptions)))
        transfer = {"checkpoints": [first_ckpt, second_ckpt], "attack": "fgsm", "epsilon": "8/255"}
        made["transfer"] = (transfer, run("transfer", dict(transfer)))
        report = {"preset": "study", "archs": ["simplecnn"], "seeds": [0], "epochs": 1, "autoattack": [],
                  "run": False}
        made["report"] = (report, run("report", dict(report)))
    assert isinstance(made["report"][1]["rows"], int), "the report job counts its rows (the shape that crashed Jobs)"
    return base, made


def _store_jobs(kind: str, config: dict, result: dict) -> dict[str, int]:
    """One job of `kind` per ending, written as the worker leaves each; {ending: job id}."""
    from busadv.jobs import JobStore

    store = JobStore()
    ids = {}
    now = time.time()
    for ending in ENDINGS:
        job_id = store.submit(kind, config, start=False)
        values: dict = {"status": ending, "started": now - 30, "finished": now, "progress": 1.0 if ending == "done"
                        else 0.4}
        if ending == "done":
            values.update(result=json.dumps(result), message="done")
        elif ending == "failed":
            values.update(error=f"RuntimeError: {kind} failed on purpose", message="failed")
        elif ending == "cancelled":
            values.update(message="cancelled while running", cancel_requested=1)
        else:
            values.update(error="Interrupted: the worker process stopped without finishing.", message="interrupted")
        columns = ", ".join(f"{k} = ?" for k in values)
        with sqlite3.connect(store.path) as conn:
            conn.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*values.values(), job_id))
        ids[ending] = job_id
    return ids


def test_every_kind_of_job_has_a_real_result_here(finished_jobs):
    """A kind added to busadv.jobs without a case here fails this test, so no kind goes unchecked."""
    assert set(finished_jobs[1]) == set(_real_kinds())


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("kind", _real_kinds())
def test_page_renders_after_a_job_of_each_kind_ended_each_way(finished_jobs, kind, page, monkeypatch):
    import os

    base, made = finished_jobs
    home, checkpoints = Path(os.environ["BUSADV_HOME"]), Path(os.environ["BUSADV_CHECKPOINTS"])
    shutil.copytree(base / "home", home, dirs_exist_ok=True)
    shutil.copytree(base / "checkpoints", checkpoints, dirs_exist_ok=True)
    (home / "jobs.sqlite").unlink(missing_ok=True)  # the real runs ran in process: no job rows of their own
    config, result = made[kind]
    ids = _store_jobs(kind, config, result)
    at = open_app(page)  # asserts no exception
    said = texts(at)
    assert "Traceback" not in said
    if page == "pages/2_Jobs.py":
        for ending, job_id in ids.items():
            assert f"Job {job_id} — {ending}" in said, f"job {job_id} ({kind}, {ending}) is not listed"
        if kind == "report":
            assert "result rows behind it" in said and "Report written" in said
        if kind == "train":  # one epoch, chosen on the validation split as the best recipe does
            assert "Weights tested: epoch 1 of 1, chosen on the validation split (best-both)." in said


@pytest.mark.parametrize("result", [None, "text", 3, [], {"rows": 7}, {"rows": "many"}, {"rows": [1, None, "x"]},
                                    {"rows": [{"run": "a", "attack": "fgsm", "test_epsilon": "oops"}]},
                                    {"flips": 2, "matrix": [], "findings": "none", "history": {"epoch": 1}},
                                    {"diagnoses": "one", "checkpoint": ["a"], "html": 5},
                                    {"rows": [{"epochs": "40", "chosen_epoch": [1], "refit": "yes", "select": 5}]},
                                    {"rows": [{"epochs": 40, "chosen_epoch": 99, "refit": True, "select": "best"}]},
                                    {"epoch_choices": "many"}, {"epoch_choices": [None, {"epochs": True}]},
                                    {"epoch_choices": [{"epochs": 3, "mode": "fgsm", "epsilon": float("nan")},
                                                       {"epochs": 3, "mode": ["x"], "epsilon": 7.0}]}])
@pytest.mark.parametrize("kind", ["train", "evaluate", "experiment", "report", "flips", "corruptions", "transfer"])
def test_a_job_card_survives_any_stored_result_and_config(kind, result):
    """Jobs written by another version or tool: the summary lines and the description never raise."""
    from busadv.app.jobs import describe_job, result_summary, training_history
    from busadv.jobs import Job, JobStatus

    for config in ({}, {"epsilon": "x", "attacks": "fgsm", "archs": "a", "seeds": 3, "epochs": None}, []):
        job = Job(id=1, kind=kind, status=JobStatus.DONE, config=config, progress=1.0, message="", epoch=None,
                  epochs=None, loss=None, accuracy=None, eta_seconds=None, result=result, error=None, pid=None,
                  created=0.0, started=None, finished=None, heartbeat=None)
        assert isinstance(describe_job(job), str)
        assert all(isinstance(line, str) for line in result_summary(job))
        assert isinstance(training_history(job), list)


def test_an_experiment_card_says_which_epoch_counts_other_seeds_chose():
    from busadv.app.jobs import result_summary
    from busadv.jobs import Job, JobStatus

    choices = [{"model": "simplecnn", "mode": "standard", "epsilon": 0.0, "epochs": 31, "chosen_on": "5-9"},
               {"model": "simplecnn", "mode": "fgsm", "epsilon": 2 / 255, "epochs": 26, "chosen_on": "5-9"},
               {"model": "simplecnn", "mode": "<b>x</b>", "epsilon": 0.0, "epochs": 2, "chosen_on": "5-9"}]
    job = Job(id=1, kind="experiment", status=JobStatus.DONE, config={}, progress=1.0, message="", epoch=None,
              epochs=None, loss=None, accuracy=None, eta_seconds=None, result={"epoch_choices": choices}, error=None,
              pid=None, created=0.0, started=None, finished=None, heartbeat=None)
    (line,) = result_summary(job)
    assert line.startswith("Epoch counts chosen on validation of seeds 5-9: simplecnn standard: 31; simplecnn fgsm "
                           "at ε=0.00784 (2/255): 26; ")
    assert "<b>" not in line, "names from a stored job are shown as plain text"
