"""Shared fixtures: every test runs with its own busadv folders, and on simulated data unless it asks for BUSI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# One torch thread per process: the tests' job workers, Streamlit servers and pytest share two cores, and
# two-thread torch waits on cores other processes hold (5-10x slower, see the benchmark's levers).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

REAL_BUSI = os.environ.get("BUSADV_DATA")  # read before the fixtures below hide it from tests


@pytest.fixture(autouse=True)
def isolated_busadv(tmp_path_factory, monkeypatch) -> None:
    """Jobs, checkpoints and results go to temporary folders; the decoded-image cache is shared per session."""
    base = tmp_path_factory.mktemp("busadv")
    monkeypatch.setenv("BUSADV_HOME", str(base / "home"))
    monkeypatch.setenv("BUSADV_CHECKPOINTS", str(base / "checkpoints"))
    monkeypatch.setenv("BUSADV_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("BUSADV_DATA", raising=False)
    monkeypatch.setenv("BUSADV_PLUGINS", "tests.job_plugins")
    monkeypatch.setenv("BUSADV_FIRST_START", "off")  # pages without a model stay so (tests/test_first_start.py: on)


@pytest.fixture(scope="session")
def busi_path() -> Path:
    """The real BUSI folder, or a skip that says how to run these tests."""
    if not REAL_BUSI:
        pytest.skip("set BUSADV_DATA to a BUSI folder to run the real-data tests")
    return Path(REAL_BUSI)


@pytest.fixture(scope="session")
def small_phantoms(tmp_path_factory):
    """120 phantoms at 32 px: enough to learn from in seconds."""
    os.environ.setdefault("BUSADV_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    from busadv.data import make_phantoms

    return make_phantoms(image_size=32, counts={"benign": 50, "malignant": 40, "normal": 30}, use_cache=False)


@pytest.fixture(scope="session")
def trained_simplecnn(small_phantoms):
    """A SimpleCNN trained on the small phantoms, with its held-out split: (model, train_set, test_set)."""
    from busadv.data import split_dataset
    from busadv.training import TrainConfig, train_model

    train_set, test_set = split_dataset(small_phantoms, 0.3, seed=0)
    result = train_model(TrainConfig(epochs=25, image_size=32, lr=2e-3, batch_size=16, device="cpu"), train_set)
    return result.model, train_set, test_set


# ----------------------------------------------------------------------------- app tests (test_app, test_browser)

@pytest.fixture(scope="session")
def app_checkpoint_files(tmp_path_factory) -> list[Path]:
    """Two tiny 32 px SimpleCNN checkpoints (standard and FGSM-trained) on the default phantoms.

    Built once per session; tests copy them into their own BUSADV_CHECKPOINTS with `app_checkpoints`.
    """
    folder = tmp_path_factory.mktemp("app-checkpoints")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BUSADV_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        mp.delenv("BUSADV_DATA", raising=False)
        from busadv.data import load_dataset
        from busadv.experiments import run_one
        from busadv.training import TrainConfig

        dataset = load_dataset(None, 32)
        paths = []
        for mode, eps in (("standard", 0.0), ("fgsm", 8 / 255)):
            config = TrainConfig(arch="simplecnn", mode=mode, epsilon=eps, epochs=2, image_size=32, seed=0,
                                 device="cpu", monitor_images=0)
            outcome = run_one(config, dataset, test_epsilons=[8 / 255], save=True, checkpoint_folder=folder)
            paths.append(outcome.checkpoint)
    return paths


@pytest.fixture
def app_checkpoints(app_checkpoint_files) -> Path:
    """The tiny checkpoints copied into this test's BUSADV_CHECKPOINTS folder."""
    import shutil

    target = Path(os.environ["BUSADV_CHECKPOINTS"])
    target.mkdir(parents=True, exist_ok=True)
    for path in app_checkpoint_files:
        shutil.copy2(path, target / Path(path).name)
    return target
