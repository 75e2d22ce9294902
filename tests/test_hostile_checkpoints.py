"""Hostile and damaged checkpoints (issue 9): validated field by field before any allocation, never overwritten.

Every refusal is a CheckpointError that names the file and says why in busadv's words; a file that
could run code is never loaded, and the advice to load it unsafely is never passed on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from busadv.models import build_model
from busadv.models.checkpoints import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from tests.test_hostile import HYPOTHESIS

pytestmark = pytest.mark.hostile


def good_blob() -> dict:
    """A valid 32 px SimpleCNN checkpoint's dict, as torch.load(weights_only=True) reads it."""
    torch.manual_seed(0)
    folder = Path(os.environ["BUSADV_HOME"]) / "good"
    path = save_checkpoint(build_model("simplecnn", 32), folder / "good.pt", arch="simplecnn", image_size=32,
                           train_config={"arch": "simplecnn", "mode": "standard", "seed": 0}, run_id="r-good")
    return torch.load(path, weights_only=True)


def written(blob: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, path)
    return path


def test_a_checkpoint_without_created_is_listed_and_loaded(tmp_path):
    blob = good_blob()
    del blob["created"]
    path = written(blob, tmp_path / "old.pt")
    (info,) = list_checkpoints(tmp_path)
    assert info.path == path and info.created == pytest.approx(path.stat().st_mtime)
    model = load_checkpoint(path).require_model()
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize("size", [2048, 100_000, 0, -5, True, "32", 32.0])
def test_an_image_size_out_of_range_is_refused_before_any_model_is_built(tmp_path, monkeypatch, size):
    from busadv.models import checkpoints

    blob = good_blob()
    blob["image_size"] = size
    path = written(blob, tmp_path / "huge.pt")
    monkeypatch.setattr(checkpoints, "build_model", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value).startswith(f"{path}: not usable as a busadv checkpoint: ")
    assert "image size" in str(info.value)
    assert list_checkpoints(tmp_path) == []


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=True),
                 st.text(max_size=40), st.lists(st.integers(), max_size=4),
                 st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
                 st.builds(torch.zeros, st.integers(0, 4)), st.just("DELETE"))
FIELDS = ["format", "version", "arch", "image_size", "classes", "state_dict", "train_config", "metrics", "data",
          "history", "created", "run_id"]


@settings(HYPOTHESIS, max_examples=30)  # each example saves and loads a model
@given(st.dictionaries(st.sampled_from(FIELDS), JUNK, min_size=1, max_size=4),
       st.one_of(st.none(), st.tuples(st.integers(0, 20), st.lists(st.integers(0, 40), max_size=4))))
def test_any_mangled_checkpoint_is_refused_with_a_reason_or_works(tmp_path, changes, weight):
    blob = good_blob()
    for key, value in changes.items():
        if value == "DELETE":
            blob.pop(key, None)
        else:
            blob[key] = value
    if weight is not None and isinstance(blob.get("state_dict"), dict) and blob["state_dict"]:
        names = sorted(blob["state_dict"])
        blob["state_dict"][names[weight[0] % len(names)]] = torch.zeros(weight[1])
    path = written(blob, tmp_path / "mangled.pt")
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as exc:
        assert str(exc).startswith(f"{path}: ") and len(str(exc)) < 600
        return
    logits = checkpoint.require_model()(torch.rand(2, 1, checkpoint.image_size, checkpoint.image_size))
    assert logits.shape == (2, len(checkpoint.classes))


