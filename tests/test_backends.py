"""busadv.experiments.backends: the local pool and Ray run a grid to the same rows; failures retried once, then
reported; a cancel stops the Ray work; bad settings are refused in one line.

One local Ray (2 CPUs, no dashboard) serves the whole module: starting Ray costs ~10 s, so it starts once.
The mechanics tests use a stand-in for run_one (`fake_run`) that trains nothing, so they cost seconds.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import socket
import time
from pathlib import Path

import pytest

from busadv.data import load_dataset, stratified_subset
from busadv.experiments import ExperimentConfig, RunOutcome, experiment_job
from busadv.experiments.backends import (
    BACKENDS,
    BackendError,
    DataMismatch,
    GridPlan,
    RunOptions,
    plan_grid,
)
from busadv.experiments.backends.base import check_arrival
from busadv.progress import Cancelled, ProgressEvent
from busadv.results import ResultRow
from tests.test_jobs import wait_for

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """Ray on this machine with 2 CPUs, for every Ray test of this module; busadv joins it instead of starting one."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def _grid(**overrides) -> ExperimentConfig:
    """A grid that learns in seconds (phantoms at 32 px), so equal rows compare real accuracies."""
    values = dict(archs=["simplecnn"], modes=["standard", "fgsm"], train_epsilons=[8 / 255], seeds=[0, 1],
                  test_attacks=["fgsm"], test_epsilons=[2 / 255, 8 / 255], epochs=4, batch_size=16, lr=2e-3,
                  image_sizes={"simplecnn": 32}, device="cpu", name="backends", monitor_images=16)
    values.update(overrides)
    return ExperimentConfig(**values)


def _comparable(row: dict) -> dict:
    """A row less what names the run or times it: the rest must not depend on where the run executed."""
    return {k: v for k, v in row.items() if k not in ("run", "train_seconds", "checkpoint", "job")}


@pytest.mark.slow
def test_ray_and_the_local_pool_give_the_same_rows(local_ray):
    local = experiment_job(_grid(backend="local", workers=2).to_dict())
    on_ray = experiment_job(_grid(backend="ray").to_dict())
    assert len(local["rows"]) == len(on_ray["rows"]) == 4 * 3
    assert [_comparable(r) for r in local["rows"]] == [_comparable(r) for r in on_ray["rows"]]
    assert [r["run"].rsplit("-", 1)[1] for r in on_ray["rows"]] == [r["run"].rsplit("-", 1)[1] for r in local["rows"]]
    clean = [r for r in local["rows"] if r["attack"] == "none"]
    assert max(r["balanced_accuracy"] for r in clean) > 0.5, "the models learned: equal rows are not equal chance"
    assert on_ray["results_file"], "a Ray grid's rows land in the results store"


def test_a_grid_that_chooses_its_epoch_counts_first_gives_the_same_on_ray(local_ray):
    grid = dict(modes=["standard"], seeds=[0], epochs=3, epochs_chosen_on="5-6")
    local = experiment_job(_grid(backend="local", workers=2, **grid).to_dict())
    on_ray = experiment_job(_grid(backend="ray", **grid).to_dict())
    assert local["epoch_choices"] == on_ray["epoch_choices"] and len(on_ray["epoch_choices"]) == 1
    assert [_comparable(r) for r in local["rows"]] == [_comparable(r) for r in on_ray["rows"]]
    assert [(r["seed"], r["epochs_chosen_on"]) for r in on_ray["rows"] if r["attack"] == "none"] == \
        [(5, ""), (6, ""), (0, "5-6")], "the choosing runs first, then the grid's, trained for the chosen count"


def test_the_sequential_mode_and_the_pool_give_the_same_rows():
    grid = _grid(modes=["standard"], epochs=2)
    in_turn = experiment_job(dataclasses.replace(grid, workers=1).to_dict())
    pooled = experiment_job(dataclasses.replace(grid, workers=2).to_dict())
    assert [_comparable(r) for r in in_turn["rows"]] == [_comparable(r) for r in pooled["rows"]]


# ------------------------------------------------------------------------- the mechanics, with a stand-in run

