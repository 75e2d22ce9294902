"""busadv.experiments and busadv.workflows: the grid, its summary, exports and the trap detector."""

from __future__ import annotations

import csv
import json
import statistics

import numpy as np
import pytest

from busadv.experiments import ExperimentConfig, diagnose, run, study_preset, summarize, write_rows
from busadv.workflows import evaluate_job, train_job


def _tiny_grid(**overrides) -> ExperimentConfig:
    values = dict(archs=["simplecnn"], modes=["standard", "fgsm"], train_epsilons=[8 / 255], seeds=[0, 1],
                  test_attacks=["fgsm"], test_epsilons=[2 / 255, 0.05], epochs=1, batch_size=32,
                  image_sizes={"simplecnn": 32}, device="cpu", name="tiny")
    values.update(overrides)
    return ExperimentConfig(**values)


def test_grid_runs_standard_once_per_seed_and_adversarial_per_epsilon():
    config = _tiny_grid(train_epsilons=[0.05, 0.2, 0.5], seeds=[0, 1, 2])
    runs = config.runs()
    assert len(runs) == 3 * (1 + 3)
    assert sum(r.mode == "standard" for r in runs) == 3


def test_study_preset_reproduces_the_seed_study():
    config = study_preset()
    assert config.archs == ["simplecnn", "resnet50"] and config.modes == ["standard", "fgsm"]
    assert sorted(config.train_epsilons) == [0.05, 0.2, 0.5] and sorted(config.test_epsilons) == [0.05, 0.2, 0.5]
    assert config.epochs == 10 and config.batch_size == 32 and len(config.seeds) >= 3
    assert len(config.runs()) == 2 * 4 * len(config.seeds)


def test_experiment_rows_and_summary_agree(monkeypatch):
    monkeypatch.setenv("BUSADV_DATA", "")
    result = run(_tiny_grid())
    # one row per run and test condition: 3 runs (standard + fgsm@8/255) x 2 seeds... = 2 models x 2 seeds x 3 conditions
    assert len(result.rows) == 2 * 2 * 3
    assert all(r["simulated"] for r in result.rows)
    for group in result.summary:
        members = [r["accuracy"] for r in result.rows
                   if (r["arch"], r["train_mode"], r["train_epsilon"], r["attack"], r["test_epsilon"])
                   == (group["arch"], group["train_mode"], group["train_epsilon"], group["attack"], group["test_epsilon"])]
        assert group["n_runs"] == len(members) == 2
        assert group["accuracy_mean"] == pytest.approx(float(np.mean(members)))
        assert group["accuracy_std"] == pytest.approx(float(np.std(members, ddof=1)))
        assert sorted(group["accuracy_values"]) == sorted(members)


def test_summary_of_one_run_has_zero_spread_not_nan():
    rows = [{"arch": "simplecnn", "train_mode": "standard", "train_epsilon": 0.0, "attack": "none",
             "test_epsilon": 0.0, "accuracy": 0.7, "seed": 0}]
    (group,) = summarize(rows)
    assert group["accuracy_mean"] == 0.7 and group["accuracy_std"] == 0.0 and group["n_runs"] == 1


def test_label_leaking_and_gradient_masking_are_flagged():
    def row(mode, attack, eps, acc, seed):
        return {"arch": "simplecnn", "train_mode": mode, "train_epsilon": 0.5 if mode == "fgsm" else 0.0,
                "attack": attack, "test_epsilon": eps, "accuracy": acc, "seed": seed}

    rows = [row("fgsm", "none", 0.0, 0.60, s) for s in (0, 1)] + [row("fgsm", "fgsm", 0.5, 0.90, s) for s in (0, 1)]
    rows += [row("fgsm", "pgd", 0.5, 0.95, s) for s in (0, 1)]
    rows += [row("standard", "none", 0.0, 0.8, s) for s in (0, 1)] + [row("standard", "fgsm", 0.5, 0.1, s) for s in (0, 1)]
    notes = diagnose(summarize(rows))
    assert any("label leaking" in n and "fgsm-trained at eps=0.5 (~127.5/255)" in n for n in notes)
    assert any("PGD accuracy is above FGSM accuracy at eps=0.5" in n for n in notes)
    assert not any(n.startswith("simplecnn standard") for n in notes)


def test_a_model_that_answers_one_class_under_attack_is_flagged():
    rows = [{"arch": "resnet50", "train_mode": "standard", "train_epsilon": 0.0, "attack": a, "test_epsilon": e,
             "accuracy": acc, "seed": 0, "dominant_class": "benign", "dominant_share": share}
            for a, e, acc, share in (("none", 0.0, 0.7, 0.5), ("fgsm", 0.05, 0.1, 0.6), ("fgsm", 0.5, 0.56, 1.0))]
    notes = diagnose(summarize(rows))
    assert len(notes) == 1 and "eps=0.5" in notes[0] and "answers 'benign' for almost every image" in notes[0]


