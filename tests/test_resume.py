"""Resumable training (issue 9): per-epoch state saved atomically; a killed job goes on from its last epoch.

On the CPU a resumed run must end exactly where an uninterrupted one with the same seed ends: same
weights, same clean and PGD accuracy.
"""

from __future__ import annotations

import os
import signal
import sqlite3

import pytest
import torch

from busadv.jobs import JobStateError
from busadv.progress import Cancelled
from busadv.training import TrainConfig, train_model
from busadv.training.loop import refit_state_file
from tests import test_jobs
from tests.test_jobs import wait_for, wait_status

pytestmark = pytest.mark.hostile
store = test_jobs.store  # the job tests' fixture: a store on a temporary database, its workers stopped after


def stop_at(epoch: int, batch: int):
    """A progress callback that stops training in the middle of `epoch`, as a kill would."""
    def report(event) -> None:
        if event.epoch == epoch and f"batch {batch}/" in event.message:
            raise Cancelled("stopped mid-epoch")
    return report


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_training_goes_on_exactly_from_its_last_finished_epoch(tmp_path, small_phantoms):
    from busadv.data import split_dataset

    train_set, test_set = split_dataset(small_phantoms, 0.3, seed=0)
    # FGSM training with a random start draws from the loop's generator as well as torch's global one.
    config = TrainConfig(mode="fgsm", epsilon=8 / 255, epochs=3, image_size=32, batch_size=16, device="cpu",
                         monitor_images=16)
    whole = train_model(config, train_set, test_set)
    state = tmp_path / "state.pt"
    with pytest.raises(Cancelled):
        train_model(config, train_set, test_set, progress=stop_at(2, 3), state_file=state)
    assert (tmp_path / "state.pt.json").read_text().startswith('{"epoch": 1, "epochs": 3')
    messages: list[str] = []
    resumed = train_model(config, train_set, test_set, progress=lambda e: messages.append(e.message), state_file=state)
    assert messages[0].endswith("resumed after epoch 1/3")
    assert not any(m.startswith("epoch 1/3") for m in messages)  # epoch 1 was not trained again
    assert same_weights(whole.model, resumed.model)
    drop = ("seconds",)
    assert ([{k: v for k, v in vars(h).items() if k not in drop} for h in whole.history]
            == [{k: v for k, v in vars(h).items() if k not in drop} for h in resumed.history])


def test_a_state_of_another_run_or_a_damaged_one_is_not_used(tmp_path, small_phantoms):
    from busadv.data import split_dataset

    train_set, _ = split_dataset(small_phantoms, 0.3, seed=0)
    config = TrainConfig(epochs=2, image_size=32, batch_size=16, device="cpu")
    state = tmp_path / "state.pt"
    train_model(config, train_set, state_file=state)
    other = TrainConfig(epochs=2, image_size=32, batch_size=16, device="cpu", seed=1)
    with pytest.warns(UserWarning, match="starts from epoch 1: .*belongs to another run"):
        mixed = train_model(other, train_set, state_file=state)
    assert same_weights(mixed.model, train_model(other, train_set).model)
    state.write_bytes(b"half a file")
    with pytest.warns(UserWarning, match=r"state\.pt cannot be read"):
        again = train_model(config, train_set, state_file=state)
    assert len(again.history) == 2


def test_only_a_job_that_stopped_unfinished_can_be_resumed(store, capsys):
    from busadv.cli.jobs import main

    failed = store.submit("sleep", {"steps": 4, "seconds": 0.01, "fail": True})
    wait_status(store, failed, "failed")
    done = store.submit("sleep", {"steps": 2, "seconds": 0.01})
    wait_status(store, done, "done")
    with pytest.raises(JobStateError, match=f"Job {done} is done; only an interrupted, failed or cancelled"):
        store.resume(done)
    assert main(["--db", str(store.path), "resume", str(done)]) == 2
    assert "only an interrupted, failed or cancelled job can be resumed" in capsys.readouterr().err
    assert main(["--db", str(store.path), "resume", str(failed)]) == 0
    assert f"job {failed}: queued (queued to run again from the start)" in capsys.readouterr().out
    job = wait_status(store, failed, "failed")  # it fails on purpose again, after running again
    assert any("resumed by the user" in line for line in store.logs(failed))
    assert job.error == "RuntimeError: sleep job failed on purpose at step 3"


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_matches_an_uninterrupted_run(store):
    from busadv.models.checkpoints import load_checkpoint

    config = {"arch": "simplecnn", "epochs": 4, "image_size": 32, "batch_size": 4, "seed": 3, "lr": 2e-3,
              "device": "cpu", "test_attacks": ["pgd"], "test_epsilons": [8 / 255], "eval_pgd_steps": 3}
    whole_id = store.submit("train", config)
    killed_id = store.submit("train", config)
    killed = store.get(killed_id)

    def in_a_later_epoch():
        saved, job = store.saved_epoch(killed), store.get(killed_id)
        return saved is not None and job.epoch and job.epoch > saved.epoch and "batch" in job.message and job.pid

    wait_for(in_a_later_epoch, "job to be in the middle of an epoch after its first", deadline=240)
    os.kill(store.get(killed_id).pid, signal.SIGKILL)
    wait_status(store, killed_id, "interrupted", reap=True)
    saved = store.saved_epoch(killed)
    assert saved is not None and not saved.refit
    saved_epoch, epochs = saved.epoch, saved.epochs
    assert 1 <= saved_epoch < epochs
    assert store.resume(killed_id).message == f"queued to resume after epoch {saved_epoch}/{epochs}"
    results = {}
    for job_id in (whole_id, killed_id):
        job = wait_for(lambda j=job_id: store.get(j) if store.get(j).status in ("done", "failed") else None,
                       f"job {job_id} to finish", deadline=300)
        assert job.status == "done", (job.error, store.logs(job_id))
        results[job_id] = job.result
    rows = {j: {r["attack"]: (r["accuracy"], r["balanced_accuracy"]) for r in results[j]["rows"]} for j in results}
    assert rows[killed_id] == rows[whole_id] and set(rows[whole_id]) == {"none", "pgd"}
    models = [load_checkpoint(results[j]["checkpoint"]).require_model() for j in (whole_id, killed_id)]
    assert same_weights(*models)
    assert any(f"resumed after epoch {saved_epoch}/{epochs}" in row["message"] for row in store.history(killed_id))
    assert any("resumed by the user" in line for line in store.logs(killed_id))
    assert not store.state_path(killed).exists()  # done: the checkpoint holds the model now
    print(f"kill -9 after epoch {saved_epoch}/{epochs}, resumed: clean and PGD accuracy {rows[killed_id]} "
          f"(uninterrupted: {rows[whole_id]})")


