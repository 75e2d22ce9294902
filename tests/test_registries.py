"""Invariants every registered attack, model and training mode keeps, and extension by registration alone.

Like torchattacks' tests over its __all__: a new entry is tested the moment it is registered.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from busadv.attacks import ATTACKS, AttackContext, AttackSpec, explorer_attacks, register_attack
from busadv.cli import build_parser
from busadv.data import make_phantoms, split_dataset
from busadv.evaluation import evaluate
from busadv.models import MODELS, ModelSpec, build_model, register_model
from busadv.training import MODES, TrainConfig, train_model

# Slow attacks (AutoAttack) keep the same invariants in one combined test of their own (test_autoattack.py).
ATTACK_NAMES = tuple(n for n in ATTACKS.names() if not ATTACKS.get(n).slow)


class SmallNet(nn.Module):
    """Conv + BatchNorm + dropout: attacks must not move BatchNorm statistics or depend on dropout."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Flatten(), nn.Linear(4 * 8 * 8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture
def batch():
    torch.manual_seed(1)
    return SmallNet(), torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("name", ATTACK_NAMES)
@pytest.mark.parametrize("eps", [1 / 255, 8 / 255, 0.2])
def test_every_attack_stays_in_the_eps_ball_and_the_pixel_range(name, eps, batch):
    model, x, y = batch
    adv = ATTACKS.get(name).perturb(AttackContext(model, x, y, pgd_steps=3), eps)
    assert adv.shape == x.shape
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_every_attack_leaves_the_model_as_it_found_it(name, batch):
    model, x, y = batch
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ATTACKS.get(name).perturb(AttackContext(model, x, y, pgd_steps=3), 8 / 255)
    assert model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{name} changed {key}"


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_every_attack_is_deterministic_under_a_seed_and_does_nothing_at_zero(name, batch):
    model, x, y = batch
    spec = ATTACKS.get(name)
    a = spec.perturb(AttackContext(model, x, y, seed=5, pgd_steps=3), 8 / 255)
    b = spec.perturb(AttackContext(model, x, y, seed=5, pgd_steps=3), 8 / 255)
    assert torch.equal(a, b)
    assert torch.equal(spec.perturb(AttackContext(model, x, y), 0.0), x)


@pytest.mark.parametrize("name", [n for n in ATTACK_NAMES if ATTACKS.get(n).single_step])
def test_single_step_directions_are_signs_independent_of_epsilon(name, batch):
    model, x, y = batch
    context = AttackContext(model, x, y)
    direction = context.direction(ATTACKS.get(name))
    assert set(direction.unique().tolist()) <= {-1.0, 0.0, 1.0}
    small = ATTACKS.get(name).perturb(context, 2 / 255)
    assert torch.allclose(small, (x + 2 / 255 * direction).clamp(0, 1))


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_every_attack_has_a_label_and_an_explanation_for_the_ui(name):
    spec = ATTACKS.get(name)
    assert spec.label and len(spec.explanation) > 20


def test_a_toy_attack_registered_alone_appears_in_the_cli_the_evaluation_and_the_explorer(trained_simplecnn):
    spec = register_attack(AttackSpec(name="toy-shift", label="Toy shift", explanation="adds eps to every pixel "
                                      "(a test attack)", direction=lambda context: torch.ones_like(context.x)))
    try:
        parser = build_parser()
        args = parser.parse_args(["evaluate", "x.pt", "--attacks", "fgsm,toy-shift"])
        assert args.attacks == ["fgsm", "toy-shift"]
        assert "toy-shift" in parser.format_help() or "toy-shift" in _subparser_help(parser, "evaluate")
        assert "toy-shift" in parser.parse_args(["attack", "x.pt", "--attack", "toy-shift"]).attack
        model, _, test_set = trained_simplecnn
        conditions = {(c.attack, c.epsilon) for c in evaluate(model, test_set, ["toy-shift"], [4 / 255])}
        assert conditions == {("none", 0.0), ("toy-shift", 4 / 255)}
        assert spec in explorer_attacks()
    finally:
        ATTACKS.unregister("toy-shift")
    assert "toy-shift" not in ATTACKS


def _subparser_help(parser, name: str) -> str:
    action = next(a for a in parser._subparsers._group_actions if name in a.choices)  # noqa: SLF001
    return action.choices[name].format_help()


# ------------------------------------------------------------------------------------------ models

@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_takes_unit_range_grayscale_and_gives_one_logit_per_class(name):
    size = 32 if name != "simplecnn" else 16
    model = build_model(name, size).eval()
    x = torch.rand(2, 1, size, size, requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 3)
    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, "attacks need an input gradient"


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_refuses_sizes_outside_its_bounds(name):
    spec = MODELS.get(name)
    with pytest.raises(ValueError, match="image size"):
        build_model(name, spec.max_image_size + spec.size_multiple)
    with torch.device("meta"):  # building on the meta device allocates nothing: checkpoints are checked this way
        assert build_model(name, spec.default_image_size) is not None


def test_a_toy_model_registered_alone_trains_and_is_offered_by_the_cli(small_phantoms):
    class Tiny(nn.Module):
        def __init__(self, size: int, classes: int) -> None:
            super().__init__()
            self.fc = nn.Linear(size * size, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.flatten(1))

    register_model(ModelSpec(name="tiny-linear", label="Tiny linear", description="a test model",
                             default_image_size=32, build=lambda size, classes, pretrained: Tiny(size, classes)))
    try:
        assert build_parser().parse_args(["train", "--model", "tiny-linear"]).model == "tiny-linear"
        train_set, test_set = split_dataset(small_phantoms, 0.3, seed=0)
        result = train_model(TrainConfig(arch="tiny-linear", epochs=1, device="cpu"), train_set, test_set)
        assert result.history[0].val_accuracy is not None, "chosen on the validation split"
        assert result.history[0].test_accuracy is None, "the test split is not looked at while training"
    finally:
        MODELS.unregister("tiny-linear")


# ------------------------------------------------------------------------------------------ training modes

@pytest.mark.parametrize("name", MODES.names())
def test_every_training_mode_trains_and_keeps_its_recipe(name):
    data = make_phantoms(16, {"benign": 12, "malignant": 10, "normal": 8}, use_cache=False)
    train_set, test_set = split_dataset(data, 0.3, seed=0)
    adversarial = MODES.get(name).adversarial
    config = TrainConfig(mode=name, epsilon=4 / 255 if adversarial else 0.0, epochs=1, image_size=16, pgd_steps=2,
                         device="cpu", monitor_images=8)
    result = train_model(config, train_set, test_set)
    stats = result.history[0]
    assert stats.train_loss > 0 and stats.val_accuracy is not None and stats.test_accuracy is None
    assert (stats.val_pgd_accuracy is not None) == adversarial, "adversarial runs are watched under PGD"
    assert config.recipe()["mode"] == name


@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_every_attack_works_for_a_caller_in_inference_mode(name, batch):
    """Pages run under torch.inference_mode; an attack must still get its gradients."""
    model, x, y = batch
    with torch.inference_mode():
        adv = ATTACKS.get(name).perturb(AttackContext(model, x, y, pgd_steps=2), 4 / 255)
    assert (adv - x).abs().max() <= 4 / 255 + 1e-6
