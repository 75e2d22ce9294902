"""busadv.explorer (the slider's engine) and the command line."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from busadv.attacks import STRIP_EPSILONS, fgsm
from busadv.cli import main
from busadv.explorer import PerturbationProbe, amplified_perturbation

ROOT = Path(__file__).resolve().parent.parent


def test_probe_computes_the_gradient_once_for_every_epsilon(trained_simplecnn, monkeypatch):
    model, _, test_set = trained_simplecnn
    image, label = test_set.floats(slice(0, 1)), int(test_set.labels[0])
    probe = PerturbationProbe(model, image, label)
    epsilons = (1 / 255, 4 / 255, 0.05, 0.2)
    expected = [torch.softmax(model(fgsm(model, image, torch.tensor([label]), eps)), 1)[0].detach().numpy()
                for eps in epsilons]
    calls = []
    original = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or original(*a, **k))
    for eps, want in zip(epsilons, expected):
        np.testing.assert_allclose(probe.probabilities("fgsm", eps), want, rtol=1e-5, atol=1e-6)
    assert len(calls) == 1, "one backward pass serves every epsilon"


def test_probabilities_change_with_epsilon_and_sum_to_one(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    probe = PerturbationProbe(model, test_set.images[0, 0], int(test_set.labels[0]))
    clean, attacked = probe.probabilities("none", 0.0), probe.probabilities("fgsm", 0.05)
    assert clean.sum() == pytest.approx(1, abs=1e-5) and not np.allclose(clean, attacked)


def test_smallest_flip_is_the_first_epsilon_that_changes_the_prediction(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    for i in range(4):
        probe = PerturbationProbe(model, test_set.images[i, 0], int(test_set.labels[i]))
        clean = probe.probabilities("none", 0).argmax()
        flip = probe.smallest_flip("fgsm")
        if flip is None:
            continue
        assert probe.probabilities("fgsm", flip).argmax() != clean
        below = [e for e in np.arange(1, 256) / 255 if e < flip - 1e-9 and e <= 16 / 255]
        assert all(probe.probabilities("fgsm", e).argmax() == clean for e in below)


def test_strip_holds_each_epsilon_with_its_prediction(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    probe = PerturbationProbe(model, test_set.images[1, 0], int(test_set.labels[1]))
    strip = probe.strip("fgsm", STRIP_EPSILONS)
    assert [s.epsilon for s in strip] == list(STRIP_EPSILONS)
    assert all(s.image.dtype == np.uint8 and 0 <= s.confidence <= 1 for s in strip)
    assert np.array_equal(strip[0].image, test_set.images[1, 0].numpy())


def test_amplified_perturbation_makes_a_one_level_change_visible():
    clean = torch.full((1, 1, 4, 4), 0.5)
    shown = amplified_perturbation(clean, clean + torch.tensor([1.0, -1.0]).repeat(8).view(1, 1, 4, 4) / 255)
    assert shown.min() == 1 and shown.max() == 255


def test_probe_refuses_colour_batches(trained_simplecnn):
    with pytest.raises(ValueError, match="one grayscale image"):
        PerturbationProbe(trained_simplecnn[0], torch.rand(2, 3, 32, 32))


def test_cli_trains_evaluates_and_attacks(tmp_path, capsys):
    assert main(["train", "--epochs", "1", "--image-size", "32", "--test-epsilons", "8/255",
                 "--csv", str(tmp_path / "train.csv")]) == 0
    out = capsys.readouterr().out
    assert "Simulated phantoms" in out and "clean" in out and "8/255" in out
    checkpoint = out.split("checkpoint: ")[1].split()[0]
    assert (tmp_path / "train.csv").exists()
    assert main(["evaluate", checkpoint, "--attacks", "fgsm,noise", "--epsilons", "2/255,0.05"]) == 0
    out = capsys.readouterr().out
    assert "Random noise ε=0.05" in out and "held-out" in out and "balanced acc" in out
    assert main(["attack", checkpoint, "--index", "2", "--epsilon", "0.05", "--out", str(tmp_path / "a.png")]) == 0
    out = capsys.readouterr().out
    assert "smallest flipping epsilon" in out and (tmp_path / "a.png").exists()


def test_cli_experiment_writes_rows_and_summary(tmp_path, capsys):
    assert main(["experiment", "--models", "simplecnn", "--modes", "standard", "--seeds", "0,1", "--epochs", "1",
                 "--test-epsilons", "0.05", "--image-sizes", "simplecnn=32", "--out", str(tmp_path / "rows.csv")]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "time: roughly" in captured.err  # said before the work starts
    assert "±" in out and "collapsed" in out
    assert (tmp_path / "rows.csv").exists() and (tmp_path / "rows-summary.csv").exists()
    assert {row["image_size"] for row in csv.DictReader((tmp_path / "rows.csv").open())} == {"32"}


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "/no/such/busi"], "no such folder"),
    (["train", "--mode", "fgsm"], "needs an epsilon"),
    (["evaluate", "missing.pt"], "no such checkpoint file"),
    (["train", "--epsilon", "9/0"], "divides by zero"),
    (["train", "--test-attacks", "fgsm,bogus"], "unknown attack 'bogus'"),
    (["experiment", "--seeds", "0,a"], "--seeds: seeds: 'a' is not a whole number"),
    (["experiment", "--image-sizes", "resnet50=big"], "--image-sizes: 'resnet50=big' is not model=pixels"),
    (["train", "--image-size", "4096"], "between 8 and 512"),
])
def test_cli_bad_inputs_give_one_clear_line(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse type errors
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_python_dash_m_busadv_help_lists_the_commands():
    done = subprocess.run([sys.executable, "-m", "busadv", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0
    for command in ("train", "evaluate", "experiment", "attack", "data"):
        assert command in done.stdout


def test_pgd_in_the_explorer_is_cached_per_epsilon_and_its_flip_found_by_bisection(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    for i in range(6):
        probe = PerturbationProbe(model, test_set.images[i, 0], int(test_set.labels[i]))
        clean = probe.probabilities("none", 0).argmax()
        first = probe.perturbed("pgd", 4 / 255)
        assert probe.perturbed("pgd", 4 / 255) is first, "an iterative attack is computed once per epsilon"
        flip = probe.smallest_flip("pgd", max_eps=16 / 255)
        if flip is None:
            continue
        assert probe.probabilities("pgd", flip).argmax() != clean
        if flip > 1 / 255:
            assert probe.probabilities("pgd", flip - 1 / 255).argmax() == clean


def test_one_probe_shared_by_threads_computes_each_direction_once(trained_simplecnn, monkeypatch):
    """Browser sessions share a cached probe: concurrent first uses must not race or repeat the gradient."""
    from concurrent.futures import ThreadPoolExecutor

    model, _, test_set = trained_simplecnn
    probe = PerturbationProbe(model, test_set.images[3, 0], int(test_set.labels[3]))
    calls = []
    original = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or original(*a, **k))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda e: probe.probabilities("fgsm", e), [k / 255 for k in range(1, 17)] * 2))
    assert len(calls) == 1
    assert all(np.allclose(r.sum(), 1, atol=1e-5) for r in results)
