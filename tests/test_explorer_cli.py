"""busadv.explorer (the slider's engine) and the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from busadv.attacks import STRIP_EPSILONS, Attack, fgsm
from busadv.cli import main
from busadv.explorer import PerturbationProbe, amplified_perturbation

ROOT = Path(__file__).resolve().parent.parent


def test_probe_computes_the_gradient_once_for_every_epsilon(trained_simplecnn, monkeypatch):
    model, _, test_set = trained_simplecnn
    image, label = test_set.floats(slice(0, 1)), int(test_set.labels[0])
    probe = PerturbationProbe(model, image, label)
    calls = []
    import busadv.explorer as explorer

    original = explorer.gradient_sign
    monkeypatch.setattr(explorer, "gradient_sign", lambda *a: calls.append(1) or original(*a))
    for eps in (1 / 255, 4 / 255, 0.05, 0.2):
        expected = torch.softmax(model(fgsm(model, image, torch.tensor([label]), eps)), 1)[0].detach().numpy()
        np.testing.assert_allclose(probe.probabilities(Attack.FGSM, eps), expected, rtol=1e-5, atol=1e-6)
    assert len(calls) == 1


def test_probabilities_change_with_epsilon_and_sum_to_one(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    probe = PerturbationProbe(model, test_set.images[0, 0], int(test_set.labels[0]))
    clean, attacked = probe.probabilities(Attack.NONE, 0.0), probe.probabilities(Attack.FGSM, 0.05)
    assert clean.sum() == pytest.approx(1, abs=1e-5) and not np.allclose(clean, attacked)


def test_smallest_flip_is_the_first_epsilon_that_changes_the_prediction(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    for i in range(4):
        probe = PerturbationProbe(model, test_set.images[i, 0], int(test_set.labels[i]))
        clean = probe.probabilities(Attack.NONE, 0).argmax()
        flip = probe.smallest_flip(Attack.FGSM)
        if flip is None:
            continue
        assert probe.probabilities(Attack.FGSM, flip).argmax() != clean
        below = [e for e in np.arange(1, 256) / 255 if e < flip - 1e-9 and e <= 16 / 255]
        assert all(probe.probabilities(Attack.FGSM, e).argmax() == clean for e in below)


def test_strip_holds_each_epsilon_with_its_prediction(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    probe = PerturbationProbe(model, test_set.images[1, 0], int(test_set.labels[1]))
    strip = probe.strip(Attack.FGSM, STRIP_EPSILONS)
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
    assert "noise eps=0.05" in out and "held-out" in out
    assert main(["attack", checkpoint, "--index", "2", "--epsilon", "0.05", "--out", str(tmp_path / "a.png")]) == 0
    out = capsys.readouterr().out
    assert "smallest flipping epsilon" in out and (tmp_path / "a.png").exists()


def test_cli_experiment_writes_rows_and_summary(tmp_path, capsys):
    assert main(["experiment", "--models", "simplecnn", "--modes", "standard", "--seeds", "0,1", "--epochs", "1",
                 "--test-epsilons", "0.05", "--out", str(tmp_path / "rows.csv")]) == 0
    out = capsys.readouterr().out
    assert "+-" in out and (tmp_path / "rows.csv").exists() and (tmp_path / "rows-summary.csv").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "/no/such/busi"], "no such folder"),
    (["train", "--mode", "fgsm"], "needs an epsilon"),
    (["evaluate", "missing.pt"], "no such checkpoint file"),
    (["train", "--epsilon", "9/0"], "divides by zero"),
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
