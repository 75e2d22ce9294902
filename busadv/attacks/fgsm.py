"""FGSM: one step of eps along the sign of the input gradient (Goodfellow et al. 2015).

`x_adv = clamp(x + eps * sign(grad_x loss(model(x), y)), 0, 1)`, with the model in eval mode. The
seed study wrote the formula without `sign`; that was a typo, not a variant. FGSM on the predicted
label attacks the model's own answer and cannot leak the true label (Kurakin et al. 2016).
"""

from __future__ import annotations

import torch
from torch import nn

from busadv.attacks.base import AttackContext, AttackSpec, apply_sign, register_attack
from busadv.attacks.epsilon import check_epsilon


def gradient_sign(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sign of the input gradient, clean logits): everything FGSM needs for any epsilon; y=None: predicted."""
    context = AttackContext(model, x, y)
    return context.input_gradient("true").sign(), context.clean_logits


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Fast gradient sign method; `y=None` uses the predicted label."""
    sign, _ = gradient_sign(model, x, y)
    return apply_sign(x, sign, eps).detach()


def fgsm_random_start(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float,
                      step: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """FGSM from a uniform random start with a 1.25*eps step (Wong et al. 2020), projected to the eps ball.

    y=None attacks the model's prediction on the clean image (computed in eval mode, like the attack).
    """
    eps = check_epsilon(eps)
    step = 1.25 * eps if step is None else step
    if y is None:
        y = AttackContext(model, x, None).clean_prediction
    delta = (torch.rand(x.shape, generator=generator, device="cpu").to(x.device) * 2 - 1) * eps
    start = (x + delta).clamp(0, 1)
    sign, _ = gradient_sign(model, start, y)
    delta = (start - x + step * sign).clamp(-eps, eps)
    return (x + delta).clamp(0, 1).detach()


FGSM = register_attack(AttackSpec(
    name="fgsm", label="FGSM",
    explanation="FGSM: one gradient-sign step that raises the loss of the true diagnosis",
    direction=lambda context: context.input_gradient("true").sign(), strength=10))

FGSM_PREDICTED = register_attack(AttackSpec(
    name="fgsm-pred", label="FGSM (predicted label)",
    explanation="FGSM on the predicted label: the same step, aimed at the model's own answer (no label leaking)",
    direction=lambda context: context.input_gradient("predicted").sign(), strength=10))
