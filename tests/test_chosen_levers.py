"""A grid that chooses a setting's value on validation with its epoch count: `experiment --epochs-chosen-on 5-9
--choose-among critical_weight=1,2`.

The choosing seeds train once per value; their validation, pooled per value, ranks the values as `epochs` ranks
recipes; the grid's own seeds then train with the winner for the winner's epoch count and record what it was
chosen among. The seeds tested choose nothing.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from busadv.cli import main
from busadv.experiments import ExperimentConfig, experiment_job, run
from busadv.experiments.estimates import grid_seconds
from busadv.experiments.runner import choose_levers
from busadv.results import read_rows, write_rows
from busadv.training import TrainConfig
from busadv.training.epoch_count import rank_recipes

EPS = 8 / 255


def _grid(**overrides) -> ExperimentConfig:
    values = dict(archs=["simplecnn"], modes=["fgsm"], train_epsilons=[EPS], seeds=[0, 1], test_attacks=["fgsm"],
                  test_epsilons=[2 / 255], epochs=4, image_sizes={"simplecnn": 32}, device="cpu", name="levers",
                  monitor_images=0, epochs_chosen_on="5-6", workers=1,
                  choose_among={"critical_weight": [1.0, 3.0]})
    values.update(overrides)
    return ExperimentConfig(**values)


def _outcome(seed: int, weight: float, scores: list[float]) -> SimpleNamespace:
    return SimpleNamespace(config=TrainConfig(seed=seed, epochs=len(scores), schedule="constant", mode="fgsm",
                                              epsilon=EPS, critical_weight=weight),
                           history=[{"epoch": e, "score": v} for e, v in enumerate(scores, start=1)])


def test_the_value_with_the_best_pooled_validation_wins_and_brings_its_own_epoch_count():
    ended = [_outcome(6, 3.0, [0.7, 0.8, 0.8, 0.4]), _outcome(5, 1.0, [0.5, 0.5, 0.5, 0.6]),
             _outcome(5, 3.0, [0.7, 0.8, 0.8, 0.4]), _outcome(6, 1.0, [0.5, 0.5, 0.5, 0.7])]
    counts, levers = choose_levers(ended, ["critical_weight"])  # type: ignore[arg-type]
    ((group, choice),) = levers.items()
    assert group == ("simplecnn", "fgsm", EPS) and choice.values == {"critical_weight": 3.0}
    assert [name for name, _ in choice.ranking] == ["critical_weight 3", "critical_weight 1"]
    expected = rank_recipes({"w1": [o.history for o in ended if o.config.critical_weight == 1.0],
                             "w3": [o.history for o in ended if o.config.critical_weight == 3.0]}, 1)
    assert counts[group] == dict(expected)["w3"] and counts[group].epoch == 3, "the winner's own epoch count"
    assert choice.text().startswith("critical_weight 3 (pooled validation score 0.")
    assert "; critical_weight 1: " in choice.text()
    assert choose_levers([ended[0], ended[3]], ["critical_weight"])[1], "seed 6 alone for both: comparable"
    (partial,) = choose_levers(ended[:3], ["critical_weight"])[1].values()  # type: ignore[arg-type]
    assert partial.left_out == (6,) and "seed 6 left out: not every value's run finished there" in partial.text()
    assert partial.ranking[0][1].per_run == (3,), "pooled over seed 5 alone, for every value"
    with pytest.raises(RuntimeError, match="no seed finished a choosing run of every value"):
        choose_levers([ended[0], ended[1]], ["critical_weight"])  # type: ignore[arg-type]
    weights = [{"critical_weight": w} for w in (1.0, 2.0, 3.0)]
    with pytest.raises(RuntimeError, match="no choosing run of critical_weight 2 finished for simplecnn, fgsm"):
        choose_levers(ended, ["critical_weight"], weights)  # type: ignore[arg-type]


def test_the_grid_chooses_the_value_on_other_seeds_then_trains_its_own_with_the_winner(tmp_path):
    config = _grid()
    assert [(r.seed, r.critical_weight) for r in config.choosing_runs()] == [(5, 1.0), (6, 1.0), (5, 3.0), (6, 3.0)]
    assert all(r.val_fraction == 0.15 and not r.levers_chosen_among for r in config.choosing_runs())
    result = run(config)
    group = ("simplecnn", "fgsm", EPS)
    choice = result.lever_choices[group]
    assert {name for name, _ in choice.ranking} == {"critical_weight 1", "critical_weight 3"}
    scores = [c.score for _, c in choice.ranking]
    assert scores == sorted(scores, reverse=True) and result.epoch_choices[group] == choice.ranking[0][1]
    choosing = [r for r in result.rows if r.seed in (5, 6)]
    assert sorted((r.seed, r.critical_weight) for r in choosing) == [(5, 1.0), (5, 3.0), (6, 1.0), (6, 3.0)]
    tested = [r for r in result.rows if r.seed in (0, 1)]
    assert {(r.critical_weight, r.epochs, r.levers_chosen_among, r.epochs_chosen_on) for r in tested} == \
        {(choice.values["critical_weight"], choice.ranking[0][1].epoch, "critical_weight 1, 3", "5-6")}
    path = write_rows(result.rows, tmp_path / "rows.csv")
    assert {r.levers_chosen_among for r in read_rows(path.read_text()) if r.seed in (0, 1)} == \
        {"critical_weight 1, 3"}, "the record survives a results file"


def test_the_job_and_the_command_line_say_which_value_was_chosen(capsys):
    outcome = experiment_job(_grid(seeds=[0]).to_dict())
    (choice,) = outcome["epoch_choices"]
    assert choice["levers"]["critical_weight"] in (1.0, 3.0) and "pooled validation score" in choice["levers_text"]
    assert {r["critical_weight"] for r in outcome["rows"] if r["seed"] == 0} == {choice["levers"]["critical_weight"]}
    capsys.readouterr()
    common = ["experiment", "--modes", "fgsm", "--train-epsilons", "8/255", "--seeds", "0", "--epochs", "3",
              "--image-sizes", "simplecnn=32", "--test-attacks", "fgsm", "--test-epsilons", "2/255", "--workers", "1",
              "--watch-images", "0", "--epochs-chosen-on", "4"]
    assert main(common + ["--choose-among", "critical-weight=1,2.5"]) == 0
    captured = capsys.readouterr()
    assert "3 runs:" in captured.err and "with critical_weight 1, 2.5 chosen among" in captured.err
    assert "values chosen on seeds 4: simplecnn, fgsm training at eps=0.0314 (8/255): critical_weight " in captured.out


@pytest.mark.parametrize("values, message", [
    (["critical_weight=1,x"], "'x' is not a float"),
    (["critical_weight=2"], "give 2 to 8 values"),
    (["epochs=10,20"], "'epochs' cannot be chosen among; these can: critical_weight"),
    (["critical_weight"], "is not setting=value,value"),
    (["critical_weight=1,2", "critical_weight=3,4"], "--choose-among: critical_weight is named more than once"),
    (["critical_weight=1,1.0"], "a value is given twice"),
    (["critical_weight=1,1000"], "critical_weight must be in"),
    (["augment=none,sideways"], "augment must be one of"),
    (["critical_weight=1,nan"], "not a finite number"),
])
def test_bad_values_to_choose_among_are_refused_in_one_line_before_any_work(capsys, values, message):
    args = ["experiment", "--modes", "fgsm", "--seeds", "0", "--epochs-chosen-on", "4"]
    for value in values:
        args += ["--choose-among", value]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse refuses a malformed option itself
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


@pytest.mark.parametrize("overrides, message", [
    ({"epochs_chosen_on": ""}, "give the seeds that choose"),
    ({"choose_among": {"critical_weight": "1,2"}}, "give 2 to 8 values"),
    ({"choose_among": [("critical_weight", [1, 2])]}, "maps settings to values"),
    ({"choose_among": {"warmup_epochs": [1, 2.5]}}, "not a whole number"),
    ({"choose_among": {"augment": [1, 2]}}, "is not a str"),
    ({"levers_chosen_among": "critical_weight 1, 2"}, "leave levers_chosen_among unset"),
    # Every setting at eight values: 8**12 combinations would be listed before the run count is checked.
    ({"choose_among": {name: [1, 2, 3, 4, 5, 6, 7, 8] for name in ("critical_weight", "clean_mix", "weight_decay",
                                                                     "lr", "trades_beta", "warmup_epochs")}},
     "512 combinations of values to choose among is more than 64"),  # said at the third setting
    ({"choose_among": {"critical_weight": [1, 2, 3], "lr": [0.001, 0.002]}, "epochs_chosen_on": "100-2000"},
     "runs to choose the epoch counts is more than 10000"),
])
def test_a_grid_refuses_values_it_cannot_choose_among(overrides, message):
    with pytest.raises(ValueError, match=message):
        _grid(**overrides)


def test_a_run_records_what_its_values_were_chosen_among_only_beside_its_choosing_seeds():
    assert TrainConfig.recorded({"seed": 1}).levers_chosen_among == "", "a checkpoint from before: nothing chosen"
    with pytest.raises(ValueError, match="set epochs_chosen_on to those seeds too"):
        TrainConfig(levers_chosen_among="critical_weight 1, 2")


def test_the_estimate_counts_every_value_tried():
    rates = {"simplecnn": 0.01}
    one, three = _grid(choose_among={}), _grid(choose_among={"critical_weight": [1.0, 2.0, 3.0]})
    assert len(three.choosing_runs()) == 3 * len(one.choosing_runs())
    assert grid_seconds(three, rates, 600, 150).seconds > 1.5 * grid_seconds(one, rates, 600, 150).seconds


def test_a_frontier_whose_values_were_chosen_per_epsilon_is_one_frontier():
    """Each training ε may win with another value: that is the protocol, not another recipe."""
    from busadv.results import ResultRow
    from busadv.results.tradeoff import epsilon_tradeoffs

    rows = []
    for eps, weight in ((0.0, 1.0), (4 / 255, 3.0), (EPS, 1.0)):
        mode = "standard" if eps == 0 else "fgsm"
        for seed in range(3):
            common = dict(run=f"{mode}-{eps}-{seed}", seed=seed, arch="simplecnn", train_mode=mode, train_epsilon=eps,
                          epochs=30, epochs_chosen_on="5-9", critical_weight=weight, malignant_sensitivity=0.5,
                          levers_chosen_among="critical_weight 1, 3")
            rows.append(ResultRow(attack="none", balanced_accuracy=0.7 - eps + 0.01 * seed, **common))
            rows.append(ResultRow(attack="autoattack", test_epsilon=4 / 255,
                                  balanced_accuracy=0.1 + 5 * eps + 0.01 * seed, **common))
    (answer,) = epsilon_tradeoffs(rows)
    assert len(answer.points) == 3
    by_hand = [r for r in rows if r.train_epsilon != 4 / 255] + [
        ResultRow(**{**r.__dict__, "levers_chosen_among": ""}) for r in rows if r.train_epsilon == 4 / 255]
    assert all(len(a.points) < 3 for a in epsilon_tradeoffs(by_hand)), "a weight set by hand is another recipe"


def test_the_experiment_form_sends_values_to_choose_among_and_refuses_bad_ones_beside_the_button(monkeypatch):
    from busadv.jobs import JobStore
    from tests.test_app import JOBS, open_app, store

    monkeypatch.setattr(JobStore, "dispatch", lambda self: [])
    at = open_app(JOBS)
    assert at.text_input(key="x_choose").proto.disabled, "nothing to choose on without choosing seeds"
    at.text_input(key="x_seeds").set_value("0, 1")
    at.text_input(key="x_epochs_on").set_value("5-6").run()
    at.text_input(key="x_choose").set_value("critical_weight=1,x").run()
    assert any("Choose among values: critical_weight: 'x' is not a float" in e.value for e in at.error)
    assert at.button(key="x_start").proto.disabled
    at.text_input(key="x_choose").set_value("critical_weight=1, 2; clean_mix=0.3,0.5").run()
    assert not at.error and "its value of critical_weight 1, 2; clean_mix 0.3, 0.5" in " ".join(
        c.value for c in at.caption)
    at.button(key="x_start").click().run()
    submitted = ExperimentConfig(**store().list()[0].config)
    assert submitted.choose_among == {"critical_weight": [1.0, 2.0], "clean_mix": [0.3, 0.5]}
    assert len(submitted.choosing_runs()) == 4 * len(submitted.epoch_chooser().runs())
    at.button(key="x_frontier").click().run()
    assert at.text_input(key="x_choose").value == "" and at.text_input(key="x_epochs_on").value == ""


def test_a_job_card_counts_the_choosing_runs_among_an_experiments_runs():
    from busadv.app.jobs import describe_job

    job = SimpleNamespace(kind="experiment", config=_grid().to_dict())
    assert describe_job(job).startswith("experiment 'levers' · 6 runs · ")  # 2 values x 2 choosing seeds, then 2
    assert describe_job(job).endswith("seeds 0, 1 · chosen on seeds 5-6")
