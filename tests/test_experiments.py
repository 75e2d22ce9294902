"""busadv.experiments: the grid, the runner, the workflows users start, time estimates."""

from __future__ import annotations

import numpy as np
import pytest

from busadv.experiments import (
    ExperimentConfig,
    estimate_seconds,
    evaluate_job,
    experiment_job,
    measured_rates,
    run,
    study_preset,
    train_job,
)
from busadv.experiments.estimates import TimeEstimate
from busadv.results import load_store


def _tiny_grid(**overrides) -> ExperimentConfig:
    values = dict(archs=["simplecnn"], modes=["standard", "fgsm"], train_epsilons=[8 / 255], seeds=[0, 1],
                  test_attacks=["fgsm"], test_epsilons=[2 / 255, 0.05], epochs=1, batch_size=32,
                  image_sizes={"simplecnn": 32}, device="cpu", name="tiny", monitor_images=0)
    values.update(overrides)
    return ExperimentConfig(**values)


def test_grid_runs_standard_once_per_seed_and_adversarial_per_epsilon():
    config = _tiny_grid(train_epsilons=[0.05, 0.2, 0.5], seeds=[0, 1, 2])
    runs = config.runs()
    assert len(runs) == 3 * (1 + 3)
    assert sum(r.mode == "standard" for r in runs) == 3


def test_every_grid_setting_reaches_its_runs():
    """Review found runs() dropping pgd_steps, test_fraction and pretrained: every setting must arrive."""
    config = _tiny_grid(modes=["pgd"], train_pgd_steps=3, test_fraction=0.3, split_policy="random",
                        random_start=False, clean_mix=0.25, adv_labels="predicted", lr=0.002)
    for run_config in config.runs():
        assert (run_config.pgd_steps, run_config.test_fraction, run_config.split_policy) == (3, 0.3, "random")
        assert (run_config.random_start, run_config.clean_mix, run_config.adv_labels, run_config.lr) == \
            (False, 0.25, "predicted", 0.002)
    resnet = ExperimentConfig(archs=["resnet50"], modes=["standard"], seeds=[0], pretrained=True, epochs=1)
    assert all(r.pretrained for r in resnet.runs())


def test_study_preset_reproduces_the_seed_study():
    config = study_preset()
    assert config.archs == ["simplecnn", "resnet50"]
    assert config.modes == ["standard", "fgsm-study", "fgsm-offline"], "online and offline, the study's plain recipe"
    assert sorted(config.train_epsilons) == [0.05, 0.2, 0.5] and sorted(config.test_epsilons) == [0.05, 0.2, 0.5]
    assert config.epochs == 10 and config.batch_size == 32 and len(config.seeds) >= 5
    runs = config.runs()
    assert len(runs) == 2 * (1 + 3 + 3) * len(config.seeds)
    for run_config in runs:
        if run_config.mode != "standard":
            assert (run_config.adv_labels, run_config.random_start, run_config.clean_mix,
                    run_config.warmup_epochs) == ("true", False, 0.0, 0)


def test_experiment_rows_and_summary_agree():
    result = run(_tiny_grid())
    assert len(result.rows) == 2 * 2 * 3  # 2 recipes x 2 seeds x 3 conditions
    assert all(r.simulated for r in result.rows)
    assert len({r.run for r in result.rows}) == 4, "every run has its own id"
    for group in result.summary:
        members = [r.accuracy for r in result.rows if r.group_key() == group.first.group_key()]
        assert group.n_runs == len(members) == 2
        assert group.stat("accuracy").mean == pytest.approx(float(np.mean(members)))
        assert group.stat("accuracy").std == pytest.approx(float(np.std(members, ddof=1)))


@pytest.mark.parametrize("overrides, message", [
    ({"archs": ["alexnet"]}, "unknown model"),
    ({"test_epsilons": [3.0]}, r"\[0, 1\]"),
    ({"seeds": []}, "at least one"),
    ({"train_epsilons": []}, "need at least one training epsilon"),
    ({"test_attacks": ["fgsm", "bogus"]}, "test attacks: unknown attack 'bogus'"),
    ({"image_sizes": {"simplecnn": 4096}}, "between 8 and 512"),
    ({"seeds": [0, "a"]}, "seeds must be whole numbers"),
])
def test_bad_experiment_settings_are_refused_before_any_work(overrides, message):
    with pytest.raises(ValueError, match=message):
        _tiny_grid(**overrides)