class RunsCode:
    """Unpickling this runs a command: what a hostile "checkpoint" does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_could_run_code_is_refused_plainly(tmp_path):
    marker = tmp_path / "pwned"
    path = written({"format": "busadv-checkpoint", "payload": RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert not marker.exists()
    assert "could run code when loaded, and busadv refuses such files" in message and message.endswith(".")
    assert "weights_only" not in message and "False" not in message and "re-run" not in message


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_a_truncated_checkpoint_is_refused_in_a_whole_sentence(tmp_path, keep):
    data = written(good_blob(), tmp_path / "good.pt").read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not usable as a busadv checkpoint: the file ") and message.endswith(".")
    assert "damaged" in message and "weights_only" not in message


def test_checkpoint_names_differ_for_runs_in_the_same_second(monkeypatch):
    from busadv.models import checkpoints

    monkeypatch.setattr(checkpoints.time, "strftime", lambda *a: "20250101-120000")
    recipe = {"arch": "simplecnn", "mode": "standard", "seed": 0, "lr": 1e-3}
    names = {checkpoints.checkpoint_filename(recipe, True, "run-a"),
             checkpoints.checkpoint_filename(dict(recipe, lr=2e-3), True, "run-a"),
             checkpoints.checkpoint_filename(recipe, True, "run-b")}
    assert len(names) == 3


def test_two_runs_finishing_in_the_same_second_keep_both_models_and_rows(tmp_path, monkeypatch, small_phantoms):
    """BUSADV_MAX_JOBS=2, same model and seed, different lr, both done in the same second: both kept."""
    from busadv.experiments import run_one
    from busadv.models import checkpoints
    from busadv.results import unique_rows
    from busadv.training import TrainConfig

    monkeypatch.setattr(checkpoints.time, "strftime", lambda *a: "20250101-120000")
    outcomes = [run_one(TrainConfig(epochs=1, image_size=32, device="cpu", lr=lr), small_phantoms, ["fgsm"],
                        [4 / 255], save=True, checkpoint_folder=tmp_path) for lr in (1e-3, 2e-3)]
    files = sorted(tmp_path.glob("*.pt"))
    assert len(files) == 2 and {o.checkpoint for o in outcomes} == set(files)
    assert [load_checkpoint(f).train_config["lr"] for f in files] != [1e-3, 1e-3]
    rows = outcomes[0].rows + outcomes[1].rows
    assert len(unique_rows(rows)) == len(rows) == 4


def test_a_save_never_replaces_another_runs_file(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"another run's model")
    saved = save_checkpoint(build_model("simplecnn", 32), target, arch="simplecnn", image_size=32)
    assert saved == tmp_path / "model-2.pt" and target.read_bytes() == b"another run's model"
    assert load_checkpoint(saved).image_size == 32


def test_the_cli_refuses_a_hostile_checkpoint_in_one_line(tmp_path, capsys):
    from busadv.cli import main

    blob = good_blob()
    blob["image_size"] = 100_000
    path = written(blob, tmp_path / "huge.pt")
    started = time.perf_counter()
    assert main(["evaluate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: not usable") and "Traceback" not in err
    assert time.perf_counter() - started < 30


# ------------------------------------------------------------------------------------------- issue 19: F4-F6

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_weights_holding_nan_or_inf_are_refused_on_load(tmp_path, bad):
    blob = good_blob()
    name = sorted(k for k, v in blob["state_dict"].items() if v.is_floating_point())[-1]
    blob["state_dict"][name].view(-1)[0] = bad
    path = written(blob, tmp_path / "diverged.pt")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not usable as a busadv checkpoint: ") and "\n" not in message
    assert "NaN or infinite" in message and name in message


def test_the_cli_refuses_a_nan_checkpoint_in_one_line_with_a_failing_exit(tmp_path, capsys):
    from busadv.cli import main

    blob = good_blob()
    for value in blob["state_dict"].values():
        if value.is_floating_point():
            value.fill_(float("nan"))
    path = written(blob, tmp_path / "nan.pt")
    assert main(["attack", str(path), "--image", str(path)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("error: ") and "NaN or infinite" in err
    assert out == ""  # no "nan" probabilities printed before the refusal


@pytest.mark.parametrize("classes", [["benign", "benign", "normal"], ["Benign ", "benign", "normal"]])
def test_duplicated_class_names_are_refused(tmp_path, classes):
    blob = good_blob()
    blob["classes"] = classes
    path = written(blob, tmp_path / "twice.pt")
    with pytest.raises(CheckpointError, match="class names must differ") as info:
        load_checkpoint(path)
    assert str(info.value).startswith(f"{path}: ")
    assert list_checkpoints(tmp_path) == []


def test_renamed_classes_are_refused_against_the_data_naming_both(tmp_path, small_phantoms):
    from busadv.experiments import test_split_for

    blob = good_blob()
    blob["classes"] = ["benign", "cancer", "normal"]
    checkpoint = load_checkpoint(written(blob, tmp_path / "renamed.pt"))  # alone, it is a usable model
    with pytest.raises(CheckpointError) as info:
        test_split_for(checkpoint, small_phantoms)
    message = str(info.value)
    assert "benign, cancer, normal" in message and "benign, malignant, normal" in message
    assert message.startswith(f"{checkpoint.path}: ")


def test_a_checkpoint_with_the_datas_classes_in_another_order_is_refused(tmp_path, small_phantoms):
    from busadv.experiments import test_split_for

    blob = good_blob()
    blob["classes"] = ["malignant", "benign", "normal"]
    checkpoint = load_checkpoint(written(blob, tmp_path / "swapped.pt"))
    with pytest.raises(CheckpointError, match="do not match the data"):
        test_split_for(checkpoint, small_phantoms)


def _special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.pt"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link-to-fifo":
        os.mkfifo(tmp_path / "pipe")
        path.symlink_to(tmp_path / "pipe")
    elif kind == "link-to-dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "link-to-dev-null":
        path.symlink_to("/dev/null")
    return path


@pytest.mark.parametrize("kind", ["fifo", "link-to-fifo", "link-to-dev-zero", "link-to-dev-null"])
def test_fifos_and_devices_are_refused_without_blocking(tmp_path, kind):
    """A FIFO opened for reading blocks until a writer comes; /dev/zero never ends. Neither may be opened."""
    import threading

    path = _special(tmp_path, kind)
    outcome: dict = {}

    def attempt() -> None:
        try:
            load_checkpoint(path)
        except CheckpointError as exc:
            outcome["error"] = str(exc)
        outcome["listed"] = list_checkpoints(tmp_path)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():  # unblock the thread so the test run can end
        with open(tmp_path / ("pipe" if kind == "link-to-fifo" else "fifo.pt"), "wb") if "fifo" in kind else \
                open(os.devnull, "wb"):
            pass
        pytest.fail(f"loading a {kind} blocked")
    assert outcome["error"].startswith(f"{path}: ") and "not a regular file" in outcome["error"]
    assert "could run code" not in outcome["error"]
    assert outcome["listed"] == []


def test_the_cli_refuses_a_fifo_checkpoint_at_once(tmp_path):
    import subprocess
    import sys

    path = _special(tmp_path, "fifo")
    done = subprocess.run([sys.executable, "-m", "busadv", "evaluate", str(path)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parent.parent,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "not a regular file" in done.stderr and "FIFO" in done.stderr


def test_the_home_page_lists_models_beside_a_fifo_without_hanging(app_checkpoints):
    """The issue's case: a FIFO named *.pt in the checkpoints folder hung the Home page for ever."""
    from tests.test_app import open_app

    os.mkfifo(Path(os.environ["BUSADV_CHECKPOINTS"]) / "pipe.pt")
    os.symlink("/dev/zero", Path(os.environ["BUSADV_CHECKPOINTS"]) / "zero.pt")
    home = open_app()  # AppTest's timeout ends a hang; open_app asserts that no exception box is drawn
    assert len(home.dataframe) == 1
