"""AutoAttack (ART's attacks, chained as in Croce & Hein 2020): never weaker than PGD, seeded, in the eps ball.

One combined test keeps the registry's invariants for this slow attack (test_registries runs the fast ones).
"""

from __future__ import annotations

import torch

from busadv.attacks import ATTACKS, AttackContext, strongest_attack
from busadv.evaluation import evaluate


def test_autoattack_is_the_strongest_registered_attack_and_not_offered_on_a_slider():
    assert strongest_attack() == "autoattack"
    assert strongest_attack(["fgsm", "pgd", "noise"]) == "pgd"
    assert not ATTACKS.get("autoattack").in_explorer and ATTACKS.get("autoattack").slow


def test_autoattack_keeps_every_invariant_and_is_never_weaker_than_pgd():
    from tests.test_registries import SmallNet

    torch.manual_seed(2)
    model, x = SmallNet().eval(), torch.rand(8, 1, 8, 8)
    y = model(x).argmax(1)  # every image starts correctly classified, so every attack has work to do
    eps = 4 / 255
    pgd = ATTACKS.get("pgd").perturb(AttackContext(model, x, y, seed=1, pgd_steps=10), eps)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():  # pages call attacks in inference mode
        adv = ATTACKS.get("autoattack").perturb(AttackContext(model, x, y, seed=1), eps)
    assert model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    model.eval()
    with torch.no_grad():
        assert (model(adv).argmax(1) == y).sum() <= (model(pgd).argmax(1) == y).sum()
    assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    again = ATTACKS.get("autoattack").perturb(AttackContext(model, x, y, seed=1), eps)
    assert torch.equal(adv, again), "seeded: the same images every run"
    assert torch.equal(ATTACKS.get("autoattack").perturb(AttackContext(model, x, y), 0.0), x)


def test_autoattack_as_an_evaluation_condition(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    rows = evaluate(model, test_set.subset(torch.arange(0, 12)), ["autoattack"], [0.1])
    assert [r.attack for r in rows] == ["none", "autoattack"] and rows[1].accuracy <= rows[0].accuracy
