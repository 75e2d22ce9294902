"""A grid whose epoch counts other seeds choose: `experiment --epochs-chosen-on 5-9`.

The choosing seeds train the recipe with its validation split; their validation scores, pooled per model, mode
and training epsilon, choose each group's epoch count; the grid's own seeds then train that many epochs on every
training image and keep the last. The seeds tested choose nothing, on their test images or their validation.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from busadv.cli import main
from busadv.experiments import ExperimentConfig, experiment_job, run
from busadv.experiments.backends import plan_grid
from busadv.experiments.estimates import choosing_share, grid_seconds
from busadv.experiments.runner import choose_epoch_counts, describe_epoch_choice, run_one
from busadv.results import ResultRow, kept_weights, read_rows, recipe_labels, write_rows
from busadv.results.comparison import compare_recipes
from busadv.results.tradeoff import epsilon_tradeoffs
from busadv.training import TrainConfig, format_seed_list, parse_seed_list
from busadv.training.epoch_count import pooled_epoch_count
from busadv.training.optim import first_eligible_epoch

EPS = 8 / 255


def _grid(**overrides) -> ExperimentConfig:
    values = dict(archs=["simplecnn"], modes=["standard", "fgsm"], train_epsilons=[EPS], seeds=[0, 1],
                  test_attacks=["fgsm"], test_epsilons=[2 / 255], epochs=4, image_sizes={"simplecnn": 32},
                  device="cpu", name="chosen", monitor_images=0, epochs_chosen_on="5-6", workers=1)
    values.update(overrides)
    return ExperimentConfig(**values)


@pytest.mark.parametrize("seeds, text", [([5, 6, 7, 8, 9], "5-9"), ([9, 5, 6, 12], "5-6, 9, 12"), ([3], "3"),
                                         ([], "")])
def test_seed_lists_are_recorded_short_and_read_back(seeds, text):
    assert format_seed_list(seeds) == text
    assert parse_seed_list(text) == sorted(set(seeds))


@pytest.mark.parametrize("chosen_on", ["[x](http://e.vil)", "5" * 80, 7, None])
def test_a_stored_row_names_its_choosing_seeds_only_when_they_read_as_seeds(chosen_on):
    said = kept_weights({"epochs": 26, "chosen_epoch": 26, "select": "last", "epochs_chosen_on": chosen_on})
    assert said == "the model after its last epoch (26)"


def test_the_grid_chooses_each_groups_epochs_on_other_seeds_then_trains_its_own_for_them(tmp_path):
    config = _grid()
    chooser = config.epoch_chooser()
    assert chooser.seeds == [5, 6] and chooser.test_attacks == [] and not chooser.epochs_chosen_on
    assert all(r.val_fraction == 0.15 and r.select == "best-both" for r in chooser.runs()), "validation chooses"
    result = run(config)
    choosing = [r for r in result.rows if r.seed in (5, 6)]
    assert {r.attack for r in choosing} == {"none"}, "the choosing runs are tested clean only"
    assert {(r.val_fraction, r.select, r.epochs_chosen_on, r.epochs_chosen_by) for r in choosing} == \
        {(0.15, "best-both", "", "")}
    tested = [r for r in result.rows if r.seed in (0, 1)]
    assert len(tested) == 2 * 2 * 2 and {r.attack for r in tested} == {"none", "fgsm"}
    assert {(r.val_fraction, r.select, r.epochs_chosen_on, r.epochs_chosen_by) for r in tested} == \
        {(0.0, "last", "5-6", "best-both")}, "each refit records the rule that chose its count"
    assert set(result.epoch_choices) == {("simplecnn", "standard", 0.0), ("simplecnn", "fgsm", EPS)}
    for (arch, mode, eps), choice in result.epoch_choices.items():
        group = [r for r in tested if (r.arch, r.train_mode, r.train_epsilon) == (arch, mode, eps)]
        assert {r.epochs for r in group} == {choice.epoch}, "the grid's runs train for their group's count"
        assert {r.chosen_epoch for r in group} == {choice.epoch}, "and keep their last epoch"
        assert len(choice.per_run) == 2 and 1 <= choice.epoch <= 4
    labels = recipe_labels(result.summary)
    by_seed = {g.first.seed: labels[g.recipe] for g in result.summary if g.first.train_mode == "standard"}
    assert "epochs chosen on 5-6" in by_seed[0] and "epochs chosen on" not in by_seed[5], by_seed
    path = write_rows(result.rows, tmp_path / "rows.csv")
    assert [(r.epochs_chosen_on, r.epochs_chosen_by) for r in read_rows(path.read_text())] == \
        [(r.epochs_chosen_on, r.epochs_chosen_by) for r in result.rows], "the record survives a results file"


def test_the_pooled_choice_is_the_one_the_epochs_command_makes_from_the_choosing_runs():
    chooser = _grid(modes=["standard"]).epoch_chooser()
    outcomes = [run_one(c, test_attacks=(), test_epsilons=()) for c in chooser.runs()]
    (choice,) = choose_epoch_counts(outcomes).values()
    expected = pooled_epoch_count([o.history for o in outcomes], first_eligible_epoch(outcomes[0].config))
    assert (choice.epoch, choice.per_run, choice.score) == (expected.epoch, expected.per_run, expected.score)


def test_each_choosing_runs_own_choice_is_listed_seed_by_seed_whichever_ended_first():
    def outcome(seed: int, best: int) -> SimpleNamespace:
        scores = [0.9 if epoch == best else 0.5 for epoch in range(1, 9)]
        return SimpleNamespace(config=TrainConfig(seed=seed, epochs=8, schedule="constant"),
                               history=[{"epoch": e, "score": v} for e, v in enumerate(scores, start=1)])

    ended = [outcome(7, 8), outcome(5, 6), outcome(6, 7)]  # in the order two workers finished them
    (choice,) = choose_epoch_counts(ended).values()  # type: ignore[arg-type]
    assert choice.per_run == (6, 7, 8)
    assert "seed by seed: 6, 7, 8" in describe_epoch_choice(("simplecnn", "standard", 0.0), choice)


def test_each_group_trains_for_its_own_count_and_the_backend_plans_those_runs():
    config = _grid(train_epsilons=[2 / 255, EPS])
    counts = {("simplecnn", "standard", 0.0): 3, ("simplecnn", "fgsm", 2 / 255): 2, ("simplecnn", "fgsm", EPS): 4}
    runs = config.runs(counts)
    assert [(r.mode, r.epsilon, r.epochs) for r in runs[::2]] == [("standard", 0.0, 3), ("fgsm", 2 / 255, 2),
                                                                   ("fgsm", EPS, 4)]
    plan = plan_grid(config, run_one, "p", runs=runs)
    assert [t.config.epochs for t in plan.tasks] == [3, 3, 2, 2, 4, 4], "the backend runs the runs it is given"
    assert [t.config.epochs for t in plan_grid(config, run_one, "p").tasks] == [4] * 6


@pytest.mark.parametrize("overrides, message", [
    ({"epochs_chosen_on": "0-2"}, r"seed\(s\) 0-1 both choose the epoch counts and are tested"),
    ({"val_fraction": 0.0, "select": "last"}, "the choosing runs need val_fraction > 0"),
    ({"patience": 3}, "no patience"),
    ({"refit": True}, "no refit"),
    ({"epochs_chosen_on": "9-5"}, "runs backwards"),
    ({"epochs_chosen_on": "5-x"}, "not a whole number"),
    ({"epochs_chosen_on": [5, True]}, "must be seeds like 5-9"),
    ({"epochs_chosen_on": 5}, "must be seeds like 5-9"),
    ({"epochs_chosen_on": "100-10100"}, "20002 runs to choose the epoch counts is more than 10000"),
])
def test_bad_choosing_seeds_are_refused_before_any_work(overrides, message):
    with pytest.raises(ValueError, match=message):
        _grid(**overrides)


def test_a_run_records_which_seeds_chose_its_epochs_and_never_its_own():
    run_config = TrainConfig(epochs=26, val_fraction=0.0, select="last", epochs_chosen_on="9,5-8")
    assert run_config.epochs_chosen_on == "5-9" and run_config.recipe()["epochs_chosen_on"] == "5-9"
    assert TrainConfig.recorded({"seed": 1}).epochs_chosen_on == "", "a checkpoint from before reads as not chosen"
    for values, message in (({"seed": 7}, "seed 7 is among the seeds that chose its epoch count"),
                            ({"val_fraction": 0.15, "select": "best"}, "set val_fraction 0, select last"),
                            ({"epochs_chosen_on": "a"}, "not a whole number"),
                            ({"epochs_chosen_by": "last"}, "epochs_chosen_by must be one of best, best-both"),
                            ({"epochs_chosen_by": "best", "epochs_chosen_on": ""}, "set epochs_chosen_on")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(**{"epochs": 26, "val_fraction": 0.0, "select": "last", "epochs_chosen_on": "5-9", **values})


def test_a_grid_estimate_counts_the_choosing_runs():
    with_choice, without = _grid(), _grid(epochs_chosen_on="")
    rates = {"simplecnn": 0.01}
    assert grid_seconds(with_choice, rates, 600, 150).seconds > 1.5 * grid_seconds(without, rates, 600, 150).seconds


def test_the_choosing_stage_takes_its_share_of_the_progress_bar_by_cost_not_by_runs():
    """Ten choosing runs and ten grid runs: the choosing half is tested clean only, the grid faces AutoAttack."""
    attacked = _grid(test_attacks=["autoattack", "pgd"], test_epsilons=[4 / 255], image_sizes={"simplecnn": 128},
                     epochs=40)
    clean_only = _grid(test_attacks=[], image_sizes={"simplecnn": 128}, epochs=40)
    assert choosing_share(attacked) < 0.4 < choosing_share(clean_only), (choosing_share(attacked),
                                                                        choosing_share(clean_only))
    assert choosing_share(_grid(epochs_chosen_on="")) == 0.0
    events = []
    run(_grid(modes=["standard"]), progress=events.append)
    chosen = [e for e in events if e.message.startswith("epoch count chosen")]
    assert [e.fraction for e in chosen] == [pytest.approx(choosing_share(_grid(modes=["standard"])))]
    assert all(later.fraction >= chosen[0].fraction for later in events[events.index(chosen[0]):])


def _frontier_rows(epochs_by_eps: dict[float, int], chosen_on: str) -> list[ResultRow]:
    rows = []
    for eps, epochs in epochs_by_eps.items():
        mode = "standard" if eps == 0 else "fgsm"
        for seed in range(3):
            common = dict(run=f"{mode}-{eps}-{seed}", seed=seed, arch="simplecnn", train_mode=mode, train_epsilon=eps,
                          epochs=epochs, epochs_chosen_on=chosen_on, malignant_sensitivity=0.5)
            rows.append(ResultRow(attack="none", balanced_accuracy=0.7 - eps + 0.01 * seed, **common))
            rows.append(ResultRow(attack="autoattack", test_epsilon=4 / 255,
                                  balanced_accuracy=0.1 + 5 * eps + 0.01 * seed, **common))
    return rows


def test_refits_chosen_by_different_rules_are_different_recipes_never_one_frontier_point():
    """Two grids chosen on the same seeds, one by best-both and one by best-sensitive, once looked alike."""
    both = [dataclasses.replace(r, epochs_chosen_by="best-both") for r in _frontier_rows({0.0: 31, 8 / 255: 37}, "5-9")]
    sensitive = [dataclasses.replace(r, epochs_chosen_by="best-sensitive", balanced_accuracy=r.balanced_accuracy - 0.1)
                 for r in _frontier_rows({0.0: 30, 8 / 255: 34}, "5-9")]
    answers = epsilon_tradeoffs(both + sensitive)
    assert len(answers) == 2 and {a.recipe["epochs_chosen_by"] for a in answers} == {"best-both", "best-sensitive"}
    (comparison,) = [c for c in compare_recipes(sensitive, both) if c.arm.startswith("simplecnn, fgsm")]
    assert "epochs_chosen_by best-sensitive (the reference's: best-both)" in comparison.differs
    with pytest.raises(ValueError, match="leave epochs_chosen_by unset"):
        _grid(epochs_chosen_by="best")


def test_a_frontier_whose_epoch_counts_were_chosen_per_epsilon_is_one_frontier():
    chosen = _frontier_rows({0.0: 31, 4 / 255: 26, 8 / 255: 37}, "5-9")
    (answer,) = epsilon_tradeoffs(chosen)
    assert len(answer.points) == 3 and answer.recipe["epochs"] == "chosen on seeds 5-9"
    fixed = _frontier_rows({0.0: 31, 4 / 255: 26}, "")
    assert epsilon_tradeoffs(fixed) == [], "without the record, different epoch counts are different recipes"


def test_the_job_and_the_command_line_say_what_was_chosen(capsys, tmp_path):
    outcome = experiment_job(_grid(modes=["standard"], seeds=[0]).to_dict())
    (choice,) = outcome["epoch_choices"]
    assert (choice["model"], choice["mode"], choice["chosen_on"]) == ("simplecnn", "standard", "5-6")
    assert {r["epochs"] for r in outcome["rows"] if r["seed"] == 0} == {choice["epochs"]}
    capsys.readouterr()
    common = ["experiment", "--modes", "standard", "--seeds", "0", "--epochs", "3", "--image-sizes", "simplecnn=32",
              "--test-attacks", "fgsm", "--test-epsilons", "2/255", "--workers", "1"]
    assert main(common + ["--epochs-chosen-on", "4"]) == 0
    captured = capsys.readouterr()
    assert "2 runs:" in captured.err and "chosen first on validation of seeds 4" in captured.err
    assert "epoch count chosen on seeds 4: simplecnn, standard training: " in captured.out
    assert captured.out.index("the runs that chose the epoch counts (seeds 4, 3 epochs with a validation split") \
        < captured.out.index("the grid's runs (seeds 0, each trained for its chosen epoch count")
    assert main(common + ["--epochs-chosen-on", "0-1"]) == 2
    assert "seed(s) 0 both choose the epoch counts and are tested" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(common + ["--epochs-chosen-on", ","])
    assert refused.value.code == 2 and "--epochs-chosen-on: names no seed" in capsys.readouterr().err


def test_the_epochs_command_prints_the_refit_that_records_its_seeds(capsys):
    folder = Path(os.environ["BUSADV_CHECKPOINTS"])
    common = ["train", "--epochs", "3", "--image-size", "32", "--test-attacks", "fgsm", "--test-epsilons", "2/255"]
    for seed in ("5", "6"):
        assert main(common + ["--seed", seed]) == 0
    paths = sorted(folder.glob("*.pt"))
    capsys.readouterr()
    assert main(["epochs", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert "--val-fraction 0 --select last --epochs-chosen-on 5-6 --epochs-chosen-by best-both" in out
    epochs = int(out.split("pooled validation chooses ")[1].split()[0])
    assert main(common[:1] + ["--epochs", str(epochs), "--image-size", "32", "--test-attacks", "fgsm",
                              "--test-epsilons", "2/255", "--seed", "0", "--val-fraction", "0", "--select", "last",
                              "--epochs-chosen-on", "5-6", "--epochs-chosen-by", "best-both"]) == 0
    assert (f"weights tested: the model after its last epoch ({epochs}), trained on every training image for the "
            "epoch count that validation (best-both) pooled over seeds 5-6 chose") in capsys.readouterr().out
    newest = max(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime)
    recorded = torch.load(newest, weights_only=True)["train_config"]
    assert (recorded["epochs"], recorded["epochs_chosen_on"], recorded["epochs_chosen_by"], recorded["seed"]) == \
        (epochs, "5-6", "best-both", 0)
    assert main(common + ["--seed", "5", "--val-fraction", "0", "--select", "last", "--epochs-chosen-on", "5-6"]) == 2
    assert "seed 5 is among the seeds that chose its epoch count" in capsys.readouterr().err
