"""The epoch count chosen on validation pooled over a recipe's runs, and `python -m busadv epochs`."""

from __future__ import annotations

import math
import os
import shlex
from pathlib import Path

import pytest
import torch

from busadv.cli import main
from busadv.training import TrainConfig
from busadv.training.epoch_count import pooled_epoch_count, rank_recipes, windowed
from busadv.training.optim import EpochChoice, first_eligible_epoch


def _history(scores):
    return [{"epoch": e, "score": s} for e, s in enumerate(scores, start=1)]


def test_one_runs_early_lucky_peak_does_not_choose_the_recipes_epoch_count():
    lucky = [0.30, 0.35, 0.60, 0.62, 0.61, 0.40, 0.45, 0.50, 0.52, 0.53]   # seed 1's shape: an early peak
    steady = [0.30, 0.35, 0.40, 0.42, 0.45, 0.50, 0.55, 0.58, 0.60, 0.59]
    later = [0.30, 0.32, 0.38, 0.40, 0.44, 0.48, 0.52, 0.55, 0.57, 0.60]
    choice = pooled_epoch_count([_history(lucky), _history(steady), _history(later)], start=2)
    assert choice.per_run[0] == 5 and choice.epoch == 10
    curves = [windowed(s) for s in (lucky, steady, later)]
    assert choice.score == pytest.approx(sum(c[9] for c in curves) / 3)
    assert math.isnan(choice.curve[0]) and not math.isnan(choice.curve[1]), "epochs before start are never chosen"


def test_each_runs_own_choice_is_the_one_training_makes():
    scores = [0.33, 0.55, 0.47, 0.64, 0.53, 0.54, 0.70, 0.52, 0.60, 0.62, 0.63, 0.62]
    trained = EpochChoice(window=3, start=4)
    for epoch, score in enumerate(scores, start=1):
        trained.offer(epoch, score, torch.nn.Linear(1, 1))
    assert pooled_epoch_count([_history(scores)], start=4).per_run == (trained.best_epoch,)
    flat = pooled_epoch_count([_history([0.5] * 6)], start=2)
    assert flat.epoch == 2, "equal scores: the earliest, as a run keeps its first best"


def test_recipes_ranked_each_from_its_own_first_eligible_epoch():
    """A recipe with a longer warm-up must not be credited with a peak inside its warm-up."""
    warm = [_history([0.2, 0.9, 0.5, 0.5, 0.5])]   # a lucky epoch 2, inside its warm-up (eligible from 4)
    plain = [_history([0.6, 0.6, 0.6, 0.6, 0.6])]  # no warm-up
    read_from_one = dict(rank_recipes({"warm": warm, "plain": plain}, start=1, window=1))
    assert read_from_one["warm"].epoch == 2, "read from epoch 1, the warm-up's peak would win"
    ranked = rank_recipes({"warm": warm, "plain": plain}, start={"warm": 4, "plain": 1}, window=1)
    assert [name for name, _ in ranked] == ["plain", "warm"]
    assert dict(ranked)["warm"].start == 4 and dict(ranked)["warm"].epoch == 4


@pytest.mark.parametrize("histories, message", [
    ([], "no runs"),
    ([_history([0.5, 0.6]), _history([0.5, 0.6, 0.7])], "different numbers of epochs"),
    ([_history([0.5, None])], "no validation score for every epoch"),
    ([_history([0.5, float("nan")])], "no validation score"),
    ([[]], "no training history"),
])
def test_runs_that_cannot_be_pooled_are_refused_with_the_reason(histories, message):
    with pytest.raises(ValueError, match=message):
        pooled_epoch_count(histories)


