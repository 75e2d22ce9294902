"""Adversarial perturbations as pure functions of (model, x, y, eps), all in [0, 1] pixel space.

Models are attacked in eval mode (BatchNorm statistics must not move while attacking) and put back
in the mode they were in. FGSM's gradient sign does not depend on epsilon, so `gradient_sign` is
exposed on its own: a sweep over E epsilons costs one backward pass and E forward passes.
"""

from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from busadv.choices import coerce_choice


class Attack(str, Enum):
    NONE = "none"            # the clean image
    FGSM = "fgsm"            # FGSM on the true label
    FGSM_PRED = "fgsm-pred"  # FGSM on the model's own prediction (no label leaking)
    PGD = "pgd"              # projected gradient descent, random start
    NOISE = "noise"          # random +-eps signs: the baseline an attack must beat

    @classmethod
    def coerce(cls, value: "str | Attack") -> "Attack":
        return coerce_choice(cls, value, "attack")

    @property
    def label(self) -> str:
        return {"none": "Clean", "fgsm": "FGSM", "fgsm-pred": "FGSM (predicted label)",
                "pgd": "PGD", "noise": "Random noise"}[self.value]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the duration of an attack, then the caller's mode again."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _check_eps(eps: float) -> float:
    eps = float(eps)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1] (pixel scale; 8/255 = 0.031), got {eps}")
    return eps


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(d loss / d x, clean logits). `y=None` attacks the model's own predicted labels."""
    with eval_mode(model), torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        logits = model(x)
        target = logits.argmax(1).detach() if y is None else y
        # Summed loss: per-sample gradients are not scaled by 1/batch, so none underflow to sign 0.
        loss = F.cross_entropy(logits, target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad, logits.detach()


def gradient_sign(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sign of the input gradient, clean logits): everything FGSM needs for any epsilon."""
    grad, logits = input_gradient(model, x, y)
    return grad.sign(), logits


def apply_sign(x: torch.Tensor, sign: torch.Tensor, eps: float) -> torch.Tensor:
    """x + eps * sign, clamped to the valid pixel range."""
    return (x + _check_eps(eps) * sign).clamp(0.0, 1.0)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Fast gradient sign method; `y=None` uses the predicted label."""
    sign, _ = gradient_sign(model, x, y)
    return apply_sign(x, sign, eps).detach()


def fgsm_random_start(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                      step: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """FGSM from a uniform random start with a 1.25*eps step (Wong et al. 2020), projected to the eps ball."""
    eps = _check_eps(eps)
    step = 1.25 * eps if step is None else step
    delta = (torch.rand(x.shape, generator=generator, device="cpu").to(x.device) * 2 - 1) * eps
    start = (x + delta).clamp(0, 1)
    sign, _ = gradient_sign(model, start, y)
    delta = (start - x + step * sign).clamp(-eps, eps)
    return (x + delta).clamp(0, 1).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10,
        step_size: float | None = None, random_start: bool = True,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """L-inf PGD; keeps, per image, the iterate with the highest loss seen."""
    eps = _check_eps(eps)
    if steps < 1:
        raise ValueError(f"PGD needs at least one step, got {steps}")
    if eps == 0.0:
        return x.detach().clone()
    alpha = 2.5 * eps / steps if step_size is None else float(step_size)
    x = x.detach()
    if random_start:
        delta = (torch.rand(x.shape, generator=generator, device="cpu").to(x.device) * 2 - 1) * eps
    else:
        delta = torch.zeros_like(x)
    delta = (x + delta).clamp(0, 1) - x
    best = (x + delta).clone()
    best_loss = torch.full((x.shape[0],), -float("inf"), device=x.device)
    with eval_mode(model), torch.enable_grad():
        for _ in range(steps):
            delta.requires_grad_(True)
            losses = F.cross_entropy(model(x + delta), y, reduction="none")
            (grad,) = torch.autograd.grad(losses.sum(), delta)
            with torch.no_grad():
                improved = losses.detach() > best_loss
                best[improved] = (x + delta.detach())[improved]
                best_loss = torch.where(improved, losses.detach(), best_loss)
                delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
                delta = (x + delta).clamp(0, 1) - x
        with torch.no_grad():
            final = F.cross_entropy(model(x + delta), y, reduction="none")
            improved = final > best_loss
            best[improved] = (x + delta)[improved]
    return best.detach()


def noise_sign(shape: torch.Size | Sequence[int], seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    """A reproducible random +-1 pattern: random noise of exactly FGSM's size."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, tuple(shape), generator=generator) * 2 - 1).float().to(device)


def random_sign_noise(x: torch.Tensor, eps: float, seed: int = 0) -> torch.Tensor:
    return apply_sign(x, noise_sign(x.shape, seed, x.device), eps)


def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str | Attack, eps: float,
            pgd_steps: int = 10, seed: int = 0) -> torch.Tensor:
    """One entry point for every attack, for callers that hold the choice as a string."""
    attack = Attack.coerce(attack)
    if attack is Attack.NONE or eps == 0:
        return x.detach().clone()
    if attack is Attack.FGSM:
        return fgsm(model, x, y, eps)
    if attack is Attack.FGSM_PRED:
        return fgsm(model, x, None, eps)
    if attack is Attack.PGD:
        generator = torch.Generator().manual_seed(seed)
        return pgd(model, x, y, eps, steps=pgd_steps, generator=generator)
    return random_sign_noise(x, eps, seed)


def parse_epsilon(text: str | float) -> float:
    """'8/255', '0.031' or 0.031 -> 0.031; epsilons are typed both ways by users."""
    if isinstance(text, (int, float)):
        return _check_eps(float(text))
    value = str(text).strip()
    try:
        if "/" in value:
            num, den = value.split("/", 1)
            return _check_eps(float(num) / float(den))
        return _check_eps(float(value))
    except ZeroDivisionError:
        raise ValueError(f"epsilon {text!r} divides by zero") from None
    except ValueError as exc:
        if "epsilon" in str(exc):
            raise
        raise ValueError(f"epsilon {text!r} is not a number or a fraction like 8/255") from None


def parse_epsilon_list(text: str) -> list[float]:
    """'2/255, 8/255, 0.05' -> [0.0078, 0.031, 0.05]; raises ValueError naming the bad entry."""
    return [parse_epsilon(part) for part in str(text).replace(";", ",").split(",") if part.strip()]


def format_epsilon(eps: float) -> str:
    """0.031 -> '0.031 (8/255)': both forms, as users think in either."""
    k = eps * 255
    if abs(k - round(k)) < 1e-6:
        return f"{eps:.3g} ({int(round(k))}/255)"
    return f"{eps:.3g} (~{k:.1f}/255)"


STUDY_EPSILONS: tuple[float, ...] = (0.05, 0.2, 0.5)
SMALL_EPSILONS: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)
STRIP_EPSILONS: tuple[float, ...] = (0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 0.05, 0.2, 0.5)
