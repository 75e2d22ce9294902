"""busadv.attacks and busadv.evaluation: the formula, the invariants, and the one-gradient sweep."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from busadv.attacks import (
    ATTACKS,
    apply_sign,
    fgsm,
    fgsm_random_start,
    format_epsilon,
    gradient_sign,
    noise_sign,
    parse_epsilon,
    parse_epsilon_list,
    perturb,
    pgd,
    random_sign_noise,
)
from busadv.evaluation import evaluate


class TinyLinear(nn.Module):
    """logits = W x + b on a flattened 1x4x4 image: its input gradient is known in closed form."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_fgsm_equals_the_formula_computed_independently():
    model = TinyLinear()
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.uniform(0, 1, (5, 1, 4, 4)), dtype=torch.float32)
    y = torch.tensor([0, 1, 2, 1, 0])
    eps = 0.1
    W = model.fc.weight.detach().numpy().astype(np.float64)
    b = model.fc.bias.detach().numpy().astype(np.float64)
    xf = x.numpy().reshape(5, 16).astype(np.float64)
    logits = xf @ W.T + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(3)[y.numpy()]
    grad = (p - onehot) @ W  # d CE / d x for a linear model
    assert np.all(np.abs(grad) > 1e-9), "a zero gradient would make the sign ambiguous"
    x32 = x.numpy().reshape(5, 16)
    expected = np.clip(x32 + np.float32(eps) * np.sign(grad).astype(np.float32), 0, 1).reshape(5, 1, 4, 4)
    got = fgsm(model, x, y, eps).numpy()
    np.testing.assert_array_equal(got, expected)


def test_fgsm_moves_each_pixel_by_exactly_eps_unless_clamped():
    model = TinyLinear()
    x = torch.full((2, 1, 4, 4), 0.5)
    adv = fgsm(model, x, torch.tensor([0, 2]), 8 / 255)
    assert torch.allclose((adv - x).abs(), torch.full_like(x, 8 / 255))
    edge = fgsm(model, torch.ones(2, 1, 4, 4), torch.tensor([0, 2]), 0.5)
    assert edge.max() <= 1.0 and edge.min() >= 0.0


def test_attacks_run_in_eval_mode_and_restore_the_mode():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2 * 2 * 2, 3))
    model.train()
    before = model[1].running_mean.clone()
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    for attack in ["none", *(n for n in ATTACKS.names() if not ATTACKS.get(n).slow)]:  # AutoAttack: its own test
        perturb(model, x, y, attack, 0.1, pgd_steps=2)
    assert model.training, "the caller's training mode must come back"
    assert torch.equal(model[1].running_mean, before), "BatchNorm statistics moved during an attack"
    model.eval()
    fgsm(model, x, y, 0.1)
    assert not model.training


def test_fgsm_on_predicted_labels_uses_the_models_own_prediction():
    model = TinyLinear()
    x = torch.rand(6, 1, 4, 4)
    predicted = model(x).argmax(1)
    wrong = (predicted + 1) % 3
    assert torch.equal(perturb(model, x, wrong, "fgsm-pred", 0.05), fgsm(model, x, predicted, 0.05))


def test_pgd_stays_in_the_eps_ball_and_the_pixel_range():
    model = TinyLinear()
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    adv = pgd(model, x, y, 0.05, steps=5, generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= 0.05 + 1e-6 and adv.min() >= 0 and adv.max() <= 1


def test_fgsm_random_start_stays_in_the_eps_ball():
    model = TinyLinear()
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 3, (8,))
    adv = fgsm_random_start(model, x, y, 0.1, generator=torch.Generator().manual_seed(1))
    assert (adv - x).abs().max() <= 0.1 + 1e-6


def test_noise_has_fgsm_size_and_is_reproducible():
    x = torch.full((2, 1, 8, 8), 0.5)
    a, b = random_sign_noise(x, 0.1, seed=3), random_sign_noise(x, 0.1, seed=3)
    assert torch.equal(a, b) and torch.allclose((a - x).abs(), torch.full_like(x, 0.1))
    assert not torch.equal(noise_sign(x.shape, 3), noise_sign(x.shape, 4))