def test_train_then_evaluate_on_the_checkpoints_own_test_split():
    trained = train_job({"epochs": 1, "image_size": 32, "device": "cpu", "test_epsilons": "8/255",
                         "test_attacks": ["fgsm"]})
    assert [r["attack"] for r in trained["rows"]] == ["none", "fgsm"]
    evaluated = evaluate_job({"checkpoint": trained["checkpoint"], "attacks": ["fgsm", "noise"],
                              "epsilons": ["8/255"]})
    assert evaluated["test_images"] == "the checkpoint's own held-out test split"
    by_condition = {(r["attack"], r["test_epsilon"]): r["accuracy"] for r in evaluated["rows"]}
    assert by_condition[("fgsm", 8 / 255)] == pytest.approx(trained["rows"][1]["accuracy"])
    assert evaluated["rows"][0]["n"] == trained["rows"][0]["n"]
    assert evaluated["rows"][0]["run"] == trained["rows"][0]["run"], "an evaluation names the run it evaluates"


def test_every_workflow_lands_in_the_results_store():
    trained = train_job({"epochs": 1, "image_size": 32, "device": "cpu", "test_epsilons": "8/255",
                         "test_attacks": ["fgsm"]})
    evaluate_job({"checkpoint": trained["checkpoint"], "attacks": ["pgd"], "epsilons": ["8/255"], "pgd_steps": 2})
    experiment_job(_tiny_grid(modes=["standard"], seeds=[0], test_epsilons=[8 / 255]).to_dict())
    rows, problems = load_store()
    assert problems == []
    runs = {r.run for r in rows}
    assert trained["rows"][0]["run"] in runs and len(runs) == 2
    clean_rows = [r for r in rows if r.run == trained["rows"][0]["run"] and r.attack == "none"]
    assert len(clean_rows) == 1, "the evaluation's clean row and the training's are one model and condition"


def test_evaluate_job_refuses_unknown_settings_and_bad_values():
    with pytest.raises(ValueError, match="unknown setting.*for evaluation"):
        evaluate_job({"checkpoint": "x.pt", "epsilon": 0.1})
    with pytest.raises(ValueError, match="attacks: unknown attack 'bogus'"):
        evaluate_job({"checkpoint": "x.pt", "attacks": ["bogus"]})


def test_measured_rates_come_from_saved_standard_runs(tmp_path):
    fallback, measured = measured_rates(tmp_path)
    assert not measured
    train_job({"epochs": 1, "image_size": 32, "device": "cpu", "test_epsilons": "8/255", "test_attacks": ["fgsm"]})
    rates, measured = measured_rates()
    assert measured and rates["simplecnn"] != fallback["simplecnn"] and rates["simplecnn"] > 0
    assert rates["resnet50"] == fallback["resnet50"]


def test_estimates_grow_with_adversarial_cost_and_the_watch():
    rates = {"simplecnn": 100.0, "resnet50": 3.0}
    standard = estimate_seconds(_tiny_grid(modes=["standard"]), rates, 100)
    study = dict(val_fraction=0.0, select="last")  # no validation split: the test set is watched instead
    fgsm = estimate_seconds(_tiny_grid(modes=["fgsm"], **study), rates, 100)
    fgsm_watched = estimate_seconds(_tiny_grid(modes=["fgsm"], monitor_images=64, **study), rates, 100)
    pgd = estimate_seconds(_tiny_grid(modes=["pgd"], train_pgd_steps=7, **study), rates, 100)
    assert standard < fgsm < fgsm_watched < pgd
    validated = estimate_seconds(_tiny_grid(modes=["fgsm"], monitor_images=64), rates, 100)  # 15% validation split
    assert fgsm < validated != fgsm_watched  # FGSM and PGD-5 on the validation images, not the watch
    refit = estimate_seconds(_tiny_grid(modes=["fgsm"], monitor_images=64, refit=True), rates, 100)
    assert validated + fgsm * 0.95 < refit < validated + fgsm * 1.05, "a second pass on every image, no check"