def test_the_epochs_command_pools_a_recipes_checkpoints_and_refuses_what_it_cannot(capsys, tmp_path):
    folder = Path(os.environ["BUSADV_CHECKPOINTS"])
    common = ["train", "--epochs", "3", "--image-size", "32", "--test-attacks", "fgsm", "--test-epsilons", "2/255"]
    for seed in ("0", "1"):
        assert main(common + ["--seed", seed]) == 0
    for seed in ("2", "3"):
        assert main(common + ["--seed", seed, "--recipe", "study"]) == 0
    by_seed = {torch.load(p, weights_only=True)["train_config"]["seed"]: p for p in folder.glob("*.pt")}
    capsys.readouterr()
    assert main(["epochs", str(by_seed[1]), str(by_seed[0])]) == 0
    out = capsys.readouterr().out
    assert "2 runs of simplecnn, standard training, 3 epochs, seeds 0, 1" in out
    assert "pooled validation chooses" in out and "--val-fraction 0 --select last" in out
    for paths, message in (([by_seed[0], by_seed[2]], "different recipes"),
                           ([by_seed[0], by_seed[0]], "seed 0 is given more than once"),
                           ([by_seed[2], by_seed[3]], "no validation score for every epoch")):
        assert main(["epochs", *map(str, paths)]) == 2
        assert message in capsys.readouterr().err
    fake = tmp_path / "notes.pt"
    fake.write_text("not a model")
    assert main(["epochs", str(fake)]) == 2
    assert "notes.pt" in capsys.readouterr().err


def test_the_epochs_command_ranks_a_levers_values_on_validation_and_prints_the_winners_refit(capsys):
    """A lever's value is chosen as the epoch count is: each value's runs pooled, the best pooled score wins."""
    folder = Path(os.environ["BUSADV_CHECKPOINTS"])
    common = ["train", "--epochs", "3", "--image-size", "32", "--test-attacks", "fgsm", "--test-epsilons", "2/255"]
    for weight in ("1", "3"):
        for seed in ("5", "6"):
            assert main(common + ["--seed", seed, "--critical-weight", weight]) == 0
    paths = sorted(folder.glob("*.pt"))
    histories: dict[float, list] = {}
    for path in paths:
        blob = torch.load(path, weights_only=True)
        histories.setdefault(blob["train_config"]["critical_weight"], []).append(
            (blob["train_config"]["seed"], blob["history"]))
    capsys.readouterr()
    assert main(["epochs", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert "2 recipes of simplecnn, standard training, 3 epochs, seeds 5, 6, differing in critical_weight" in out
    ranked = rank_recipes({f"critical_weight {w}": [h for _, h in sorted(runs, key=lambda r: r[0])]
                           for w, runs in sorted(histories.items())}, start=first_eligible_epoch(TrainConfig()))
    winner, choice = ranked[0]
    assert ranked[0][1].score >= ranked[1][1].score
    assert f"validation prefers {winner} (the highest pooled best-both score" in out
    refit = (f"--epochs {choice.epoch} --{winner.replace('_', '-')} --levers-chosen-among \"critical_weight 1, 3\" "
             "--val-fraction 0 --select last --epochs-chosen-on 5-6 --epochs-chosen-by best-both")
    assert f"train other seeds with: {refit}" in out
    # The printed refit, run as printed, records what its value was chosen among, as a grid's refit does.
    assert main(common + ["--seed", "0", *shlex.split(refit)]) == 0  # its --epochs comes last: it counts
    newest = max(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime)
    recorded = torch.load(newest, weights_only=True)["train_config"]
    assert (recorded["levers_chosen_among"], recorded["epochs_chosen_on"], recorded["seed"], recorded["epochs"]) == \
        ("critical_weight 1, 3", "5-6", 0, choice.epoch)
    assert out.index(f"{ranked[0][0]}: pooled validation") < out.index(f"{ranked[1][0]}: pooled validation")
    one_seed_short = [p for p in paths if torch.load(p, weights_only=True)["train_config"]["seed"] == 5
                      or torch.load(p, weights_only=True)["train_config"]["critical_weight"] == 1.0]
    assert main(["epochs", *map(str, one_seed_short)]) == 2
    assert "rank recipes on the same seeds" in capsys.readouterr().err
    assert main(common[:1] + ["--epochs", "2"] + common[3:] + ["--seed", "5"]) == 0
    shorter = max(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime)
    capsys.readouterr()
    assert main(["epochs", str(shorter), *map(str, paths)]) == 2
    assert "different recipes (epochs differ)" in capsys.readouterr().err, "the count is chosen, not a candidate"
