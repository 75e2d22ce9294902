"""What every attack shares: the registry entry, the per-batch context, eval mode and the sign step.

An attack is one registry entry. A single-step attack gives a +-1 `direction` that does not depend on
epsilon, so an evaluation or the explorer computes it once and every epsilon costs one forward pass.
An iterative attack gives `run(context, eps)`, the perturbed batch at that epsilon.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from busadv.attacks.epsilon import check_epsilon
from busadv.registry import Registry

ADVERSARIAL = "adversarial"  # gradient attacks: the worst case
BASELINE = "baseline"        # random noise of the same size: what an attack must beat
CORRUPTION = "corruption"    # ordinary scanner variation (speckle, gain, blur, JPEG...): not an attack at all


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the duration of an attack (BatchNorm must not move), then the caller's mode again."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def apply_sign(x: torch.Tensor, sign: torch.Tensor, eps: float) -> torch.Tensor:
    """x + eps * sign, clamped to the valid pixel range."""
    return (x + check_epsilon(eps) * sign).clamp(0.0, 1.0)


class AttackContext:
    """One batch under attack: the model, images, labels and the work attacks share.

    The clean forward pass is done once with the input gradient enabled, so the clean predictions and
    every FGSM-like direction come from it (one forward, one backward per label source).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, seed: int = 0,
                 batch: int = 0, pgd_steps: int = 10) -> None:
        with torch.inference_mode(False):  # tensors made under inference mode cannot enter autograd: copy them
            x = x.detach().clone() if x.is_inference() else x.detach()
            y = y.clone() if y is not None and y.is_inference() else y
        self.model, self.x, self.seed, self.batch, self.pgd_steps = model, x, seed, batch, pgd_steps
        self._y = y
        self._xg: torch.Tensor | None = None
        self._logits: torch.Tensor | None = None
        self._gradients: dict[str, torch.Tensor] = {}
        self._directions: dict[str, torch.Tensor] = {}

    def _forward(self) -> torch.Tensor:
        # inference_mode(False): an attack needs gradients even when a caller (a page) runs in inference mode.
        if self._logits is None:
            with eval_mode(self.model), torch.inference_mode(False), torch.enable_grad():
                self._xg = self.x.clone().requires_grad_(True)
                self._logits = self.model(self._xg)
        return self._logits

    @property
    def clean_logits(self) -> torch.Tensor:
        return self._forward().detach()

    @property
    def clean_prediction(self) -> torch.Tensor:
        return self.clean_logits.argmax(1)

    @property
    def labels(self) -> torch.Tensor:
        """The true labels, or the model's own answers where they are unknown (an uploaded image)."""
        return self.clean_prediction if self._y is None else self._y

    @property
    def knows_labels(self) -> bool:
        return self._y is not None

    def input_gradient(self, target: str = "true") -> torch.Tensor:
        """d(summed cross-entropy)/dx against the true ("true") or predicted ("predicted") labels.

        Summed, not averaged: per-image gradients are not scaled by 1/batch, so none underflows to sign 0.
        """
        if target not in self._gradients:
            logits = self._forward()
            labels = self.clean_prediction if target == "predicted" else self.labels
            with torch.inference_mode(False), torch.enable_grad():
                loss = F.cross_entropy(logits, labels, reduction="sum")
                assert self._xg is not None
                (grad,) = torch.autograd.grad(loss, self._xg, retain_graph=True)
            self._gradients[target] = grad.detach()
        return self._gradients[target]

    def direction(self, spec: AttackSpec) -> torch.Tensor:
        """A single-step attack's +-1 pattern for this batch, computed at most once."""
        if spec.name not in self._directions:
            assert spec.direction is not None, f"{spec.name} is iterative: it has no direction"
            self._directions[spec.name] = spec.direction(self)
        return self._directions[spec.name]

    def generator(self, salt: int = 0) -> torch.Generator:
        """A seeded generator for this batch: random starts and noise repeat run after run."""
        return torch.Generator().manual_seed(self.seed * 100003 + self.batch + salt)


@dataclass(frozen=True)
class AttackSpec:
    name: str
    label: str
    explanation: str  # one line for the UI: what the attack does and why it matters
    direction: Callable[[AttackContext], torch.Tensor] | None = None  # single-step: +-1, epsilon-free
    run: Callable[[AttackContext, float], torch.Tensor] | None = None  # iterative: perturbed batch at eps
    family: str = ADVERSARIAL
    strength: int = 0        # larger = stronger; the strongest offered attack has the final word
    in_explorer: bool = True  # fast enough for a slider on one image
    slow: bool = False        # minutes per test set (AutoAttack): left out of per-epoch watches and quick checks
    # Corruptions only: the physical setting of each severity level 1..N (for the UI), and the corrupted
    # batch at a severity level (run(context, eps) is then the same corruption scaled to an L-inf size eps).
    severity_scale: tuple[str, ...] = ()
    at_severity: Callable[[AttackContext, int], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if (self.direction is None) == (self.run is None):
            raise ValueError(f"attack {self.name!r} needs exactly one of direction (single-step) or run (iterative)")

    @property
    def single_step(self) -> bool:
        return self.direction is not None

    def perturb(self, context: AttackContext, eps: float) -> torch.Tensor:
        """The perturbed batch at eps (for single-step attacks, the direction is computed once per context)."""
        if check_epsilon(eps) == 0:
            return context.x.clone()
        with torch.inference_mode(False):
            if self.direction is not None:
                return apply_sign(context.x, context.direction(self), eps).detach()
            assert self.run is not None
            with eval_mode(context.model):
                return self.run(context, eps).detach()


ATTACKS: Registry[AttackSpec] = Registry("attack")


def register_attack(spec: AttackSpec, replace: bool = False) -> AttackSpec:
    return ATTACKS.register(spec, replace=replace)


def attack_label(name: str) -> str:
    """'fgsm-pred' -> 'FGSM (predicted label)'; 'none' -> 'Clean'; unknown names pass through."""
    if name == "none":
        return "Clean"
    return ATTACKS.get(name).label if name in ATTACKS else str(name)


def explorer_attacks() -> tuple[AttackSpec, ...]:
    """The attacks the perturbation explorer offers: adversarial ones weakest first, then the baselines."""
    offered = [a for a in ATTACKS if a.in_explorer]
    return tuple(sorted(offered, key=lambda a: (a.family != ADVERSARIAL, a.strength)))


def strongest_attack(names: list[str] | tuple[str, ...] | None = None) -> str | None:
    """The strongest adversarial attack among `names` (default: all registered)."""
    pool = [ATTACKS.get(n) for n in (names if names is not None else ATTACKS.names()) if n != "none"]
    pool = [a for a in pool if a.family == ADVERSARIAL]
    return max(pool, key=lambda a: a.strength).name if pool else None


def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, attack: str, eps: float,
            pgd_steps: int = 10, seed: int = 0) -> torch.Tensor:
    """One batch under one attack: for callers that hold the choice as a string."""
    if attack == "none":
        return x.detach().clone()
    return ATTACKS.get(attack).perturb(AttackContext(model, x, y, seed=seed, pgd_steps=pgd_steps), eps)