def fake_run(config, dataset, test_attacks, test_epsilons, *, save, eval_pgd_steps, run_id, checkpoint_folder,
             progress) -> RunOutcome:
    """Stands in for run_one: reports progress, fails as its marker files say, and returns one row.

    The marker folder comes in the run id (a Ray worker's environment is the one Ray started with)."""
    folder = Path(run_id).parent if "/" in run_id else Path(os.environ["BUSADV_HOME"])
    behaviour = (folder / f"behaviour-{config.seed}").read_text() if (folder / f"behaviour-{config.seed}").exists() \
        else "ok"
    attempts = folder / f"attempts-{config.seed}"
    attempts.write_text(attempts.read_text() + "x" if attempts.exists() else "x")
    if behaviour == "always" or (behaviour == "once" and len(attempts.read_text()) == 1):
        raise RuntimeError(f"seed {config.seed} fails on purpose")
    steps = 200 if behaviour == "slow" else 3
    for step in range(steps):
        time.sleep(0.05)
        progress(ProgressEvent((step + 1) / steps, f"step {step + 1}", epoch=1, epochs=1,
                               accuracy=0.5 if step == steps - 1 else None))
    row = ResultRow(run=run_id, seed=config.seed, arch=config.arch, train_mode=config.mode,
                    train_epsilon=config.epsilon, n=3, confusion=[[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                    data_fingerprint=dataset.fingerprint)
    return RunOutcome(config=config, rows=[row], history=[], checkpoint=None, seconds=0.0)


def _plan(seeds: list[int], backend: str, **behaviour: str) -> tuple[GridPlan, str]:
    home = Path(os.environ["BUSADV_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    for seed, what in behaviour.items():
        (home / f"behaviour-{seed.removeprefix('seed')}").write_text(what)
    config = _grid(modes=["standard"], seeds=seeds, backend=backend, workers=2)
    return plan_grid(config, fake_run, f"{home}/mechanics", {32: load_dataset(None, 32)}), backend


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_failed_run_is_tried_once_more_then_reported_and_the_others_kept(backend, request):
    if backend == "ray":
        request.getfixturevalue("local_ray")
    plan, _ = _plan([0, 1, 2], backend, seed1="once", seed2="always")
    events: list[ProgressEvent] = []
    outcome = BACKENDS.get(backend).runner()(plan, events.append)
    assert sorted(outcome.outcomes) == [0, 1], "the run that failed once came back on its second attempt"
    assert [r.seed for r in outcome.rows()] == [0, 1], "rows in grid order"
    [failure] = outcome.failures
    assert (failure.index, failure.attempts) == (2, 2) and "seed 2 fails on purpose" in failure.error
    messages = [e.message for e in events]
    assert any("trying it once more" in m for m in messages)
    assert "1 failed twice and are missing" in messages[-1] and events[-1].fraction == 1.0


def test_a_failed_run_is_reported_by_the_cli_and_the_exit_status(monkeypatch, capsys):
    from busadv.cli import main
    from busadv.experiments import runner

    monkeypatch.setattr(runner, "run_one", fake_run)
    home = Path(os.environ["BUSADV_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "behaviour-1").write_text("always")
    status = main(["experiment", "--modes", "standard", "--seeds", "0,1", "--epochs", "1", "--workers", "1"])
    err = capsys.readouterr().err
    assert status == 1 and "error: 1 of 2 runs failed twice and have no rows" in err
    assert "seed 1 fails on purpose" in err, "the progress output names the failed run and its error"


def test_images_that_arrive_changed_are_refused(local_ray):
    dataset = load_dataset(None, 32)
    check_arrival(dataset, dataset.fingerprint)
    with pytest.raises(DataMismatch, match="fingerprint"):
        check_arrival(dataset, "0" * 16)
    plan, _ = _plan([0], "ray")
    plan = dataclasses.replace(plan)
    plan.fingerprints = lambda: {32: "0" * 16}  # type: ignore[method-assign]  # what the driver claims it sent
    outcome = BACKENDS.get("ray").runner()(plan, lambda e: None)
    assert not outcome.outcomes and "DataMismatch" in outcome.failures[0].error


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_subset_of_the_images_reaches_the_workers_intact(backend, request):
    """A subset keeps its parent's fingerprint for its rows; the arrival check hashes the images actually sent."""
    if backend == "ray":
        request.getfixturevalue("local_ray")
    plan, _ = _plan([0, 1], backend)
    plan.datasets[32] = stratified_subset(plan.datasets[32], 60, seed=0)
    outcome = BACKENDS.get(backend).runner()(plan, lambda e: None)
    assert not outcome.failures, [f.text() for f in outcome.failures]
    assert sorted(outcome.outcomes) == [0, 1]


def test_cancelling_stops_the_ray_tasks(local_ray):
    plan, _ = _plan([0, 1], "ray", seed0="slow", seed1="slow")

    def cancel_at_a_step(event: ProgressEvent) -> None:
        if "step" in event.message:
            raise Cancelled("cancelled by the user")

    with pytest.raises(Cancelled):
        BACKENDS.get("ray").runner()(plan, cancel_at_a_step)
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == 2, "the cancelled tasks gave their CPUs back"


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_finished_run_is_kept_on_the_callers_side_before_a_cancel(backend, request, tmp_path):
    """A Ray worker on another machine keeps its rows on its own disk: the caller keeps each outcome too, as it
    lands, so a grid cancelled after it still has that run's rows here."""
    from busadv.experiments.runner import keep_rows

    if backend == "ray":
        request.getfixturevalue("local_ray")
    plan, _ = _plan([0, 1], backend, seed1="slow")
    kept: list[RunOutcome] = []
    plan.keep = kept.append

    def cancel_once_one_is_done(event: ProgressEvent) -> None:
        if "1 of 2 runs finished" in event.message:
            raise Cancelled("cancelled by the user")

    with pytest.raises(Cancelled):
        BACKENDS.get(backend).runner()(plan, cancel_once_one_is_done)
    assert [o.config.seed for o in kept] == [0]
    # What the runner's keep does with it (the stand-in's run ids carry its marker folder: named plainly here).
    outcome = dataclasses.replace(kept[0], rows=[dataclasses.replace(kept[0].rows[0], run="grid-001")])
    keep_rows(outcome, tmp_path)
    (written,) = tmp_path.glob("*.csv")
    assert written.name == "grid-001.csv" and "simplecnn" in written.read_text()
    written.write_text("the worker's own copy")
    keep_rows(outcome, tmp_path)  # a copy the run's own machine wrote is left as it is
    assert written.read_text() == "the worker's own copy"


def test_cancelling_stops_the_local_workers():
    plan, _ = _plan([0, 1], "local", seed0="slow", seed1="slow")

    def cancel_at_a_step(event: ProgressEvent) -> None:
        if "step" in event.message:
            raise Cancelled("cancelled by the user")

    with pytest.raises(Cancelled):
        BACKENDS.get("local").runner()(plan, cancel_at_a_step)
    deadline = time.monotonic() + 30
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not multiprocessing.active_children(), "no worker process outlives the cancel"


# ------------------------------------------------------------------------- refused in one line

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv, message", [
    (["--backend", "spark"], "argument --backend: invalid choice: 'spark'"),
    (["--address", "127.0.0.1:6379"], "an address names a Ray cluster: it needs the ray backend"),
    (["--backend", "ray", "--address", "nohost"], "is not host:port"),
    (["--backend", "ray", "--address", "127.0.0.1:{port}"], "cannot reach a Ray cluster at 127.0.0.1:"),
    (["--workers", "0"], "workers must be a whole number from 1"),
])
def test_bad_backend_settings_get_one_clear_line(argv, message, capsys, monkeypatch):
    from busadv.cli import main
    from busadv.experiments import runner

    monkeypatch.setattr(runner, "run_one", lambda *a, **k: pytest.fail("a run started"))
    argv = [a.format(port=_closed_port()) for a in argv]
    try:
        status = main(["experiment", "--epochs", "1", "--seeds", "0", *argv])
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    assert status == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("error", "python -m busadv"))]
    assert len(err) == 1 and message in err[0], err


def test_the_backend_is_not_part_of_any_recipe():
    a, b = _grid(backend="local"), _grid(backend="ray", address="10.0.0.5:6379", workers=3)
    assert [r.recipe() for r in a.runs()] == [r.recipe() for r in b.runs()]
    assert ExperimentConfig.from_dict(b.to_dict()).address == "10.0.0.5:6379"
    with pytest.raises(ValueError, match="backend: unknown experiment backend 'spark'; choose one of: local, ray"):
        _grid(backend="spark")
    with pytest.raises(BackendError, match="not host:port"):
        BACKENDS.get("ray").preflight("nohost")


def test_resources_per_run_follow_the_model():
    plan = plan_grid(_grid(archs=["simplecnn", "resnet50"], modes=["standard"], seeds=[0],
                           image_sizes={"simplecnn": 32, "resnet50": 32}), fake_run, "p",
                     {32: load_dataset(None, 32)})
    small, big = plan.tasks
    assert small.gpus < big.gpus and small.memory_gb < big.memory_gb
    assert isinstance(plan.options, RunOptions) and plan.options.test_epsilons == (2 / 255, 8 / 255)


# ------------------------------------------------------------------------- the Jobs page and a job's cancel

def test_the_jobs_page_starts_a_ray_experiment_and_an_unreachable_cluster_fails_in_one_line():
    from busadv.jobs import JobStore
    from tests.test_app import JOBS, open_app

    at = open_app(JOBS)
    assert at.text_input(key="x_address").disabled, "an address is only asked for Ray"
    at.segmented_control(key="x_backend").set_value("ray").run()
    at.text_input(key="x_address").set_value(f"127.0.0.1:{_closed_port()}").run()
    assert not at.exception and "as Ray tasks on the cluster at 127.0.0.1:" in " ".join(c.value for c in at.caption)
    at.button(key="x_start").click().run()
    store = JobStore()
    [job] = store.list()
    assert job.kind == "experiment" and job.config["backend"] == "ray" and job.config["address"].startswith("127.")
    failed = wait_for(lambda: (j := store.get(job.id)).status == "failed" and j, "the job to fail", 120)
    assert failed.error.startswith("BackendError: cannot reach a Ray cluster at 127.0.0.1:"), failed.error


@pytest.mark.slow
def test_cancelling_a_ray_experiment_job_stops_it():
    from busadv.jobs import JobStore

    store = JobStore()
    config = _grid(modes=["standard"], seeds=[0, 1], epochs=500, backend="ray", workers=2, monitor_images=0)
    job_id = store.submit("experiment", config.to_dict())
    wait_for(lambda: "run " in (store.get(job_id).message or ""), "a Ray run to report progress", 240)
    store.cancel(job_id)
    job = wait_for(lambda: (j := store.get(job_id)).status != "running" and j, "the job to stop", 120)
    assert job.status == "cancelled" and job.progress < 0.5


def test_scratch_folders_of_ended_workers_are_swept_and_others_kept(tmp_path):
    from busadv.experiments.backends.ray import SCRATCH_PREFIX, scratch_prefix, sweep_scratch

    ended = multiprocessing.get_context("spawn").Process(target=os.getpid)
    ended.start()
    ended.join()
    left_behind = tmp_path / f"{scratch_prefix(ended.pid)}abc"
    (left_behind / "inner").mkdir(parents=True)
    (left_behind / "inner" / "run.pt").write_bytes(b"x")
    running = tmp_path / f"{scratch_prefix(os.getpid())}def"
    another_host = tmp_path / f"{SCRATCH_PREFIX}another_host-{ended.pid}-ghi"  # a /tmp shared between hosts
    not_ours = [running, another_host, tmp_path / f"{scratch_prefix()}abc-1", tmp_path / "other-1-x"]
    for path in not_ours:
        path.mkdir()
    a_file = tmp_path / f"{scratch_prefix(ended.pid)}file"
    a_file.write_text("kept")

    assert sweep_scratch(tmp_path) == [left_behind]
    assert not left_behind.exists()
    assert all(path.is_dir() for path in not_ours) and a_file.read_text() == "kept"
