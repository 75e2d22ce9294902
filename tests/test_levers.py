"""The levers of a careful run: augmentation, AdamW and a schedule, the weight average, the validation split
that chooses the epoch (and never the test split), and the recipe fields that record them."""

import csv
import dataclasses
import io
import math

import pytest
import torch

from busadv.data import split_dataset
from busadv.data.phantoms import make_phantoms
from busadv.experiments import study_preset
from busadv.experiments.config import ExperimentConfig, frontier_preset
from busadv.experiments.estimates import measured_rates
from busadv.experiments.runner import run_one
from busadv.models.checkpoints import read_checkpoint_info
from busadv.results import read_rows, rows_to_csv
from busadv.training import TrainConfig, train_model
from busadv.training import modes as modes_module
from busadv.training.augment import augment_batch
from busadv.training.config import (
    AUGMENTATIONS,
    BEST_LEVERS,
    LEVERS,
    OPTIMIZERS,
    SCHEDULES,
    SENSITIVITY_FLOOR,
    STUDY_LEVERS,
)
from busadv.training.loop import carve_validation, epoch_message, sensitivity_shortfall
from busadv.training.optim import SELECTION_WINDOW, EpochChoice, ema_decay_at, first_eligible_epoch


@pytest.fixture(scope="module")
def phantoms():
    return make_phantoms(32, {"benign": 24, "malignant": 18, "normal": 14}, use_cache=False)


