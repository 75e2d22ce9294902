"""A full disk when a checkpoint is saved (issue 19 F12): the model trained for minutes or hours is never lost.

The disk is simulated: torch.save raises OSError(ENOSPC) for files in the folders made "full" here, as it does
when a write runs out of room, and leaves a partial file behind, as a real write does."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from busadv.models import build_model

pytestmark = pytest.mark.hostile


@pytest.fixture
def full(monkeypatch):
    """full(folder, ...): writes below these folders fail with ENOSPC after writing a little."""
    folders: list[Path] = []
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        path = Path(f) if isinstance(f, (str, os.PathLike)) else None
        if path is not None and any(path.resolve().is_relative_to(d.resolve()) for d in folders):
            path.write_bytes(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr("busadv.data.cache.torch.save", save)

    def make_full(*paths: Path) -> None:
        for p in paths:
            p.mkdir(parents=True, exist_ok=True)
            folders.append(p)
    return make_full


def _save(folder: Path):
    from busadv.models.checkpoints import save_checkpoint

    return save_checkpoint(build_model("simplecnn", 32), folder / "model.pt", arch="simplecnn", image_size=32)


def test_a_full_checkpoints_disk_saves_the_model_in_busadv_home_and_says_what_to_free(tmp_path, full):
    from busadv.models.checkpoints import load_checkpoint

    target = tmp_path / "checkpoints"
    full(target)
    with pytest.warns(UserWarning) as caught:
        saved = _save(target)
    assert saved.parent == Path(os.environ["BUSADV_HOME"]) / "rescued-checkpoints"
    assert load_checkpoint(saved).image_size == 32
    message = str(caught[0].message)
    assert str(target) in message and str(saved) in message and "free" in message and "MB" in message
    assert list(target.iterdir()) == [], "a partial or temporary file was left in the full folder"


def test_when_home_is_full_too_the_model_goes_to_the_temporary_folder(tmp_path, full, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-tmp"))
    (tmp_path / "system-tmp").mkdir()
    full(tmp_path / "checkpoints", Path(os.environ["BUSADV_HOME"]))
    with pytest.warns(UserWarning, match="free"):
        saved = _save(tmp_path / "checkpoints")
    assert saved.is_relative_to(tmp_path / "system-tmp") and saved.stat().st_size > 1000


def test_when_every_disk_is_full_the_error_names_the_path_the_size_and_what_to_free(tmp_path, full, monkeypatch):
    import tempfile

    from busadv.models.checkpoints import CheckpointError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-tmp"))
    full(tmp_path / "checkpoints", Path(os.environ["BUSADV_HOME"]), tmp_path / "system-tmp")
    with pytest.raises(CheckpointError) as info:
        _save(tmp_path / "checkpoints")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'checkpoints' / 'model.pt'}: ") and "\n" not in message
    assert "no room" in message.lower() and "free at least" in message and "MB" in message
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_training_on_a_full_disk_keeps_the_model_and_the_cli_says_where(tmp_path, full, capsys):
    from busadv.cli import main

    full(Path(os.environ["BUSADV_CHECKPOINTS"]))
    assert main(["train", "--epochs", "1", "--image-size", "16", "--test-attacks", "fgsm", "--test-epsilons",
                 "8/255", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    saved = Path(out.split("checkpoint: ")[1].split()[0])
    assert saved.exists() and "rescued-checkpoints" in str(saved)
    warning = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "free" in warning[0] and "Traceback" not in err


def test_a_grid_run_that_cannot_save_anywhere_is_not_trained_again(tmp_path, full, monkeypatch):
    import tempfile

    from busadv.experiments import ExperimentConfig, runner

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-tmp"))
    full(Path(os.environ["BUSADV_CHECKPOINTS"]), Path(os.environ["BUSADV_HOME"]) / "rescued-checkpoints",
         tmp_path / "system-tmp")
    trained = []
    real = runner.train_model

    def counting(*args, **kwargs):
        trained.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "train_model", counting)
    result = runner.run(ExperimentConfig(archs=["simplecnn"], modes=["standard"], seeds=[0], epochs=1,
                                         image_sizes={"simplecnn": 16}, test_attacks=["fgsm"],
                                         test_epsilons=[8 / 255], workers=1, device="cpu", save_checkpoints=True))
    assert len(trained) == 1, "training was repeated although the disk was still full"
    (failure,) = result.failures
    assert "free at least" in failure.error
