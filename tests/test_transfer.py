"""Transfer attacks: the matrix between checkpoints, its white-box diagonal, sizes, the CLI, a job and Results."""

from __future__ import annotations

import pytest
import torch

from busadv.attacks import ATTACKS, AttackContext
from busadv.cli import main
from busadv.evaluation.transfer import TransferMatrix, carry_perturbation
from busadv.experiments import evaluate_job
from busadv.experiments.robustness import load_transfers, shared_test_sets, transfer_job
from busadv.models.checkpoints import load_checkpoint
from tests.robustness_helpers import run_in_worker, tiny_checkpoint


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Standard and FGSM-trained, same seed (so the same held-out split), 32 px."""
    return (tiny_checkpoint(tmp_path_factory, "standard", seed=0),
            tiny_checkpoint(tmp_path_factory, "fgsm", seed=0))


def test_the_diagonal_is_the_white_box_evaluation_and_off_diagonal_cells_are_other_models(pair):
    saved = transfer_job({"checkpoints": [str(p) for p in pair], "attack": "fgsm", "epsilon": "8/255"})
    matrix = TransferMatrix.from_dict(saved["matrix"])
    assert saved["test_images"] == "the checkpoints' shared held-out test split"
    assert len(matrix.cells) == 2 and all(len(row) == 2 for row in matrix.cells)
    for i, path in enumerate(pair):
        white_box = evaluate_job({"checkpoint": str(path), "attacks": ["fgsm"], "epsilons": ["8/255"]})
        clean, attacked = white_box["rows"]
        assert matrix.n == clean["n"], "the whole shared split is used"
        assert matrix.cells[i][i].confusion == attacked["confusion"]
        assert matrix.table("accuracy")[i][i] == pytest.approx(attacked["accuracy"])
        assert matrix.table()[i][i] == pytest.approx(attacked["balanced_accuracy"])
        assert matrix.clean[i].confusion == clean["confusion"]
    # Off the diagonal: the target's own predictions on the source's adversarial images, computed by hand.
    models = [load_checkpoint(p).require_model() for p in pair]
    test_sets, _ = shared_test_sets([load_checkpoint(p) for p in pair], None)
    x, y = test_sets[0].floats(), test_sets[0].labels
    adversarial = torch.cat([ATTACKS.get("fgsm").perturb(AttackContext(models[0], x[i:i + 64], y[i:i + 64], batch=b),
                                                         8 / 255) for b, i in enumerate(range(0, len(x), 64))])
    with torch.no_grad():
        predicted = models[1](adversarial).argmax(1)
    expected = torch.bincount(y * 3 + predicted, minlength=9).view(3, 3).tolist()
    assert matrix.cells[0][1].confusion == expected
    assert TransferMatrix.from_dict(matrix.to_dict()) == matrix
    found, problems = load_transfers()
    assert problems == [] and len(found) == 1 and found[0][1] == matrix


def test_a_perturbation_carried_to_another_size_stays_in_the_eps_ball():
    torch.manual_seed(0)
    eps = 8 / 255
    source = torch.rand(3, 1, 32, 32)
    adversarial = (source + eps * torch.randn_like(source).sign()).clamp(0, 1)
    for size in (16, 64):
        target = torch.rand(3, 1, size, size)
        shown = carry_perturbation(adversarial, source, target)
        assert shown.shape == target.shape and shown.min() >= 0 and shown.max() <= 1
        assert (shown - target).abs().max() <= eps + 1e-6
    assert carry_perturbation(adversarial, source, source.clone()) is adversarial, "same images: the same images"


def test_the_explorers_second_model_sees_the_perturbation_as_the_matrix_carries_it():
    """The explorer's transfer view and the transfer matrix judge the same input: the source's perturbation on
    the target model's own clean image (not the source's perturbed image resized, which shrinks the change)."""
    from busadv.explorer import PerturbationProbe

    torch.manual_seed(0)
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            seen.append(x.detach().clone())
            return torch.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3)), 0 * x.mean((1, 2, 3))], 1) * self.w

    eps = 8 / 255
    source = torch.rand(1, 1, 32, 32)
    adversarial = (source + eps * torch.randn_like(source).sign()).clamp(0, 1)
    target_clean = torch.nn.functional.interpolate(source, size=(16, 16), mode="bilinear", antialias=True)
    probe = PerturbationProbe(Recorder(), target_clean)
    seen.clear()
    probe.probabilities_of(adversarial, source)
    assert torch.equal(seen[-1], carry_perturbation(adversarial, source, probe.x))


def test_models_of_different_sizes_share_their_test_images(pair, tmp_path_factory):
    bigger = tiny_checkpoint(tmp_path_factory, "standard", seed=0, size=64)
    saved = transfer_job({"checkpoints": [str(pair[0]), str(bigger)], "attack": "fgsm", "epsilon": 0.05})
    matrix = TransferMatrix.from_dict(saved["matrix"])
    assert "32px" in matrix.models[0] and "64px" in matrix.models[1]
    assert all(cell.n == matrix.n > 0 for row in matrix.cells for cell in row)


def test_transfer_from_the_cli_prints_the_matrix_and_writes_cells(pair, tmp_path, capsys):
    out_csv = tmp_path / "t.csv"
    assert main(["transfer", *map(str, pair), "--attack", "pgd", "--epsilon", "8/255", "--pgd-steps", "2",
                 "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert "PGD at ε=0.0314 (8/255), crafted on each source (row)" in out
    assert "[1] simplecnn 32px, standard, seed 0" in out and "[2] simplecnn 32px, fgsm ε=0.0314, seed 0" in out
    assert "balanced accuracy of the target" in out and out.count("*   ") >= 2 and "saved for the Results page" in out
    lines = out_csv.read_text().splitlines()
    assert lines[0].startswith("source,target,attack,epsilon,white_box") and len(lines) == 5


@pytest.mark.parametrize("extra, message", [
    ([], "checkpoints: transfer needs at least two checkpoints (a source and a target), got 1"),
    (["MISSING"], "checkpoints: "),
    (["SAME"], "is listed twice"),
])
def test_bad_transfer_inputs_get_one_line_naming_the_option(pair, tmp_path, extra, message, capsys):
    others = [str(tmp_path / "missing.pt") if e == "MISSING" else str(pair[0]) for e in extra]
    assert main(["transfer", str(pair[0]), *others]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    if extra == ["MISSING"]:
        assert "missing.pt: no such checkpoint file" in err


def test_only_adversarial_attacks_transfer(pair, capsys):
    with pytest.raises(SystemExit):
        main(["transfer", *map(str, pair), "--attack", "speckle"])
    assert "argument --attack: invalid choice: 'speckle'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="attack: 'noise' is not an adversarial attack"):
        transfer_job({"checkpoints": [str(p) for p in pair], "attack": "noise"})
    with pytest.raises(ValueError, match="unknown transfer setting"):
        transfer_job({"checkpoints": [str(p) for p in pair], "eps": 0.1})
    with pytest.raises(ValueError, match="not a transfer matrix"):
        TransferMatrix.from_dict({"models": ["a"]})


def test_transfer_as_a_job_shows_its_heatmap_on_the_results_page(pair, tmp_path):
    from tests.test_app import RESULTS, chart, open_app, texts

    job = run_in_worker(tmp_path, "transfer", {"checkpoints": [str(p) for p in pair], "attack": "fgsm",
                                               "epsilon": 8 / 255})
    assert job.result["matrix"]["models"] and job.result["transfer_file"]
    evaluate_job({"checkpoint": str(pair[0]), "attacks": ["fgsm"], "epsilons": ["8/255"]})  # the page needs rows
    at = open_app(RESULTS)
    heatmap = chart(at, "transfer_heatmap")["data"][0]
    assert heatmap["type"] == "heatmap" and len(heatmap["z"]) == 2 and "(itself)" in heatmap["text"][0][0]
    page = texts(at)
    assert "[1] simplecnn 32px, standard, seed 0" in page.replace("**", "")
    assert "Transfer: an attack computed on one model, tested on another" in page