def _depth_image(n: int = 16, size: int = 32) -> torch.Tensor:
    """Bright near the skin (top), dark in the depth (bottom), a bright mark on the left: every B-mode has a way up."""
    ramp = torch.linspace(0.9, 0.1, size).view(1, 1, size, 1).expand(n, 1, size, size).clone()
    ramp[:, :, :, : size // 4] += 0.05
    return ramp.clamp(0, 1)


def test_augmentation_never_turns_an_image_upside_down_and_stays_in_range():
    x = _depth_image(64)
    out = augment_batch(x, "ultrasound", torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    top, bottom = out[:, :, :8].mean(dim=(1, 2, 3)), out[:, :, -8:].mean(dim=(1, 2, 3))
    assert bool((top > bottom).all()), "depth must still run down every augmented image"


def test_augmentation_draws_per_image_flips_left_right_and_is_seeded():
    x = _depth_image(64)
    a = augment_batch(x, "ultrasound", torch.Generator().manual_seed(1))
    b = augment_batch(x, "ultrasound", torch.Generator().manual_seed(1))
    assert torch.equal(a, b), "the run's generator decides every draw"
    left, right = a[:, :, :, :8].mean(dim=(1, 2, 3)), a[:, :, :, -8:].mean(dim=(1, 2, 3))
    flipped = int((right > left).sum())
    assert 10 < flipped < 54, "about half the images flipped left-right, each on its own draw"
    assert not torch.equal(a[0], a[1]), "two copies of one image get different draws"
    assert augment_batch(x, "none", torch.Generator()) is x


def test_adversarial_batches_are_augmented_before_the_attack(phantoms, monkeypatch):
    seen: list[torch.Tensor] = []
    original = modes_module.MODES.get("fgsm").perturb
    assert original is not None

    def spy(model, x, y, config, eps, generator):
        seen.append(x.detach().clone())
        return original(model, x, y, config, eps, generator)

    spied = dataclasses.replace(modes_module.MODES.get("fgsm"), perturb=spy)
    modes_module.register_mode(spied, replace=True)
    request_restore = dataclasses.replace(spied, perturb=original)
    train_set, _ = split_dataset(phantoms, 0.25, seed=0)
    try:
        _check_augmented(train_set, seen)
    finally:
        modes_module.register_mode(request_restore, replace=True)


def _check_augmented(train_set, seen):
    for augment in ("none", "ultrasound"):
        seen.clear()
        config = TrainConfig(mode="fgsm", epsilon=4 / 255, epochs=1, image_size=32, device="cpu", augment=augment,
                             val_fraction=0.0, select="last", batch_size=len(train_set), warmup_epochs=0)
        train_model(config, train_set)
        raw = train_set.floats()
        batch = seen[0]
        as_given = any(torch.allclose(batch[0], raw[i], atol=1e-6) for i in range(len(raw)))
        assert as_given == (augment == "none"), f"augment={augment}: the attacked batch is what training saw"


def test_validation_split_comes_from_the_training_side_stratified_with_groups_whole(phantoms):
    train_set, test_set = split_dataset(phantoms, 0.25, seed=3)
    fit, val = carve_validation(train_set, TrainConfig(image_size=32, seed=3, val_fraction=0.2))
    assert val is not None
    assert set(fit.names) | set(val.names) == set(train_set.names) and not set(fit.names) & set(val.names)
    assert not set(val.names) & set(test_set.names)
    assert set(val.labels.tolist()) == {0, 1, 2}, "every class in the validation split"
    fit_groups, val_groups = set(fit.near_groups.tolist()), set(val.near_groups.tolist())
    assert not fit_groups & val_groups, "a near-duplicate group never straddles fit and validation"
    again = carve_validation(train_set, TrainConfig(image_size=32, seed=3, val_fraction=0.2))[1]
    assert again is not None and again.names == val.names, "seeded"
    assert carve_validation(train_set, TrainConfig.study(image_size=32))[1] is None


def test_a_validation_split_too_small_to_stratify_is_refused_clearly():
    tiny = make_phantoms(16, {"benign": 3, "malignant": 2, "normal": 2}, use_cache=False)
    with pytest.raises(ValueError, match="cannot carve a validation split from 7 training images"):
        train_model(TrainConfig(image_size=16, epochs=1, device="cpu", val_fraction=0.1), tiny)


def test_the_test_split_never_chooses_anything(phantoms):
    """Same training images, two very different test sets: the same weights, epochs and choice."""
    train_set, test_set = split_dataset(phantoms, 0.25, seed=0)
    scrambled = dataclasses.replace(test_set, labels=test_set.labels.flip(0),
                                    images=torch.flip(test_set.images, dims=[-1, -2]))
    config = TrainConfig(epochs=3, image_size=32, device="cpu", batch_size=16)
    first = train_model(config, train_set, test_set)
    second = train_model(config, train_set, scrambled)
    assert first.chosen_epoch == second.chosen_epoch
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [dataclasses.replace(h, seconds=0) for h in first.history] == \
        [dataclasses.replace(h, seconds=0) for h in second.history]
    assert all(h.test_accuracy is None and h.val_balanced_accuracy is not None for h in first.history)


def test_select_best_keeps_the_epoch_with_the_best_validation_score(phantoms):
    train_set, test_set = split_dataset(phantoms, 0.25, seed=0)
    config = TrainConfig(epochs=4, image_size=32, device="cpu", batch_size=16, ema_decay=0.0)
    result = train_model(config, train_set, test_set)
    scores = [h.score for h in result.history]
    start = first_eligible_epoch(config)
    assert start == 3, "one cycle over 4 epochs warms up for 1.2 of them: epochs 1-2 are never chosen"
    judged = {e: sum(scores[max(0, e - SELECTION_WINDOW):e]) / len(scores[max(0, e - SELECTION_WINDOW):e])
              for e in range(start, len(scores) + 1)}
    assert result.chosen_epoch == max(judged, key=lambda e: (judged[e], -e))
    last = train_model(dataclasses.replace(config, select="last"), train_set, test_set)
    assert last.chosen_epoch == 4


def test_select_best_both_and_best_sensitive_score_an_adversarial_epoch_by_clean_and_robust_together(phantoms):
    """Robust accuracy alone peaked at epoch 14-16 of 40 on BUSI seed 1 (clean 0.54): best-both weighs both."""
    train_set, test_set = split_dataset(phantoms, 0.25, seed=0)
    config = TrainConfig(mode="fgsm", epsilon=4 / 255, epochs=3, image_size=32, device="cpu", batch_size=16,
                         ema_decay=0.0, select="best-both")
    result = train_model(config, train_set, test_set)
    for h in result.history:
        assert h.score == pytest.approx((h.val_balanced_accuracy + h.val_pgd_balanced_accuracy) / 2)
    robust_only = train_model(dataclasses.replace(config, select="best"), train_set, test_set)
    for h in robust_only.history:
        assert h.score == pytest.approx(h.val_pgd_balanced_accuracy + 1e-3 * h.val_balanced_accuracy)
    standard = train_model(dataclasses.replace(config, mode="standard", epsilon=0.0), train_set, test_set)
    assert all(h.score == h.val_balanced_accuracy for h in standard.history), "no attack: clean alone"
    # best-sensitive: BA alone chose 8/255 epochs that find under half the cancers under attack; it docks that.
    sensitive = train_model(dataclasses.replace(config, select="best-sensitive"), train_set, test_set)
    for h in sensitive.history:
        assert 0.0 <= h.val_pgd_sensitivity <= 1.0 and 0.0 <= h.val_sensitivity <= 1.0
        both = (h.val_balanced_accuracy + h.val_pgd_balanced_accuracy) / 2
        assert h.score == pytest.approx(both - max(0.0, SENSITIVITY_FLOOR - h.val_pgd_sensitivity))
        assert f"cancers found {h.val_pgd_sensitivity:.2f} under PGD-5" in epoch_message(h)
    standard = train_model(dataclasses.replace(config, mode="standard", epsilon=0.0, select="best-sensitive"),
                           train_set, test_set)
    for h in standard.history:
        assert h.score == pytest.approx(h.val_balanced_accuracy - max(0.0, SENSITIVITY_FLOOR - h.val_sensitivity))
        assert h.val_pgd_sensitivity is None
    with pytest.raises(ValueError, match="select=best-both chooses"):
        TrainConfig(image_size=32, select="best-both", val_fraction=0.0)


@pytest.mark.parametrize(("sensitivity", "select", "docked"), [
    (0.2, "best-sensitive", 0.3), (0.5, "best-sensitive", 0.0), (0.9, "best-sensitive", 0.0),
    (0.2, "best-both", 0.0), (0.2, "best", 0.0), (math.nan, "best-sensitive", 0.0)])
def test_sensitivity_shortfall_is_docked_only_below_the_floor_and_only_by_best_sensitive(sensitivity, select, docked):
    assert sensitivity_shortfall(sensitivity, select) == pytest.approx(docked)


def test_the_weight_average_is_what_is_judged_and_saved(phantoms):
    train_set, _ = split_dataset(phantoms, 0.25, seed=0)
    plain = train_model(TrainConfig(epochs=2, image_size=32, device="cpu", ema_decay=0.0, select="last"), train_set)
    averaged = train_model(TrainConfig(epochs=2, image_size=32, device="cpu", ema_decay=0.99, select="last"),
                           train_set)
    weights = [torch.equal(a, b) for a, b in zip(plain.model.state_dict().values(),
                                                 averaged.model.state_dict().values(), strict=True)]
    assert not all(weights), "same seed and steps: the average differs from the raw weights"
    assert ema_decay_at(0.995, 0) == pytest.approx(0.1) and ema_decay_at(0.995, 10_000) == 0.995


def test_one_lucky_epoch_does_not_choose_the_model():
    """BUSI seed 1: a warm-up epoch scored 0.64 on 97 validation images and was kept; a smoothed,
    post-warm-up choice takes the plateau instead."""
    model = torch.nn.Linear(1, 1)
    scores = [0.33, 0.55, 0.47, 0.64, 0.53, 0.54, 0.70, 0.52, 0.60, 0.62, 0.63, 0.62]
    choice = EpochChoice(window=3, start=4)
    for epoch, score in enumerate(scores, start=1):
        choice.offer(epoch, score, model)
    assert choice.best_epoch == 12 and choice.best_score == pytest.approx((0.62 + 0.63 + 0.62) / 3)
    raw = EpochChoice()
    for epoch, score in enumerate(scores, start=1):
        raw.offer(epoch, score, model)
    assert raw.best_epoch == 7, "unsmoothed, the single lucky epoch would win"
    assert first_eligible_epoch(TrainConfig(epochs=40, schedule="onecycle")) == 13
    assert first_eligible_epoch(TrainConfig(epochs=40, schedule="cosine")) == 2
    assert first_eligible_epoch(TrainConfig(epochs=40, schedule="constant")) == 1
    assert first_eligible_epoch(TrainConfig(epochs=1, schedule="onecycle")) == 1


def test_patience_stops_a_run_that_no_longer_improves():
    choice = EpochChoice(patience=2)
    model = torch.nn.Linear(1, 1)
    for epoch, score in enumerate([0.5, 0.6, 0.55, 0.58], start=1):
        choice.offer(epoch, score, model)
    assert choice.best_epoch == 2 and choice.exhausted(4) and not choice.exhausted(3)
    assert not EpochChoice(patience=0).exhausted(100)
    assert not choice.offer(5, math.nan, model), "a NaN score never wins"


def test_levers_are_checked_before_any_work():
    for bad, message in (({"augment": "vertical"}, "augment"), ({"optimizer": "sgd"}, "optimizer"),
                         ({"ema_decay": 1.5}, "ema_decay"), ({"val_fraction": 0.9}, "val_fraction"),
                         ({"select": "best", "val_fraction": 0.0}, "validation split"),
                         ({"patience": -1}, "patience"), ({"schedule": "step"}, "schedule"),
                         ({"critical_weight": 0.0}, "critical_weight"), ({"critical_weight": float("nan")}, "critical"),
                         ({"critical_weight": True}, "critical_weight"), ({"critical_weight": "2"}, "critical")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(image_size=32, **bad)


def test_a_heavier_malignant_weight_makes_the_model_call_more_images_malignant(small_phantoms):
    def malignant_calls(weight: float) -> int:
        config = TrainConfig(epochs=4, image_size=32, device="cpu", batch_size=16, critical_weight=weight,
                             val_fraction=0.0, select="last", seed=0)
        clean = run_one(config, small_phantoms, test_attacks=[], test_epsilons=[]).rows[0]
        return sum(row[small_phantoms.classes.index("malignant")] for row in clean.confusion)

    assert malignant_calls(8.0) > malignant_calls(1.0)


def test_levers_are_recorded_in_rows_checkpoints_and_csv(phantoms, tmp_path):
    config = TrainConfig(epochs=2, image_size=32, device="cpu", batch_size=16)
    outcome = run_one(config, phantoms, test_attacks=[], test_epsilons=[], save=True, checkpoint_folder=tmp_path)
    row = outcome.rows[0]
    assert {name: getattr(row, name) for name in LEVERS} == BEST_LEVERS
    assert row.chosen_epoch in (1, 2)
    back = read_rows(rows_to_csv(outcome.rows))[0]
    assert {name: getattr(back, name) for name in LEVERS} == BEST_LEVERS and back.chosen_epoch == row.chosen_epoch
    blob = torch.load(outcome.checkpoint, map_location="cpu", weights_only=True)
    assert {name: blob["train_config"][name] for name in LEVERS} == BEST_LEVERS
    assert blob["metrics"]["chosen_epoch"] == row.chosen_epoch and blob["data"]["n_val"] > 0


def test_a_results_file_from_before_the_levers_reads_as_the_study_recipe(phantoms):
    outcome = run_one(TrainConfig.study(epochs=1, image_size=32, device="cpu"), phantoms, test_attacks=[],
                      test_epsilons=[])
    lines = list(csv.DictReader(io.StringIO(rows_to_csv(outcome.rows))))
    old_columns = [c for c in lines[0] if c not in LEVERS and c != "chosen_epoch"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=old_columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(lines)
    row = read_rows(out.getvalue())[0]
    assert {name: getattr(row, name) for name in LEVERS} == STUDY_LEVERS


def test_the_study_preset_keeps_the_studys_recipe_exactly():
    for run in study_preset(seeds=[0, 1]).runs():
        assert {name: getattr(run, name) for name in LEVERS} == STUDY_LEVERS
        assert (run.epochs, run.batch_size, run.lr, run.class_balance) == (10, 32, 1e-3, "none")
    plain = TrainConfig.study(image_size=32)
    assert (plain.optimizer, plain.schedule, plain.augment, plain.ema_decay, plain.select) == \
        ("adam", "constant", "none", 0.0, "last")


def test_the_frontier_preset_and_its_narrowing():
    full = frontier_preset()
    runs = full.runs()
    assert sorted({round(r.epsilon * 255) for r in runs}) == [0, 1, 2, 4, 8] and sorted({r.seed for r in runs}) == \
        list(range(5))
    assert len(runs) == 5 * 5 and set(full.test_attacks) == {"autoattack", "pgd"}
    assert all(r.class_balance == "loss" and r.augment == "ultrasound" for r in runs)
    narrow = frontier_preset(seeds=[0, 1, 2], train_epsilons=[4 / 255], test_attacks=["autoattack"],
                             test_epsilons=[4 / 255])
    assert len(narrow.runs()) == 3 * 2 and narrow.epochs == full.epochs and narrow.ema_decay == full.ema_decay


def test_a_grid_with_no_preset_trains_the_best_recipe_like_train_does():
    from busadv.cli import build_parser
    from busadv.cli.commands import grid_config

    command = ["experiment", "--modes", "fgsm", "--train-epsilons", "8/255"]
    for grid in (ExperimentConfig(modes=["standard", "fgsm"], train_epsilons=[8 / 255]),
                 grid_config(build_parser().parse_args(command))):
        for run in grid.runs():
            assert {name: getattr(run, name) for name in LEVERS} == BEST_LEVERS
            assert (run.epochs, run.lr, run.class_balance) == (40, 2e-3, "loss"), run.mode
    told = grid_config(build_parser().parse_args(["experiment", "--modes", "fgsm", "--class-balance", "none"]))
    assert {run.class_balance for run in told.runs()} == {"none"}


def test_cli_train_defaults_to_the_best_recipe_and_keeps_the_studys_on_request(capsys):
    import os
    from pathlib import Path

    from busadv.cli import main

    folder = Path(os.environ["BUSADV_CHECKPOINTS"])
    common = ["train", "--epochs", "1", "--image-size", "32", "--test-attacks", "fgsm", "--test-epsilons", "2/255"]
    said = []
    for extra in ([], ["--recipe", "study"], ["--ema-decay", "0", "--class-balance", "none"], ["--refit"]):
        assert main(common + extra) == 0
        said.append(next(line for line in capsys.readouterr().out.splitlines() if line.startswith("weights tested")))
    assert said == ["weights tested: epoch 1 of 1, chosen on the validation split (best-both)",
                    "weights tested: the model after its last epoch (1)",
                    "weights tested: epoch 1 of 1, chosen on the validation split (best-both)",
                    "weights tested: validation chose epoch 1 of 1; then trained again on every training image for "
                    "that many epochs, the last kept"]
    recorded = [torch.load(p, weights_only=True)["train_config"]
                for p in sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime_ns)]
    best, study, mixed, refit = recorded
    assert refit["refit"] is True and {k: refit[k] for k in LEVERS if k != "refit"} == \
        {k: v for k, v in BEST_LEVERS.items() if k != "refit"}
    assert {k: best[k] for k in LEVERS} == BEST_LEVERS and best["class_balance"] == "loss" and best["lr"] == 2e-3
    assert {k: study[k] for k in LEVERS} == STUDY_LEVERS and study["class_balance"] == "none" and study["lr"] == 1e-3
    assert mixed["ema_decay"] == 0 and mixed["class_balance"] == "none" and mixed["augment"] == "ultrasound"


def test_the_jobs_page_offers_the_recipes_train_offers():
    from busadv.app.recipes import RECIPES, recipe_settings
    from busadv.training.config import BEST_TRAINING, STUDY_TRAINING, TRAINING_RECIPES

    assert tuple(RECIPES) == TRAINING_RECIPES
    assert recipe_settings("best") == BEST_TRAINING and recipe_settings("study") == STUDY_TRAINING


def test_the_train_form_defaults_to_the_best_recipe_and_offers_the_studys(monkeypatch):
    from busadv.jobs import JobStore
    from tests.test_app import JOBS, open_app, store

    monkeypatch.setattr(JobStore, "dispatch", lambda self: [])  # jobs stay queued: only what is submitted counts
    at = open_app(JOBS)
    assert at.number_input(key="t_epochs").value == 40 and at.number_input(key="t_lr").value == pytest.approx(2e-3)
    at.button(key="t_start").click().run()
    best = store().list()[0].config
    assert {k: best[k] for k in LEVERS} == BEST_LEVERS and best["class_balance"] == "loss" and best["epochs"] == 40
    at.radio(key="t_recipe").set_value("study").run()
    assert at.number_input(key="t_epochs").value == 10 and at.number_input(key="t_lr").value == pytest.approx(1e-3)
    at.button(key="t_start").click().run()
    study = store().list()[0].config
    assert {k: study[k] for k in LEVERS} == STUDY_LEVERS and study["class_balance"] == "none"
    assert (study["epochs"], study["lr"]) == (10, 1e-3)


def test_a_bare_run_config_is_the_best_recipe_and_old_records_keep_what_they_trained():
    best = TrainConfig(mode="fgsm", epsilon=8 / 255)
    assert best.class_balance == "loss" and {k: getattr(best, k) for k in LEVERS} == BEST_LEVERS
    assert TrainConfig.study(mode="fgsm", epsilon=8 / 255).class_balance == "none"
    assert TrainConfig(mode="fgsm", epsilon=8 / 255, class_balance=None).class_balance == "none"  # the mode's own
    # A checkpoint written before class balance was a setting trained on the mode's own (plain cross-entropy).
    old = TrainConfig.recorded({"mode": "fgsm", "epsilon": 8 / 255, "epochs": 10, "lr": 1e-3})
    assert old.class_balance == "none" and old.augment == "none"
    assert TrainConfig.recorded({**best.to_dict()}).class_balance == "loss"


def test_the_experiment_form_defaults_to_the_best_recipe_and_offers_the_studys(monkeypatch):
    from busadv.jobs import JobStore
    from tests.test_app import JOBS, open_app, store

    monkeypatch.setattr(JobStore, "dispatch", lambda self: [])
    at = open_app(JOBS)
    assert at.number_input(key="x_epochs").value == 40 and at.number_input(key="x_lr").value == pytest.approx(2e-3)
    # The class-balance choice says what the recipe will apply, not what each mode would on its own.
    assert at.selectbox(key="x_balance").options[0] == "default: cross-entropy weighted by inverse class frequency"
    assert at.selectbox(key="t_balance").options[0] == at.selectbox(key="x_balance").options[0]
    assert at.selectbox(key="x_select").options[0] == "default: best on validation: clean and robust balanced accuracy"
    assert at.number_input(key="x_cw").value == 1.0
    at.button(key="x_start").click().run()
    runs = ExperimentConfig(**store().list()[0].config).runs()
    assert runs and all({k: getattr(r, k) for k in LEVERS} == BEST_LEVERS for r in runs)
    assert {(r.epochs, r.lr, r.class_balance) for r in runs} == {(40, 2e-3, "loss")}
    at.selectbox(key="x_select").select_index(4).run()  # best-sensitive, then the study's recipe: ignored
    at.radio(key="x_recipe").set_value("study").run()
    assert at.number_input(key="x_epochs").value == 10
    assert at.selectbox(key="x_balance").options[0] == "default: plain cross-entropy over the images as they come"
    assert at.selectbox(key="x_select").options[0] == "default: the last epoch"
    assert at.selectbox(key="x_select").proto.disabled, "no validation split to choose on"
    at.button(key="x_start").click().run()
    runs = ExperimentConfig(**store().list()[0].config).runs()
    assert all({k: getattr(r, k) for k in LEVERS} == STUDY_LEVERS for r in runs)
    assert {(r.epochs, r.lr, r.class_balance) for r in runs} == {(10, 1e-3, "none")}


def test_the_frontier_button_fills_in_the_frontier_preset_exactly(monkeypatch):
    from busadv.jobs import JobStore
    from tests.test_app import JOBS, open_app, store

    monkeypatch.setattr(JobStore, "dispatch", lambda self: [])
    at = open_app(JOBS)
    at.radio(key="x_recipe").set_value("study").run()  # the button must set the recipe back, not keep this
    at.button(key="x_frontier").click().run()
    assert at.text_input(key="x_train_eps").value == "1/255, 2/255, 4/255, 8/255"
    assert at.radio(key="x_recipe").value == "best" and at.number_input(key="x_epochs").value == 40
    at.button(key="x_start").click().run()
    submitted = ExperimentConfig(**store().list()[0].config)
    assert [r.to_dict() for r in submitted.runs()] == [r.to_dict() for r in frontier_preset().runs()]
    assert submitted.test_attacks == frontier_preset().test_attacks
    assert submitted.test_epsilons == pytest.approx(frontier_preset().test_epsilons)
    at.button(key="x_preset").click().run()  # and back to the study's, recipe included
    at.button(key="x_start").click().run()
    submitted = ExperimentConfig(**store().list()[0].config)
    assert [r.to_dict() for r in submitted.runs()] == [r.to_dict() for r in study_preset().runs()]


def test_both_forms_set_every_lever_and_a_lever_left_empty_follows_the_recipe(monkeypatch):
    """Augmentation, optimizer, schedule, weight decay, weight average and validation share: the levers `train`
    and `experiment` take, in the app; the recipe's value shown while left alone."""
    from busadv.jobs import JobStore
    from tests.test_app import JOBS, open_app, store

    monkeypatch.setattr(JobStore, "dispatch", lambda self: [])
    at = open_app(JOBS)
    assert at.selectbox(key="t_augment").options[0] == f"default: {BEST_LEVERS['augment']}"
    assert at.number_input(key="t_ema_decay").value is None
    assert at.number_input(key="t_ema_decay").proto.placeholder == f"the recipe's: {BEST_LEVERS['ema_decay']:g}"
    at.selectbox(key="t_augment").select_index(1 + list(AUGMENTATIONS).index("none"))
    at.selectbox(key="t_schedule").select_index(1 + list(SCHEDULES).index("cosine"))
    at.number_input(key="t_ema_decay").set_value(0.0)
    at.number_input(key="t_val_fraction").set_value(0.25)
    at.run()
    at.button(key="t_start").click().run()
    config = store().list()[0].config
    assert (config["augment"], config["schedule"], config["ema_decay"], config["val_fraction"]) == \
        ("none", "cosine", 0.0, 0.25)
    assert config["optimizer"] == BEST_LEVERS["optimizer"] and config["weight_decay"] == BEST_LEVERS["weight_decay"]
    trained = TrainConfig.from_dict({k: v for k, v in config.items()
                                     if k not in ("test_attacks", "test_epsilons", "eval_pgd_steps")})
    assert trained.schedule == "cosine" and trained.val_fraction == 0.25 and trained.select == BEST_LEVERS["select"]

    # No validation split: the epoch kept is the last, and the choice is off rather than an error.
    at.number_input(key="t_val_fraction").set_value(0.0).run()
    assert at.selectbox(key="t_select").proto.disabled and not at.error
    at.button(key="t_start").click().run()
    assert store().list()[0].config["select"] == "last"
    # The study's recipe with a validation split of its own may choose.
    at.radio(key="t_recipe").set_value("study").run()
    at.number_input(key="t_val_fraction").set_value(0.2).run()
    assert not at.selectbox(key="t_select").proto.disabled
    assert at.selectbox(key="t_augment").options[0] == "default: none"

    # The experiment form: the levers reach every run; a preset puts them back to the recipe's.
    at.selectbox(key="x_optimizer").select_index(1 + list(OPTIMIZERS).index("adam"))
    at.number_input(key="x_weight_decay").set_value(0.05).run()
    at.button(key="x_start").click().run()
    runs = ExperimentConfig(**store().list()[0].config).runs()
    assert {(r.optimizer, r.weight_decay) for r in runs} == {("adam", 0.05)}
    at.button(key="x_frontier").click().run()
    assert at.selectbox(key="x_optimizer").value == 0, "the recipe's, whatever it is"
    assert at.number_input(key="x_weight_decay").value is None


def test_a_run_too_short_for_its_weight_average_says_what_the_average_really_was(phantoms):
    from busadv.training.optim import ema_ramp_note

    assert ema_ramp_note(0.995, 680) == ("the weight average's decay ramps up to 0.987 over this run's 680 steps; "
                                         "the setting 0.995 would take effect after 1,790")
    assert ema_decay_at(0.995, 1790) == 0.995 and ema_decay_at(0.995, 1789) < 0.995
    assert ema_ramp_note(0.9, 680) == "" and ema_ramp_note(0.0, 680) == ""
    messages: list[str] = []
    train_model(TrainConfig(epochs=1, image_size=32, batch_size=16, device="cpu", val_fraction=0.2), phantoms,
                progress=lambda event: messages.append(event.message))
    assert "the weight average's decay ramps up to" in messages[0], messages[0]
    assert "validation images carved from the training side choose the epoch" in messages[0], messages[0]


@pytest.mark.parametrize("ema_decay", [0.995, 0.0])  # the watch reads the weight average, or the trained model
def test_the_per_epoch_watch_of_the_test_split_never_changes_what_is_learnt(phantoms, ema_decay):
    """The watch (a clean test pass, FGSM and PGD on 64 test images after each epoch) costs time, not results:
    it only reads the model, and its attacks draw their random starts from their own generators, never from the
    global one that dropout draws from, so a run without it (`--watch-images 0`) learns the same weights. (A
    watch that drew one number from the global generator fails this test.)"""
    train_set, test_set = split_dataset(phantoms, 0.25, seed=0)
    models = []
    for watch in (64, 0):
        config = TrainConfig(mode="fgsm", epsilon=8 / 255, epochs=2, image_size=32, batch_size=16, device="cpu",
                             val_fraction=0.0, select="last", monitor_images=watch, ema_decay=ema_decay)
        result = train_model(config, train_set, test_set)
        assert (result.history[-1].test_pgd_accuracy is None) == (watch == 0)
        models.append(result.model.state_dict())
    assert all(torch.equal(models[0][k], models[1][k]) for k in models[0])


def test_a_run_that_watches_the_test_split_says_it_chooses_nothing_there(phantoms):
    """A run without a validation split (the study's, or one refit for an epoch count chosen elsewhere) reports
    test numbers every epoch; its first line says they are for the record, so no reader takes them for a choice."""
    train_set, test_set = split_dataset(phantoms, 0.25, seed=0)
    messages: list[str] = []
    train_model(TrainConfig(epochs=1, image_size=32, batch_size=16, device="cpu", val_fraction=0.0, select="last"),
                train_set, test_set, progress=lambda event: messages.append(event.message))
    assert "the test images are watched after each epoch for the record" in messages[0], messages[0]
    assert "never to choose" in messages[0] and "test acc" in messages[-1], messages[-1]


def test_the_command_line_sets_how_many_test_images_the_per_epoch_watch_attacks(phantoms, monkeypatch):
    """--watch-images 0 keeps the clean test pass and drops FGSM/PGD (and with them the overfitting flag); the
    default attacks 64. A grid passes it to every run."""
    from busadv.cli import build_parser, main
    from busadv.cli.commands import grid_config

    seen: list[TrainConfig] = []
    real = train_model

    def spy(config, *args, **kwargs):
        seen.append(config)
        return real(config, *args, **kwargs)

    monkeypatch.setattr("busadv.experiments.runner.train_model", spy)
    common = ["train", "--mode", "fgsm", "--epsilon", "8/255", "--epochs", "1", "--image-size", "32",
              "--val-fraction", "0", "--select", "last", "--test-attacks", "fgsm", "--test-epsilons", "2/255"]
    assert main(common + ["--watch-images", "0"]) == 0 and main(common) == 0
    assert [c.monitor_images for c in seen] == [0, 64]
    assert grid_config(build_parser().parse_args(["experiment", "--watch-images", "16"])).monitor_images == 16
    assert grid_config(build_parser().parse_args(["experiment"])).monitor_images == 64


def test_refit_trains_again_on_every_training_image_for_the_epochs_validation_chose(phantoms, tmp_path):
    """Validation chooses the epoch count; the model then learns from the validation images too. The test split
    still chooses nothing and is not looked at by either pass."""
    train_set, test_set = split_dataset(phantoms, 0.25, seed=0)
    config = TrainConfig(epochs=4, image_size=32, device="cpu", batch_size=16, ema_decay=0.0, refit=True)
    messages: list[str] = []
    result = train_model(config, train_set, test_set, progress=lambda event: messages.append(event.message))
    chooser = train_model(dataclasses.replace(config, refit=False), train_set, test_set)
    k = chooser.chosen_epoch
    assert result.chosen_epoch == k and [h.score for h in result.history] == [h.score for h in chooser.history]
    assert len(result.refit_history) == k and result.n_val == chooser.n_val > 0
    assert all(h.val_balanced_accuracy is None and h.test_accuracy is None for h in result.refit_history)
    again = train_model(dataclasses.replace(config, refit=False, epochs=k, val_fraction=0.0, select="last"),
                        train_set)
    assert all(torch.equal(a, b) for a, b in zip(result.model.state_dict().values(),
                                                 again.model.state_dict().values(), strict=True)), \
        "the second pass is a plain run of the chosen length on every training image"
    assert any(m.startswith(f"validation chose epoch {k} of 4: training again on all {len(train_set)} training "
                            f"images for {k} epochs") for m in messages), messages
    scrambled = dataclasses.replace(test_set, labels=test_set.labels.flip(0))
    other = train_model(config, train_set, scrambled)
    assert all(torch.equal(a, b) for a, b in zip(result.model.state_dict().values(),
                                                 other.model.state_dict().values(), strict=True))
    outcome = run_one(config, phantoms, test_attacks=[], test_epsilons=[], save=True, checkpoint_folder=tmp_path)
    assert outcome.rows[0].refit is True and read_rows(rows_to_csv(outcome.rows))[0].refit is True
    blob = torch.load(outcome.checkpoint, map_location="cpu", weights_only=True)
    assert blob["train_config"]["refit"] is True and blob["data"]["n_val"] > 0
    assert blob["data"]["n_train"] + blob["data"]["n_test"] == len(phantoms), "it learnt from every training image"
    second = blob["metrics"]["refit_history"]
    assert len(second) == blob["metrics"]["chosen_epoch"] and all(h["val_balanced_accuracy"] is None for h in second)
    info = read_checkpoint_info(outcome.checkpoint)
    assert info.train_seconds == pytest.approx(sum(h["seconds"] for h in [*blob["history"], *second]))
    assert measured_rates(tmp_path)[1] is False, "a refit run's two passes give no plain training rate"
    odd = dataclasses.replace(info, history=[{"seconds": "soon"}, {"seconds": float("nan")}, {"seconds": 2}, "x"],
                              metrics={"refit_history": [{"seconds": True}, {"seconds": 3.5}, None]})
    assert odd.train_seconds == 5.5, "a checkpoint's odd epoch times count as nothing, never as an error"
    for bad in ({"val_fraction": 0.0, "select": "last"}, {"select": "last"}, {"refit": "yes"}):
        with pytest.raises(ValueError, match="refit"):
            TrainConfig(image_size=32, **{"refit": True, **bad})
