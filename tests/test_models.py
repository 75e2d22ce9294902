"""busadv.models and its checkpoints: the registry, the architectures, safe loading and saving."""

from __future__ import annotations

import os

import pytest
import torch

from busadv.models import PretrainedWeightsUnavailable, build_model, imagenet_weights_available
from busadv.models.checkpoints import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint


def test_models_take_unit_range_grayscale_and_give_three_logits():
    for arch, size in (("simplecnn", 32), ("resnet50", 32)):
        model = build_model(arch, size).eval()
        with torch.no_grad():
            assert model(torch.rand(2, 1, size, size)).shape == (2, 3)


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
    (b"this is not a checkpoint", "not usable as a busadv checkpoint: the file is not a PyTorch checkpoint"),
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

    from busadv.models.resnet50 import IMAGENET_WEIGHTS_FILENAME

    assert ResNet50_Weights.IMAGENET1K_V2.url.endswith("/" + IMAGENET_WEIGHTS_FILENAME)


def test_simplecnn_pools_before_relu_with_the_same_function():
    from torch import nn

    model = build_model("simplecnn", 32).eval()
    reference = nn.Sequential(*[m for block in zip(model.features[0::3], model.features[2::3], model.features[1::3])
                                for m in block]).eval()
    x = model.normalize(torch.rand(2, 1, 32, 32))
    with torch.no_grad():
        assert torch.allclose(model.features(x), reference(x))