@pytest.mark.parametrize("text, value", [("8/255", 8 / 255), ("0.05", 0.05), (" 1/255 ", 1 / 255), (0.5, 0.5)])
def test_epsilons_parse_both_ways(text, value):
    assert parse_epsilon(text) == pytest.approx(value)


@pytest.mark.parametrize("text, message", [("abc", "not a number"), ("1/0", "divides by zero"),
                                           ("2", r"\[0, 1\]"), ("-0.1", r"\[0, 1\]")])
def test_bad_epsilons_are_refused_clearly(text, message):
    with pytest.raises(ValueError, match=message):
        parse_epsilon(text)


def test_format_epsilon_shows_both_scales():
    assert format_epsilon(8 / 255) == "0.0314 (8/255)"
    assert "12.8/255" in format_epsilon(0.05)


def test_unknown_attack_names_the_choices():
    with pytest.raises(ValueError, match="fgsm-pred"):
        ATTACKS.get("deepfool")


def test_epsilon_lists_name_the_option_and_the_bad_entry():
    assert parse_epsilon_list("2/255, 0.05") == pytest.approx([2 / 255, 0.05])
    with pytest.raises(ValueError, match=r"test epsilons: epsilon 'x' is not a number"):
        parse_epsilon_list("2/255, x", "test epsilons")
    with pytest.raises(ValueError, match="at most"):
        parse_epsilon_list(",".join(["0.01"] * 100))


def test_sweep_reuses_one_gradient_and_matches_fgsm_from_scratch(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    epsilons = [1 / 255, 4 / 255, 0.05, 0.2]
    results = evaluate(model, test_set, ["fgsm"], epsilons, batch_size=16)
    x, y = test_set.floats(), test_set.labels
    for r in results[1:]:
        with torch.no_grad():
            naive = (model(fgsm(model, x, y, r.epsilon)).argmax(1) == y).float().mean().item()
        assert r.accuracy == pytest.approx(naive)


def test_accuracy_falls_as_epsilon_grows_for_a_standard_model(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    results = evaluate(model, test_set, ["fgsm"], [0.5 / 255, 2 / 255, 8 / 255, 0.05])
    accuracies = [r.accuracy for r in results]
    assert accuracies[0] > 0.6, f"the fixture model did not learn: {accuracies}"
    assert all(b <= a + 1e-9 for a, b in zip(accuracies, accuracies[1:])), accuracies
    assert accuracies[-1] < accuracies[0] - 0.3, accuracies


def test_pgd_is_never_weaker_than_fgsm(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    epsilons = [1 / 255, 2 / 255, 4 / 255, 8 / 255, 0.05]
    rows = {(r.attack, r.epsilon): r.accuracy for r in evaluate(model, test_set, ["fgsm", "pgd"], epsilons)}
    for eps in epsilons:
        assert rows[("pgd", eps)] <= rows[("fgsm", eps)], f"PGD weaker than FGSM at eps={eps}"


def test_random_noise_hurts_less_than_fgsm(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    rows = {(r.attack, r.epsilon): r.accuracy for r in evaluate(model, test_set, ["fgsm", "noise"], [8 / 255])}
    assert rows[("noise", 8 / 255)] > rows[("fgsm", 8 / 255)]


def test_evaluation_counts_malignant_cases_called_benign_or_normal(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    for r in evaluate(model, test_set, ["fgsm"], [0.05]):
        conf = np.array(r.confusion)
        assert conf.sum() == len(test_set)
        assert r.critical_total == int((test_set.labels == 1).sum())
        assert r.critical_missed == conf[1, 0] + conf[1, 2]
        assert r.sensitivity == pytest.approx(conf[1, 1] / conf[1].sum())
        recalls = [conf[i, i] / conf[i].sum() for i in range(3)]
        assert r.balanced_accuracy == pytest.approx(sum(recalls) / 3)
        assert r.accuracy == pytest.approx(np.trace(conf) / conf.sum())


def test_gradient_sign_is_independent_of_epsilon():
    model = TinyLinear()
    x, y = torch.rand(3, 1, 4, 4) * 0.5 + 0.25, torch.tensor([0, 1, 2])
    sign, _ = gradient_sign(model, x, y)
    for eps in (0.01, 0.1, 0.2):
        assert torch.equal(apply_sign(x, sign, eps), fgsm(model, x, y, eps))
