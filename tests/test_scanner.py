"""Scanner variation as registry entries: sizes in FGSM's terms, seeded, monotonic in severity, never 'adversarial'."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from busadv.attacks import ADVERSARIAL, ATTACKS, AttackContext, explorer_attacks, fgsm, strongest_attack
from busadv.attacks.base import CORRUPTION
from busadv.attacks.scanner import (
    REFERENCE_SEVERITY,
    SEVERITIES,
    corrupt,
    corruption_names,
    parse_corruptions,
    parse_severities,
    perturbation_size,
)
from busadv.data import make_phantoms
from busadv.evaluation import ConditionResult
from busadv.explorer import PerturbationProbe
from busadv.results import diagnose, rows_for
from busadv.results.diagnosis import MASKING
from busadv.training import TrainConfig

EXPECTED = {"speckle", "gain", "tgc", "defocus", "motion", "jpeg", "dynamic-range"}
POINTWISE = {"speckle", "gain", "tgc", "dynamic-range"}  # each pixel on its own: L-inf grows with severity too
RANDOM = {"speckle", "gain", "tgc", "motion", "dynamic-range"}  # defocus and JPEG draw nothing


@pytest.fixture(scope="module")
def scans() -> torch.Tensor:
    """16 phantoms at 64 px: real speckle, layers and lesions, so blur and JPEG have something to change."""
    data = make_phantoms(64, {"benign": 6, "malignant": 5, "normal": 5}, use_cache=False)
    return data.floats()


def context(x: torch.Tensor, seed: int = 0) -> AttackContext:
    return AttackContext(nn.Identity(), x, None, seed=seed)  # corruptions never call the model


def test_every_scanner_variation_is_a_registered_corruption_with_five_physical_levels():
    assert set(corruption_names()) == EXPECTED
    for name in corruption_names():
        spec = ATTACKS.get(name)
        assert spec.family == CORRUPTION and spec.family != ADVERSARIAL
        assert len(spec.severity_scale) == len(SEVERITIES) == 5
        assert all(spec.severity_scale), name
        assert spec.in_explorer and spec in explorer_attacks()
        assert "not an attack" in spec.explanation
    assert ATTACKS.get("gain").severity_scale[0] == "±2 dB" and ATTACKS.get("jpeg").severity_scale[-1] == "quality 10"
    # The diagnosis and the explorer's "final word" belong to adversarial attacks only.
    assert ATTACKS.get(strongest_attack()).family == ADVERSARIAL
    assert strongest_attack(["fgsm", "speckle", "jpeg"]) == "fgsm"
    assert strongest_attack(["speckle", "gain"]) is None


def test_perturbation_size_is_in_fgsm_terms():
    clean = torch.zeros(2, 1, 2, 2)
    changed = clean.clone()
    changed[0, 0, 0, 0], changed[0, 0, 1, 1] = 0.3, -0.4
    linf, l2 = perturbation_size(clean, changed)
    assert linf == pytest.approx(0.4)
    assert l2.tolist() == pytest.approx([0.5, 0.0])
    x = torch.full((3, 1, 4, 4), 0.5)
    adv = fgsm(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), x, torch.tensor([0, 1, 2]), 8 / 255)
    linf, l2 = perturbation_size(x, adv)  # FGSM's epsilon is exactly its L-inf size; L2 = eps * sqrt(pixels)
    assert linf == pytest.approx(8 / 255)
    assert l2.tolist() == pytest.approx([8 / 255 * 4] * 3)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_corruption_reports_its_size_and_repeats_under_a_seed(name, scans):
    first = corrupt(context(scans, seed=3), name, 3)
    again = corrupt(context(scans, seed=3), name, 3)
    assert torch.equal(first, again), "same seed, same corruption"
    assert first.shape == scans.shape and first.min() >= 0 and first.max() <= 1
    linf, l2 = perturbation_size(scans, first)
    delta = (first - scans).flatten(1)
    assert linf == pytest.approx(float(delta.abs().max())) and 0 < linf <= 1
    assert torch.allclose(l2, delta.norm(dim=1)) and l2.shape == (len(scans),)
    other = corrupt(context(scans, seed=4), name, 3)
    assert torch.equal(first, other) != (name in RANDOM), "random draws follow the seed, and only they do"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_higher_severity_is_a_larger_change(name, scans):
    sizes = [perturbation_size(scans, corrupt(context(scans, seed=1), name, s)) for s in SEVERITIES]
    l2_means = [float(l2.mean()) for _, l2 in sizes]
    linfs = [linf for linf, _ in sizes]
    assert all(a < b for a, b in zip(l2_means, l2_means[1:])), (name, l2_means)
    if name in POINTWISE:
        assert all(a <= b + 1e-6 for a, b in zip(linfs, linfs[1:])), (name, linfs)
    else:  # a longer blur averages more pixels: its largest single-pixel change can level off between steps
        assert linfs[-1] > linfs[0] and linfs[2] > linfs[0], (name, linfs)


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("eps", [2 / 255, 8 / 255])
def test_at_equal_size_each_image_changes_by_exactly_eps_in_the_reference_pattern(name, eps, scans):
    ctx = context(scans, seed=2)
    scaled = ATTACKS.get(name).perturb(ctx, eps)
    per_image = (scaled - scans).flatten(1).abs().amax(1)
    assert torch.allclose(per_image, torch.full_like(per_image, eps), atol=1e-6), "every image exactly at eps"
    reference = (corrupt(ctx, name, REFERENCE_SEVERITY) - scans).flatten(1)
    direction = (scaled - scans).flatten(1)
    cosine = torch.nn.functional.cosine_similarity(direction, reference, dim=1)
    assert bool((cosine > 0.99).all()), f"{name}: the equal-size change is the reference severity's, scaled"


def test_severity_and_corruption_names_are_checked_with_the_option_named():
    assert parse_severities("1-5") == [1, 2, 3, 4, 5]
    assert parse_severities("5, 1,3") == [1, 3, 5] and parse_severities(None) == list(SEVERITIES)
    for bad, message in (("0-7", "severities: 0 is outside 1..5"), ("6", "severities: 6 is outside"),
                         ("a", "severities: 'a' is not a level"), ("4-2", "not a level or a range"),
                         ("", "at least one level")):
        with pytest.raises(ValueError, match=message):
            parse_severities(bad)
    assert parse_corruptions("Gain, jpeg") == ["gain", "jpeg"] and parse_corruptions(None) == list(corruption_names())
    with pytest.raises(ValueError, match="corruptions: 'fog' is an unknown corruption; choose from: speckle"):
        parse_corruptions("fog")
    with pytest.raises(ValueError, match="'pgd' is an attack, not a scanner corruption"):
        parse_corruptions("gain,pgd")
    with pytest.raises(ValueError, match="severity must be a whole number from 1 to 5"):
        corrupt(context(torch.rand(1, 1, 8, 8)), "gain", 9)
    with pytest.raises(ValueError, match="not a scanner corruption"):
        corrupt(context(torch.rand(1, 1, 8, 8)), "fgsm", 1)


def _condition(attack: str, eps: float, correct: int) -> ConditionResult:
    """Ten images of each class; `correct` of each row on the diagonal, the rest called the next class."""
    return ConditionResult(attack=attack, epsilon=eps, confusion=[
        [correct if j == i else (10 - correct if j == (i + 1) % 3 else 0) for j in range(3)] for i in range(3)])


def test_corruptions_never_count_as_evidence_of_gradient_masking():
    eps = 8 / 255
    conditions = [_condition("none", 0.0, 9), _condition("fgsm", eps, 4), _condition("pgd", eps, 2),
                  _condition("speckle", eps, 9), _condition("gain", eps, 8), _condition("jpeg", eps, 9)]
    rows = rows_for(conditions, run="r", seed=0, train_config=TrainConfig(device="cpu"), data_fingerprint="f",
                    data_source="s", simulated=True, eval_pgd_steps=10)
    assert {r.eval_pgd_steps for r in rows if r.attack in EXPECTED} == {None}, "corruptions have no PGD steps"
    assert not [d for d in diagnose(rows) if d.kind == MASKING]
    # ... while the same numbers on an adversarial attack stronger than PGD are flagged.
    flagged = rows_for([*conditions[:3], _condition("autoattack", eps, 9)], run="r", seed=0,
                       train_config=TrainConfig(device="cpu"), data_fingerprint="f", data_source="s",
                       simulated=True, eval_pgd_steps=10)
    assert [d for d in diagnose(flagged) if d.kind == MASKING]


def test_the_explorer_offers_corruptions_on_one_image(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    probe = PerturbationProbe(model, test_set.images[0, 0], int(test_set.labels[0]))
    for name in ("gain", "jpeg"):
        image = probe.perturbed(name, 8 / 255)
        assert math.isclose(float((image - probe.x).abs().max()), 8 / 255, abs_tol=1e-6)
        assert probe.probabilities(name, 8 / 255).sum() == pytest.approx(1.0, abs=1e-5)
        flip = probe.smallest_flip(name, max_eps=16 / 255)
        assert flip is None or 0 < flip <= 16 / 255