def test_the_jobs_page_resumes_an_interrupted_job_from_its_saved_epoch(monkeypatch):
    from busadv.jobs import JobStore
    from tests.test_app import JOBS, open_app, set_job, texts

    monkeypatch.setattr(JobStore, "dispatch", lambda self: [])  # nothing runs: the test reads what is queued
    jobs = JobStore()
    interrupted = jobs.submit("train", {"epochs": 5, "image_size": 32}, start=False)
    failed = jobs.submit("evaluate", {"checkpoint": "gone.pt"}, start=False)
    set_job(interrupted, status="interrupted", error="Interrupted: the worker process (pid 1) died.")
    set_job(failed, status="failed", error="CheckpointError: gone.pt: no such checkpoint file")
    state = jobs.state_path(jobs.get(interrupted))
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_bytes(b"the state")
    state.with_name(state.name + ".json").write_text('{"epoch": 2, "epochs": 5}')
    at = open_app(JOBS)
    assert "Saved after epoch 2/5: **Resume** goes on from there." in texts(at)
    assert at.button(key=f"jobs-resume-{interrupted}").label == "Resume"
    assert at.button(key=f"jobs-resume-{failed}").label == "Run again"
    at.button(key=f"jobs-resume-{interrupted}").click().run()
    assert not at.exception
    job = jobs.get(interrupted)
    assert (job.status, job.message, job.error) == ("queued", "queued to resume after epoch 2/5", None)
    assert jobs.get(failed).status == "failed"


def test_a_refit_run_killed_in_its_second_pass_goes_on_in_its_second_pass(tmp_path, small_phantoms):
    from busadv.data import split_dataset

    train_set, _ = split_dataset(small_phantoms, 0.3, seed=0)
    config = TrainConfig(epochs=4, image_size=32, batch_size=8, device="cpu", ema_decay=0.0, refit=True)
    whole = train_model(config, train_set)
    state = tmp_path / "state.pt"
    seen: list[str] = []

    def stop_in_the_second_pass(event) -> None:
        seen.append(event.message)
        if any(m.startswith("validation chose") for m in seen) and event.message.startswith("epoch 2/") \
                and "batch 2/" in event.message:
            raise Cancelled("stopped in the second pass")

    with pytest.raises(Cancelled):
        train_model(config, train_set, progress=stop_in_the_second_pass, state_file=state)
    assert (tmp_path / "state.pt.refit.json").read_text().startswith('{"epoch": 1, "epochs": ')
    messages: list[str] = []
    resumed = train_model(config, train_set, progress=lambda e: messages.append(e.message), state_file=state)
    assert any(m.endswith("resumed after epoch 4/4") for m in messages), "the choosing pass is not trained again"
    assert any(m.endswith(f"resumed after epoch 1/{whole.chosen_epoch}") for m in messages), messages
    assert not any(m.startswith("epoch 1/") for m in messages)
    assert resumed.chosen_epoch == whole.chosen_epoch and same_weights(whole.model, resumed.model)


def test_a_refit_job_stopped_in_its_second_pass_says_it_resumes_there(store, monkeypatch):
    job = store.get(store.submit("train", {"epochs": 40, "refit": True}, start=False))
    path = store.state_path(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"first pass")
    path.with_name(path.name + ".json").write_text('{"epoch": 40, "epochs": 40}')
    assert str(store.saved_epoch(job)) == "epoch 40/40"
    second = refit_state_file(path)  # where the loop keeps the second pass
    second.with_name(second.name + ".json").write_text('{"epoch": 3, "epochs": 35}')
    assert str(store.saved_epoch(job)) == "epoch 40/40", "a sidecar without its state file is not a saved state"
    second.write_bytes(b"second pass")
    saved = store.saved_epoch(job)
    assert saved is not None and (saved.epoch, saved.epochs, saved.refit) == (3, 35, True)
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE jobs SET status = 'interrupted' WHERE id = ?", (job.id,))
    monkeypatch.setattr(type(store), "dispatch", lambda self: [])  # nothing runs: the test reads what is queued
    assert store.resume(job.id).message == "queued to resume after epoch 3/35 of the refit on every training image"


def test_a_finished_jobs_state_goes_with_its_refit_pass_and_nothing_else(store):
    job = store.get(store.submit("train", {"epochs": 1}, start=False))
    path = store.state_path(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = [path, path.with_name(path.name + ".json"), path.with_name(path.name + ".refit"),
            path.with_name(path.name + ".refit.json")]
    other = path.with_name(path.name.replace(".pt", "0.pt"))  # another job whose name starts the same
    for file in [*mine, other]:
        file.write_bytes(b"state")
    store.drop_state(job)
    assert not any(file.exists() for file in mine) and other.exists()
