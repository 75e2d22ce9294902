"""busadv.training, busadv.models and busadv.checkpoints."""

from __future__ import annotations

import os

import pytest
import torch

from busadv.checkpoints import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from busadv.data import split_dataset
from busadv.models import Arch, PretrainedWeightsUnavailable, build_model, imagenet_weights_available
from busadv.progress import Cancelled, ProgressEvent
from busadv.training import TrainConfig, train_model


def test_training_reports_batches_and_epochs_and_is_reproducible(small_phantoms):
    train_set, test_set = split_dataset(small_phantoms, 0.3, seed=0)
    events: list[ProgressEvent] = []
    config = TrainConfig(epochs=2, image_size=32, batch_size=16, device="cpu")
    first = train_model(config, train_set, test_set, progress=events.append)
    epoch_ends = [e for e in events if e.accuracy is not None]
    assert [e.epoch for e in epoch_ends] == [1, 2]
    assert len(events) > 2 * len(epoch_ends), "no per-batch progress"
    assert all(a.fraction <= b.fraction for a, b in zip(events, events[1:])) and events[-1].fraction == 1.0
    assert len(first.history) == 2 and first.history[-1].test_accuracy is not None
    second = train_model(config, train_set, test_set)
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b), "same seed, same machine, different weights"


def test_fgsm_training_watches_fgsm_and_pgd_accuracy(small_phantoms):
    train_set, test_set = split_dataset(small_phantoms, 0.3, seed=0)
    for labels, random_start, mix in (("true", False, 0.0), ("predicted", True, 0.5)):
        result = train_model(TrainConfig(mode="fgsm", epsilon=8 / 255, epochs=1, image_size=32, device="cpu",
                                         adv_labels=labels, random_start=random_start, clean_mix=mix),
                             train_set, test_set)
        stats = result.history[-1]
        assert 0.0 <= stats.test_fgsm_accuracy <= 1.0 and 0.0 <= stats.test_pgd_accuracy <= 1.0


def test_pgd_training_runs(small_phantoms):
    train_set, _ = split_dataset(small_phantoms, 0.3, seed=0)
    result = train_model(TrainConfig(mode="pgd", epsilon=4 / 255, pgd_steps=2, epochs=1, image_size=32,
                                     device="cpu"), train_set)
    assert result.history[0].train_loss > 0


def test_a_progress_callback_can_cancel_training(small_phantoms):
    def stop(event: ProgressEvent) -> None:
        if event.fraction > 0.2:
            raise Cancelled()

    with pytest.raises(Cancelled):
        train_model(TrainConfig(epochs=3, image_size=32, device="cpu"), small_phantoms, progress=stop)


@pytest.mark.parametrize("settings, message", [
    ({"mode": "fgsm"}, "needs an epsilon"),
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"arch": "vgg"}, "unknown model 'vgg'"),
    ({"mode": "trades"}, "unknown training mode"),
    ({"adv_labels": "both"}, "adv_labels"),
    ({"batch_size": 0, "lr": -1}, "batch size must be at least 1, got 0; learning rate must be positive"),
])
def test_bad_training_settings_are_refused_clearly(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


def test_unknown_setting_names_are_refused():
    with pytest.raises(ValueError, match="unknown training setting"):
        TrainConfig.from_dict({"epoch": 3})


def test_image_size_mismatch_is_explained(small_phantoms):
    with pytest.raises(ValueError, match="32px but the config asks for 64px"):
        train_model(TrainConfig(image_size=64, epochs=1, device="cpu"), small_phantoms)


def test_models_take_unit_range_grayscale_and_give_three_logits():
    for arch, size in ((Arch.SIMPLECNN, 32), (Arch.RESNET50, 32)):
        model = build_model(arch, size).eval()
        with torch.no_grad():
            assert model(torch.rand(2, 1, size, size)).shape == (2, 3)


def test_resnet50_trains_and_evaluates_end_to_end(small_phantoms, tmp_path):
    from busadv.experiments import run_one

    subset = small_phantoms.subset(torch.arange(0, len(small_phantoms), 3))
    outcome = run_one(TrainConfig(arch="resnet50", image_size=32, epochs=1, batch_size=8, device="cpu"), subset,
                      ["fgsm"], [8 / 255], save=True, checkpoint_folder=tmp_path)
    assert [r["attack"] for r in outcome.rows] == ["none", "fgsm"]
    assert load_checkpoint(outcome.checkpoint, expected_arch="resnet50").arch == "resnet50"


def test_pretrained_weights_are_never_downloaded(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    assert not imagenet_weights_available()
    with pytest.raises(PretrainedWeightsUnavailable, match="never downloads"):
        build_model("resnet50", pretrained=True)


# ---------------------------------------------------------------------------------------------- checkpoints

def _saved(tmp_path, size: int = 32):
    model = build_model("simplecnn", size).eval()
    path = save_checkpoint(model, tmp_path / "m.pt", arch="simplecnn", image_size=size,
                           train_config={"mode": "fgsm", "epsilon": 0.05}, metrics={"clean_accuracy": 0.5},
                           data={"fingerprint": "abc", "simulated": True})
    return model, path


def test_checkpoint_round_trip_gives_the_same_outputs(tmp_path):
    model, path = _saved(tmp_path)
    loaded = load_checkpoint(path)
    x = torch.rand(3, 1, 32, 32)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key
    with torch.no_grad():  # loaded in channels_last on CPU: same weights, float rounding may differ
        assert torch.allclose(model(x), loaded.model(x), atol=1e-5)
    assert loaded.train_config["epsilon"] == 0.05 and loaded.data["simulated"] and not loaded.model.training
    assert "fgsm training at eps=0.05" in loaded.describe()
    assert [c.path for c in list_checkpoints(tmp_path)] == [path]


@pytest.mark.parametrize("content, message", [
    (b"this is not a checkpoint", "not a busadv checkpoint"),
    (None, "plain PyTorch state dicts are not accepted"),
])
def test_foreign_files_are_refused(tmp_path, content, message):
    path = tmp_path / "foreign.pt"
    if content is None:
        torch.save(build_model("simplecnn", 32).state_dict(), path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    assert list_checkpoints(tmp_path) == []


def test_a_pickle_with_code_is_refused_not_executed(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path):
    _, path = _saved(tmp_path)
    with pytest.raises(CheckpointError, match="holds a simplecnn model, not a resnet50"):
        load_checkpoint(path, expected_arch="resnet50")


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_a_crash_mid_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    model, path = _saved(tmp_path)
    before = path.read_bytes()

    def crash(obj, f, *a, **k):
        with open(f, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, path, arch="simplecnn", image_size=32)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"], "temporary file left behind"


def test_the_named_imagenet_weights_file_is_torchvisions():
    from torchvision.models import ResNet50_Weights

    from busadv.models import IMAGENET_WEIGHTS_FILENAME

    assert ResNet50_Weights.IMAGENET1K_V2.url.endswith("/" + IMAGENET_WEIGHTS_FILENAME)


def test_simplecnn_pools_before_relu_with_the_same_function():
    from torch import nn

    model = build_model("simplecnn", 32).eval()
    reference = nn.Sequential(*[m for block in zip(model.features[0::3], model.features[2::3], model.features[1::3])
                                for m in block]).eval()
    x = model.normalize(torch.rand(2, 1, 32, 32))
    with torch.no_grad():
        assert torch.allclose(model.features(x), reference(x))
