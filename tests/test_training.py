"""busadv.training: the loop, the modes, the settings checked before work, the per-epoch watch."""

from __future__ import annotations

import pytest
import torch

from busadv.data import split_dataset
from busadv.models.checkpoints import load_checkpoint
from busadv.progress import Cancelled, ProgressEvent
from busadv.training import TrainConfig, train_model


def test_training_reports_batches_and_epochs_and_is_reproducible(small_phantoms):
    train_set, test_set = split_dataset(small_phantoms, 0.3, seed=0)
    events: list[ProgressEvent] = []
    config = TrainConfig.study(epochs=2, image_size=32, batch_size=16, device="cpu")
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
        result = train_model(TrainConfig.study(mode="fgsm", epsilon=8 / 255, epochs=1, image_size=32, device="cpu",
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
    ({"epochs": 0}, "epochs must be a whole number from 1"),
    ({"image_size": 4096}, "between 8 and 512 pixels"),
    ({"image_size": 30}, "multiple of 8"),
    ({"seed": -1}, "seed must be a whole number"),
    ({"split_policy": "whatever"}, "unknown split policy"),
    ({"mode": "fgsm", "epsilon": 2.0}, r"\[0, 1\]"),
    ({"arch": "vgg"}, "unknown model 'vgg'"),
    ({"mode": "boosting"}, "unknown training mode"),
    ({"class_balance": "maybe"}, "class_balance must be one of none, loss, sampler"),
    ({"mode": "fgsm-offline", "epsilon": 0.05, "clean_mix": 0.5}, "perturbed set only"),
    ({"adv_labels": "both"}, "adv_labels"),
    ({"batch_size": 0, "lr": -1}, r"batch size must be a whole number from 1 to 4096, got 0; learning rate must be"),
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


def test_resnet50_trains_and_evaluates_end_to_end(small_phantoms, tmp_path):
    from busadv.experiments import run_one

    subset = small_phantoms.subset(torch.arange(0, len(small_phantoms), 3))
    outcome = run_one(TrainConfig(arch="resnet50", image_size=32, epochs=1, batch_size=8, device="cpu"), subset,
                      ["fgsm"], [8 / 255], save=True, checkpoint_folder=tmp_path)
    assert [r.attack for r in outcome.rows] == ["none", "fgsm"]
    assert load_checkpoint(outcome.checkpoint, expected_arch="resnet50").arch == "resnet50"




# ------------------------------------------------------------------------------------------ recipes

def test_mode_defaults_fill_only_what_the_user_left_unset():
    best = TrainConfig(mode="fgsm", epsilon=8 / 255, image_size=32)
    assert (best.random_start, best.clean_mix, best.warmup_epochs) == (True, 0.5, 3)
    study = TrainConfig(mode="fgsm-study", epsilon=8 / 255, image_size=32)
    assert (study.adv_labels, study.random_start, study.clean_mix, study.warmup_epochs) == ("true", False, 0.0, 0)
    mine = TrainConfig(mode="fgsm", epsilon=8 / 255, image_size=32, clean_mix=0.0, random_start=False)
    assert (mine.random_start, mine.clean_mix, mine.warmup_epochs) == (False, 0.0, 3)


def test_epsilon_warms_up_linearly_over_the_first_epochs():
    from busadv.training.loop import epsilon_at

    config = TrainConfig(mode="fgsm", epsilon=0.04, warmup_epochs=2, image_size=32)
    assert [epsilon_at(config, e, p) for e, p in ((1, 0.0), (1, 0.5), (2, 0.0), (2, 0.5), (3, 0.0), (9, 0.9))] == \
        pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04, 0.04])
    assert epsilon_at(TrainConfig(mode="fgsm", epsilon=0.04, warmup_epochs=0, image_size=32), 1, 0.0) == 0.04


def test_class_balance_weights_and_sampler_even_out_the_classes(small_phantoms):
    from busadv.training.loop import class_weights, epoch_order

    weights = class_weights(small_phantoms, torch.device("cpu"))
    counts = small_phantoms.counts()
    assert weights.tolist() == pytest.approx([len(small_phantoms) / (3 * n) for n in counts.values()])
    config = TrainConfig(class_balance="sampler", image_size=32)
    drawn = torch.cat([epoch_order(small_phantoms, config, torch.Generator().manual_seed(s)) for s in range(30)])
    shares = torch.bincount(small_phantoms.labels[drawn], minlength=3).float() / len(drawn)
    assert shares.tolist() == pytest.approx([1 / 3] * 3, abs=0.03)


def test_a_malignant_weight_multiplies_only_the_malignant_share_of_the_loss(small_phantoms):
    from busadv.training.loop import class_weights, loss_weights

    cpu = torch.device("cpu")
    m = small_phantoms.classes.index("malignant")
    assert loss_weights(small_phantoms, TrainConfig(class_balance="none", image_size=32), cpu) is None
    plain = loss_weights(small_phantoms, TrainConfig(class_balance="none", critical_weight=3.0, image_size=32), cpu)
    assert plain.tolist() == [3.0 if c == m else 1.0 for c in range(3)]
    balanced = class_weights(small_phantoms, cpu)
    both = loss_weights(small_phantoms, TrainConfig(class_balance="loss", critical_weight=2.0, image_size=32), cpu)
    assert both.tolist() == pytest.approx([w * (2.0 if c == m else 1.0) for c, w in enumerate(balanced.tolist())])


def test_the_offline_protocol_trains_a_fresh_model_on_a_fixed_perturbed_set(small_phantoms):
    from busadv.training import MODES

    train_set, _ = split_dataset(small_phantoms, 0.3, seed=0)
    config = TrainConfig(mode="fgsm-offline", epsilon=0.05, epochs=1, image_size=32, device="cpu")
    perturbed = MODES.get("fgsm-offline").prepare(config, train_set, lambda event: None, train_model)
    change = (perturbed.images.float() - train_set.images.float()).abs()
    assert change.max() <= round(0.05 * 255) and change.mean() > 5, "every pixel moved by about eps (8-bit)"
    assert torch.equal(perturbed.labels, train_set.labels) and perturbed.names == train_set.names
    result = train_model(config, train_set)
    assert len(result.history) == 1 and result.history[0].train_loss > 0


def test_trades_loss_is_clean_cross_entropy_plus_beta_times_the_robustness_term(small_phantoms):
    from busadv.models import build_model
    from busadv.training.loop import batch_loss

    torch.manual_seed(0)
    model = build_model("simplecnn", 32)
    x, y = small_phantoms.floats(slice(0, 8)), small_phantoms.labels[:8]
    config = TrainConfig(mode="trades", epsilon=8 / 255, pgd_steps=2, image_size=32, trades_beta=0.0)
    plain, logits = batch_loss(model.eval(), x, y, config, 8 / 255, torch.Generator().manual_seed(0), None)
    assert plain.item() == pytest.approx(torch.nn.functional.cross_entropy(model(x), y).item(), rel=1e-5)
    strong = TrainConfig(mode="trades", epsilon=8 / 255, pgd_steps=2, image_size=32, trades_beta=6.0)
    robust, _ = batch_loss(model, x, y, strong, 8 / 255, torch.Generator().manual_seed(0), None)
    assert robust.item() > plain.item()
