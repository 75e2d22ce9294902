"""busadv.results: the typed row, groups over the full recipe, files in and out, and the per-run diagnoses."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import fields

import pytest

from busadv.evaluation import ConditionResult
from busadv.results import (
    RECIPE_FIELDS,
    ResultRow,
    diagnose,
    overfit_epoch,
    read_rows,
    rows_for,
    rows_to_csv,
    summarize,
    unique_rows,
    write_rows,
)
from busadv.training import NOT_RECIPE, TrainConfig

BENIGN_ONLY = [[40, 0, 0], [20, 0, 0], [12, 0, 0]]   # answers "benign" for every image
HEALTHY = [[30, 6, 4], [5, 13, 2], [2, 1, 9]]


def row(run: str = "r0", seed: int = 0, attack: str = "none", eps: float = 0.0, confusion=HEALTHY,
        **recipe) -> ResultRow:
    """One row built the way busadv builds them (rows_for), from a confusion matrix."""
    config = TrainConfig(**{"arch": "simplecnn", "image_size": 32, "seed": seed, **recipe})
    condition = ConditionResult(attack=attack, epsilon=eps, confusion=confusion)
    (made,) = rows_for([condition], run=run, seed=seed, train_config=config, data_fingerprint="fp",
                       data_source="test", simulated=True, eval_pgd_steps=10)
    return made


def test_every_setting_that_changes_a_result_is_a_column():
    columns = {f.name for f in fields(ResultRow)}
    config_fields = [f.name for f in fields(TrainConfig) if f.name not in NOT_RECIPE]
    assert len(RECIPE_FIELDS) == len(config_fields) + 1  # + the data's fingerprint
    assert set(RECIPE_FIELDS) <= columns
    made = row(mode="fgsm", epsilon=0.05, random_start=True, clean_mix=0.5, lr=0.01)
    assert (made.train_mode, made.train_epsilon, made.random_start, made.clean_mix, made.lr) == \
        ("fgsm", 0.05, True, 0.5, 0.01)


def test_runs_that_differ_only_in_random_start_are_never_averaged_together():
    rows = [row(f"a{s}", s, mode="fgsm", epsilon=0.05, random_start=False) for s in (0, 1)]
    rows += [row(f"b{s}", s, mode="fgsm", epsilon=0.05, random_start=True) for s in (0, 1)]
    groups = summarize(rows)
    assert len(groups) == 2 and all(g.n_runs == 2 for g in groups)
    assert {g.random_start for g in groups} == {False, True}


def test_measures_imbalance_cannot_fool():
    collapsed = row(confusion=BENIGN_ONLY)
    assert collapsed.accuracy == pytest.approx(40 / 72)
    assert collapsed.balanced_accuracy == pytest.approx(1 / 3)
    assert collapsed.malignant_sensitivity == 0.0 and collapsed.collapsed
    assert collapsed.majority_rate == pytest.approx(40 / 72)
    healthy = row()
    assert not healthy.collapsed and healthy.malignant_sensitivity == pytest.approx(13 / 20)


def test_summary_counts_collapsed_runs_and_can_leave_them_out():
    rows = [row("a", 0), row("b", 1, confusion=BENIGN_ONLY), row("c", 2)]
    (group,) = summarize(rows)
    assert group.n_runs == 3 and group.collapsed_runs == 1
    (healthy_only,) = summarize(rows, exclude_collapsed=True)
    assert healthy_only.n_runs == 2 and healthy_only.collapsed_runs == 0
    assert healthy_only.stat("balanced_accuracy").mean > group.stat("balanced_accuracy").mean


def test_summary_of_one_run_has_zero_spread_not_nan():
    (group,) = summarize([row()])
    stat = group.stat("accuracy")
    assert stat.std == 0.0 and stat.mean == pytest.approx(52 / 72) and stat.values == (pytest.approx(52 / 72),)


def test_rows_survive_csv_and_json_round_trips(tmp_path):
    rows = [row("a", 3, mode="fgsm", epsilon=0.05, random_start=True), row("a", 3, "fgsm", 8 / 255, mode="fgsm",
                                                                          epsilon=0.05, random_start=True)]
    for suffix in (".csv", ".json"):
        path = write_rows(rows, tmp_path / f"r{suffix}")
        back = read_rows(path.read_bytes(), suffix)
        assert back == rows


def test_csv_columns_read_as_run_then_recipe_then_condition():
    """The mode settings are inherited (declared first); the file still opens with the run and its recipe."""
    header = rows_to_csv([row(mode="fgsm", epsilon=0.05, class_balance="loss")]).splitlines()[0].split(",")
    assert header[:3] == ["run", "seed", "arch"]
    at = header.index("split_policy")
    assert header[at + 1:at + 7] == ["adv_labels", "random_start", "clean_mix", "warmup_epochs", "class_balance",
                                     "trades_beta"]
    assert header.index("trades_beta") < header.index("attack") < header.index("accuracy")


@pytest.mark.parametrize("text, message", [
    ("name,score\nx,1\n", "missing column"),
    ("arch,train_mode,train_epsilon,attack,test_epsilon,accuracy,seed\nsimplecnn,standard,0,none,0,high,0\n",
     "line 2: accuracy 'high'"),
    ("arch,train_mode,train_epsilon,attack,test_epsilon,accuracy,seed\nsimplecnn,standard,0,=evil,0,0.5,0\n",
     "line 2: unknown attack '=evil'"),
    ("arch,train_mode,train_epsilon,attack,test_epsilon,accuracy,seed\nvgg99,standard,0,none,0,0.5,0\n",
     "unknown model 'vgg99'"),
    ("arch,train_mode,train_epsilon,attack,test_epsilon,accuracy,seed\nsimplecnn,magic,0,none,0,0.5,0\n",
     "unknown training mode 'magic'"),
    ("arch,train_mode,train_epsilon,attack,test_epsilon,accuracy,seed\nsimplecnn,standard,0,none,abc,0.5,0\n",
     "test_epsilon 'abc'"),
    ("arch,train_mode,train_epsilon,attack,test_epsilon,accuracy,seed,confusion\n"
     "simplecnn,standard,0,none,0,0.5,0,\"[[1,2],[3,4]]\"\n", "confusion .* is not a 3 x 3 matrix"),
    ("arch,train_mode,train_epsilon,attack,test_epsilon,accuracy,seed,run\nsimplecnn,standard,0,none,0,0.5,0,"
     + "x" * 5000 + "\n", "longer than any busadv value|field larger"),
])
def test_foreign_or_hostile_csv_files_are_refused_by_line(text, message):
    with pytest.raises(ValueError, match=message):
        read_rows(text)


def test_binary_junk_is_refused_as_not_a_results_file():
    with pytest.raises(ValueError, match="binary file"):
        read_rows(b"\x89PNG\r\n\x1a\n\x00\x00junk")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_rows(b"arch,\xff\xfe\xfa")


def test_csv_export_neutralises_formula_cells_and_import_restores_them():
    made = row(run="=HYPERLINK(\"http://x\")")
    text = rows_to_csv([made])
    cells = next(r for r in csv.DictReader(io.StringIO(text)))
    assert cells["run"].startswith("'=")
    assert read_rows(text)[0].run == made.run


def test_a_model_evaluated_twice_counts_once():
    newer, older = row("a", 0), row("a", 0, confusion=BENIGN_ONLY)
    assert unique_rows([newer, older, row("b", 1)]) == [newer, row("b", 1)]


# ------------------------------------------------------------------------------------------ diagnoses

def _model(run, seed, clean, attacked: dict, **recipe) -> list[ResultRow]:
    return [row(run, seed, confusion=clean, **recipe)] + [
        row(run, seed, attack, eps, confusion=conf, **recipe) for (attack, eps), conf in attacked.items()]


def test_a_model_that_always_answers_benign_is_flagged_as_collapsed_clean_and_attacked():
    rows = []
    for seed in range(3):
        rows += _model(f"c{seed}", seed, BENIGN_ONLY, {("pgd", 8 / 255): BENIGN_ONLY}, mode="fgsm", epsilon=8 / 255)
    (diagnosis,) = [d for d in diagnose(rows) if d.kind == "collapse"]
    assert diagnosis.n_runs == 3 and len(diagnosis.runs) == 3
    assert "3 of 3 run(s)" in diagnosis.message and "the clean test set" in diagnosis.message
    assert "'benign'" in diagnosis.message and "not robustness" in diagnosis.message


def test_collapse_is_counted_per_run_not_hidden_by_the_group_mean():
    rows = _model("h0", 0, HEALTHY, {}) + _model("h1", 1, HEALTHY, {}) + _model("x2", 2, BENIGN_ONLY, {})
    (diagnosis,) = diagnose(rows)
    assert diagnosis.kind == "collapse" and diagnosis.runs == ("x2",) and diagnosis.seeds == (2,)
    assert "1 of 3 run(s)" in diagnosis.message


def test_a_healthy_robust_looking_model_gets_no_diagnosis():
    attacked = {("fgsm", 2 / 255): [[25, 9, 6], [7, 10, 3], [3, 2, 7]], ("pgd", 2 / 255): [[22, 11, 7], [8, 9, 3],
                                                                                         [4, 2, 6]],
                ("noise", 2 / 255): HEALTHY, ("fgsm", 8 / 255): [[10, 20, 10], [12, 4, 4], [5, 5, 2]],
                ("pgd", 8 / 255): [[5, 25, 10], [14, 2, 4], [6, 5, 1]]}
    assert diagnose(_model("ok", 0, HEALTHY, attacked)) == []


def test_label_leaking_is_flagged_for_fgsm_training_on_true_labels():
    better = [[36, 3, 1], [2, 17, 1], [1, 1, 10]]
    rows = _model("l0", 0, HEALTHY, {("fgsm", 0.5): better}, mode="fgsm", epsilon=0.5, adv_labels="true")
    kinds = {d.kind for d in diagnose(rows)}
    assert "label_leaking" in kinds
    predicted = _model("p0", 0, HEALTHY, {("fgsm", 0.5): better}, mode="fgsm", epsilon=0.5, adv_labels="predicted")
    assert {d.kind for d in diagnose(predicted)} == {"gradient_masking"}


def test_pgd_weaker_than_fgsm_is_gradient_masking():
    weak_fgsm = [[10, 20, 10], [12, 4, 4], [5, 5, 2]]
    (diagnosis,) = diagnose(_model("m", 0, HEALTHY, {("fgsm", 4 / 255): weak_fgsm, ("pgd", 4 / 255): HEALTHY}))
    assert diagnosis.kind == "gradient_masking" and "PGD" in diagnosis.message and "above FGSM" in diagnosis.message


def test_noise_as_strong_as_fgsm_and_accuracy_rising_with_epsilon_are_gradient_masking():
    hurt = [[20, 12, 8], [8, 8, 4], [4, 4, 4]]
    (noise,) = diagnose(_model("n", 0, HEALTHY, {("fgsm", 8 / 255): hurt, ("noise", 8 / 255): hurt}))
    assert "random noise hurts as much as FGSM" in noise.message
    rising = _model("r", 0, HEALTHY, {("fgsm", 2 / 255): hurt, ("fgsm", 0.2): HEALTHY})
    messages = " ".join(d.message for d in diagnose(rising))
    assert "rises from" in messages and "still leaves balanced accuracy" not in messages


def test_catastrophic_overfitting_is_read_from_the_watch_history():
    config = TrainConfig(arch="simplecnn", image_size=32, mode="fgsm", epsilon=8 / 255)
    history = [{"epoch": 1, "test_fgsm_accuracy": 0.4, "test_pgd_accuracy": 0.35},
               {"epoch": 2, "test_fgsm_accuracy": 0.5, "test_pgd_accuracy": 0.40},
               {"epoch": 3, "test_fgsm_accuracy": 0.8, "test_pgd_accuracy": 0.05}]
    rows = rows_for([ConditionResult("none", 0.0, HEALTHY)], run="co", seed=0, train_config=config,
                    data_fingerprint="fp", data_source="t", simulated=True, eval_pgd_steps=10, history=history)
    (diagnosis,) = diagnose(rows)
    assert diagnosis.kind == "catastrophic_overfitting" and "epoch 3" in diagnosis.message
    steady = [dict(h, test_pgd_accuracy=0.3) for h in history]
    quiet = rows_for([ConditionResult("none", 0.0, HEALTHY)], run="ok", seed=0, train_config=config,
                     data_fingerprint="fp", data_source="t", simulated=True, eval_pgd_steps=10, history=steady)
    assert diagnose(quiet) == []


def test_a_model_still_at_chance_sets_no_best_for_catastrophic_overfitting():
    """BUSI seed 2, epoch 1: the model answered benign for all (balanced accuracy 1/3, PGD accuracy = the benign
    share 0.57); epoch 2 learned (0.52) and PGD fell to 0.12. That is learning, not catastrophic overfitting."""
    learning = [{"epoch": 1, "val_balanced_accuracy": 0.333, "val_accuracy": 0.573, "val_fgsm_accuracy": 0.573,
                 "val_pgd_accuracy": 0.573},
                {"epoch": 2, "val_balanced_accuracy": 0.521, "val_fgsm_accuracy": 0.229, "val_pgd_accuracy": 0.115},
                {"epoch": 3, "val_balanced_accuracy": 0.51, "val_fgsm_accuracy": 0.479, "val_pgd_accuracy": 0.438}]
    assert overfit_epoch(learning) is None
    later = [*learning, {"epoch": 4, "val_balanced_accuracy": 0.6, "val_fgsm_accuracy": 0.7, "val_pgd_accuracy": 0.1}]
    assert overfit_epoch(later) == 4, "once it has learned, a PGD collapse under FGSM strength is still caught"


def test_fgsm_trained_model_resisting_fgsm_far_more_than_pgd_is_catastrophic_overfitting():
    broken = [[5, 25, 10], [14, 2, 4], [6, 5, 1]]      # balanced accuracy 0.10
    mild = [[10, 20, 10], [12, 4, 4], [5, 5, 2]]        # 0.21: a gap of 0.11, within a healthy model's spread
    recipe = {"mode": "fgsm", "epsilon": 8 / 255}
    (diagnosis,) = diagnose(_model("co", 0, HEALTHY, {("fgsm", 8 / 255): HEALTHY, ("pgd", 8 / 255): broken}, **recipe))
    assert diagnosis.kind == "catastrophic_overfitting" and "PGD only 0.10" in diagnosis.message
    assert diagnose(_model("ok", 0, HEALTHY, {("fgsm", 8 / 255): mild, ("pgd", 8 / 255): broken}, **recipe)) == []
    # the same gap is no symptom for a model not trained on one-step perturbations, nor beyond the training epsilon
    assert diagnose(_model("std", 0, HEALTHY, {("fgsm", 8 / 255): HEALTHY, ("pgd", 8 / 255): broken})) == []
    far = {("fgsm", 0.2): HEALTHY, ("pgd", 0.2): broken}
    assert "catastrophic_overfitting" not in {d.kind for d in diagnose(_model("far", 0, HEALTHY, far, **recipe))}


def test_json_rows_are_plain_values(tmp_path):
    path = write_rows([row()], tmp_path / "r.json")
    (item,) = json.loads(path.read_text())
    assert item["recall_malignant"] == pytest.approx(13 / 20) and item["confusion"] == HEALTHY


def test_the_cli_table_flags_a_model_that_always_answers_benign(capsys):
    from busadv.cli.output import print_diagnosis_texts, print_rows, print_summary

    collapsed = [row("c", 0, confusion=BENIGN_ONLY), row("c", 0, "pgd", 8 / 255, confusion=BENIGN_ONLY)]
    print_rows(collapsed)
    print_summary(summarize(collapsed))
    print_diagnosis_texts([d.text() for d in diagnose(collapsed)])
    out = capsys.readouterr().out
    assert "majority-class rate of this test set: 0.556" in out and "always answering 'benign'" in out
    assert out.count("COLLAPSED: 'benign' for 100%") == 2
    assert "1 of 1" in out and "0.333" in out  # summary: collapsed runs counted, balanced accuracy at chance
    assert "WARNING: Answers one class for (almost) everything" in out