def test_runs_with_different_recipes_averaged_together_are_flagged():
    rows = [{"arch": "simplecnn", "train_mode": "standard", "train_epsilon": 0.0, "attack": "none", "test_epsilon": 0.0,
             "accuracy": 0.7, "seed": 0, "epochs": epochs, "image_size": 128, "adv_labels": "true"} for epochs in (3, 10)]
    (note,) = diagnose(summarize(rows))
    assert "different settings (epochs [3, 10])" in note


def test_rows_are_written_as_csv_and_json(tmp_path):
    rows = [{"attack": "none", "accuracy": 0.5, "confusion": [[1, 0], [0, 1]]}, {"attack": "fgsm", "accuracy": 0.25}]
    with (write_rows(rows, tmp_path / "r.csv")).open() as handle:
        read = list(csv.DictReader(handle))
    assert [float(r["accuracy"]) for r in read] == [0.5, 0.25] and json.loads(read[0]["confusion"]) == [[1, 0], [0, 1]]
    assert json.loads(write_rows(rows, tmp_path / "r.json").read_text()) == rows
    with pytest.raises(ValueError, match=r"\.csv or \.json"):
        write_rows(rows, tmp_path / "r.xlsx")


@pytest.mark.parametrize("overrides, message", [
    ({"archs": ["alexnet"]}, "unknown model"),
    ({"test_epsilons": [3.0]}, "outside the \\[0, 1\\] pixel scale"),
    ({"seeds": []}, "at least one"),
    ({"train_epsilons": []}, "need at least one training epsilon"),
])
def test_bad_experiment_settings_are_refused_before_any_work(overrides, message):
    with pytest.raises(ValueError, match=message):
        _tiny_grid(**overrides)


def test_train_then_evaluate_on_the_checkpoints_own_test_split():
    trained = train_job({"epochs": 1, "image_size": 32, "device": "cpu", "test_epsilons": "8/255"})
    assert [r["attack"] for r in trained["rows"]] == ["none", "fgsm"]
    evaluated = evaluate_job({"checkpoint": trained["checkpoint"], "attacks": ["fgsm", "noise"],
                              "epsilons": ["8/255"]})
    assert evaluated["test_images"] == "the checkpoint's own held-out test split"
    by_condition = {(r["attack"], r["test_epsilon"]): r["accuracy"] for r in evaluated["rows"]}
    assert by_condition[("fgsm", 8 / 255)] == pytest.approx(trained["rows"][1]["accuracy"])
    assert evaluated["rows"][0]["n"] == trained["rows"][0]["n"]


def test_evaluate_job_refuses_unknown_settings():
    with pytest.raises(ValueError, match="unknown evaluation setting"):
        evaluate_job({"checkpoint": "x.pt", "epsilon": 0.1})


def test_rows_survive_a_csv_round_trip_with_types():
    from busadv.experiments import read_rows_csv, rows_to_csv

    rows = [{"arch": "simplecnn", "train_mode": "fgsm", "train_epsilon": 0.05, "attack": "fgsm", "test_epsilon": 0.2,
             "accuracy": 0.5, "seed": 3, "simulated": True, "confusion": [[1, 2], [3, 4]], "checkpoint": ""}]
    back = read_rows_csv(rows_to_csv(rows))
    assert back[0]["seed"] == 3 and back[0]["accuracy"] == 0.5 and back[0]["simulated"] is True
    assert back[0]["confusion"] == [[1, 2], [3, 4]] and back[0]["checkpoint"] is None


@pytest.mark.parametrize("text, message", [
    ("name,score\nx,1\n", "missing column"),
    ("arch,train_mode,train_epsilon,attack,test_epsilon,accuracy,seed\nsimplecnn,standard,0,none,0,high,0\n",
     "line 2: accuracy 'high'"),
])
def test_foreign_csv_files_are_refused(text, message):
    from busadv.experiments import read_rows_csv

    with pytest.raises(ValueError, match=message):
        read_rows_csv(text)


def test_result_rows_count_each_checkpoint_and_condition_once():
    from busadv.workflows import result_rows

    newer = {"rows": [{"checkpoint": "a.pt", "attack": "fgsm", "test_epsilon": 0.1, "accuracy": 0.3}]}
    older = {"rows": [{"checkpoint": "a.pt", "attack": "fgsm", "test_epsilon": 0.1, "accuracy": 0.9},
                      {"checkpoint": "a.pt", "attack": "none", "test_epsilon": 0.0, "accuracy": 0.8}]}
    rows = result_rows([newer, older, None])
    assert [(r["attack"], r["accuracy"]) for r in rows] == [("fgsm", 0.3), ("none", 0.8)]


def test_measured_rates_come_from_saved_standard_runs(tmp_path):
    from busadv.experiments import FALLBACK_RATES, measured_rates

    assert measured_rates(tmp_path) == FALLBACK_RATES
    train_job({"epochs": 1, "image_size": 32, "device": "cpu", "test_epsilons": "8/255"})
    rates = measured_rates()
    assert rates["simplecnn"] != FALLBACK_RATES["simplecnn"] and rates["simplecnn"] > 0
    assert rates["resnet50"] == FALLBACK_RATES["resnet50"]
