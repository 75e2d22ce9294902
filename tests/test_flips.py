"""Per-image robustness: each held-out image's smallest flipping epsilon, stored, printed and drawn."""

from __future__ import annotations

import pytest
import torch

from busadv.cli import main
from busadv.evaluation import flip_epsilons
from busadv.experiments.workflows import flips_job, train_job
from busadv.explorer import PerturbationProbe
from busadv.plots import flip_distribution
from busadv.results import load_flips, read_flips, rows_to_csv


def test_fgsm_flip_epsilons_equal_the_explorers_search_image_by_image(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    flips = flip_epsilons(model, test_set, "fgsm", max_eps=32 / 255, batch_size=7)
    assert [f.name for f in flips] == list(test_set.names)
    for i, flip in enumerate(flips):
        probe = PerturbationProbe(model, test_set.images[i, 0], int(test_set.labels[i]))
        assert flip.flip_epsilon == probe.smallest_flip("fgsm", max_eps=32 / 255)
        assert flip.clean_prediction == test_set.classes[int(probe.probabilities("none", 0).argmax())]


def test_pgd_needs_no_more_than_fgsm_to_flip_most_images(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    fgsm = {f.name: f.flip_epsilon for f in flip_epsilons(model, test_set, "fgsm", max_eps=32 / 255)}
    pgd = flip_epsilons(model, test_set, "pgd", max_eps=32 / 255, pgd_steps=5)
    limit = 32 / 255 + 1e-9
    no_later = [(p.flip_epsilon or limit) <= (fgsm[p.name] or limit) + 1e-9 for p in pgd]
    assert sum(no_later) >= 0.8 * len(pgd)
    assert all(p.flipped_to is not None for p in pgd if p.flip_epsilon is not None)
    assert all(p.flip_epsilon is None or 1 / 255 - 1e-9 <= p.flip_epsilon <= limit for p in pgd)


def test_the_search_lands_in_the_store_and_reads_back(capsys):
    trained = train_job({"epochs": 2, "image_size": 32, "device": "cpu", "test_epsilons": "8/255",
                         "test_attacks": ["fgsm"]})
    result = flips_job({"checkpoint": trained["checkpoint"], "attacks": ["fgsm"], "max_epsilon": "16/255"})
    stored, problems = load_flips()
    assert problems == [] and len(stored) == len(result["flips"]) > 0
    assert {f.checkpoint for f in stored} == {trained["checkpoint"]} and stored[0].model.startswith("simplecnn")
    assert read_flips(rows_to_csv([f.to_dict() for f in stored])) == stored
    assert main(["flips", trained["checkpoint"], "--attacks", "fgsm", "--max-epsilon", "8/255", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "median flip ε" in out and "flip first" in out


@pytest.mark.parametrize("config, message", [
    ({"checkpoint": "x.pt", "attacks": ["autoattack"]}, "supports fgsm, fgsm-pred, noise and pgd"),
    ({"checkpoint": "x.pt", "max_epsilon": "0"}, "at least 1/255"),
    ({"checkpoint": "x.pt", "radius": 3}, "unknown setting"),
    ({}, "needs a checkpoint"),
])
def test_bad_search_settings_are_refused_before_any_work(config, message):
    with pytest.raises(ValueError, match=message):
        flips_job(config)


def test_the_chart_draws_only_correct_images_with_unflipped_ones_apart(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    flips = flip_epsilons(model, test_set, "fgsm", max_eps=4 / 255)
    figure = flip_distribution(flips)
    drawn = sum(len(trace.x) for trace in figure.data)
    assert drawn == sum(f.correct for f in flips)
    assert any("no flip up to" in trace.name for trace in figure.data) == any(
        f.correct and f.flip_epsilon is None for f in flips)
    assert torch.tensor([f.correct for f in flips]).any()