def test_a_grid_estimate_counts_testing_with_autoattack_likely_and_at_its_worst_case():
    from busadv.experiments import estimate_words, grid_seconds
    from busadv.experiments.estimates import AUTOATTACK, LIKELY_SHARES, autoattack_cost, rate_at

    rates = {"simplecnn": 100.0}
    plain = grid_seconds(_tiny_grid(test_attacks=["fgsm"]), rates, 100, 25)
    attacked = grid_seconds(_tiny_grid(test_attacks=["fgsm", "autoattack"]), rates, 100, 25)
    assert plain.autoattack == plain.autoattack_worst == 0
    assert plain.seconds > estimate_seconds(_tiny_grid(), rates, 100, 25)  # testing is counted
    per_image = 2 * 25 / rate_at(rates, "simplecnn", 32)  # 2 test epsilons x 25 images, in training-image seconds
    assert attacked.autoattack_worst == pytest.approx(4 * per_image * AUTOATTACK)  # 4 runs
    # The tiny grid: standard and FGSM, 2 seeds each; robust models resist longer, so cost more.
    likely = 2 * per_image * (autoattack_cost(*LIKELY_SHARES[False]) + autoattack_cost(*LIKELY_SHARES[True]))
    assert attacked.autoattack == pytest.approx(likely) and likely < attacked.autoattack_worst
    assert attacked.seconds == pytest.approx(plain.seconds + likely)
    words = estimate_words(attacked, measured=False)
    assert words.startswith("roughly ") and "AutoAttack about" in words and "up to" in words
    assert "two CPU cores" in words
    assert "AutoAttack" not in estimate_words(plain, measured=True) and "measured" in estimate_words(plain, True)
    assert estimate_words(TimeEstimate(float("nan")), True) == "" == estimate_words(TimeEstimate(), True)
    from busadv.experiments import grid_estimate

    assert grid_estimate(_tiny_grid(), 125, rates, False) == estimate_words(plain, False)  # 25 held out of 125
    assert grid_estimate(_tiny_grid(), 1, rates, False) == ""  # nothing left to train on


def test_autoattack_costs_more_on_models_that_resist_it():
    """Its members run on the images earlier members failed to flip: the worst case is every image resisting."""
    from busadv.experiments.estimates import AUTOATTACK, autoattack_cost

    assert autoattack_cost(1.0, 1.0) == pytest.approx(AUTOATTACK) and autoattack_cost(0.0, 0.0) == 0
    assert autoattack_cost(0.7, 0.1) < autoattack_cost(0.7, 0.45) < autoattack_cost(0.7, 0.7)


def test_a_grid_says_which_attack_is_running_while_it_evaluates(trained_simplecnn):
    """AutoAttack on a robust model takes minutes: the progress names the condition, and the throttle that
    thins a worker's events lets every change of phase through (it used to drop 'evaluating')."""
    from busadv.evaluation import evaluate
    from busadv.experiments.backends.base import Throttle
    from busadv.progress import ProgressEvent

    model, _, test_set = trained_simplecnn
    seen: list[str] = []
    evaluate(model, test_set, ["fgsm", "pgd"], [2 / 255], pgd_steps=2,
             progress=lambda e: seen.append(e.message))
    assert any(m.startswith("FGSM") and "2/255" in m for m in seen)
    assert any(m.startswith("PGD") and f"of {len(test_set)}" in m for m in seen)
    sent: list[str] = []
    throttle = Throttle(lambda e: sent.append(e.message), seconds=60)
    for message in ("epoch 40/40, batch 1/17", "epoch 40/40, batch 2/17", "evaluating on the held-out test set",
                    "AutoAttack ε=0.0157 (4/255): test images 1-64 of 156", "AutoAttack ε=0.0157 (4/255): 2"):
        throttle(ProgressEvent(0.5, message))
    assert sent == ["epoch 40/40, batch 1/17", "evaluating on the held-out test set",
                    "AutoAttack ε=0.0157 (4/255): test images 1-64 of 156"]


def test_the_grid_shows_the_newest_event_of_a_batch_drained_at_once():
    """A pool's queue is drained in one go: the last event (what runs now) is what the grid shows next,
    not the first one repeated as a keepalive."""
    import time

    from busadv.experiments.backends.base import Grid, RunTask
    from busadv.progress import ProgressEvent
    from busadv.training import TrainConfig

    shown: list[str] = []
    tasks = [RunTask(index=i, config=TrainConfig(), run_id=f"r{i}", label=f"run {i + 1}/2", cpus=1, gpus=0.0,
                     memory_gb=1.0) for i in range(2)]
    grid = Grid(tasks, lambda e: shown.append(e.message), every=0.05)
    for message in ("PGD ε=0.0157 (4/255): test images 1-64 of 156", "PGD ε=0.0157 (4/255): test images 2",
                    "PGD ε=0.0157 (4/255): test images 3"):
        grid.event(0, ProgressEvent(0.5, message))
    assert shown == ["run 1/2: PGD ε=0.0157 (4/255): test images 1-64 of 156"]
    grid.event(0, ProgressEvent(0.6, "AutoAttack ε=0.0157 (4/255): test images 65-128 of 156"))
    assert shown[-1].startswith("run 1/2: AutoAttack"), "a new phase is shown at once"
    grid.event(0, ProgressEvent(0.6, "AutoAttack ε=0.0157 (4/255): test images 129-156 of 156"))
    assert len(shown) == 2
    time.sleep(0.06)
    grid.tick()
    assert shown[-1] == "run 1/2: AutoAttack ε=0.0157 (4/255): test images 129-156 of 156"
    grid.tick()
    assert len(shown) == 3, "sent once, then only the keepalive repeats it"
