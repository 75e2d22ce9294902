"""L-inf PGD (Madry et al. 2018): many small sign steps, projected to the eps ball, from a random start.

Stronger than FGSM; busadv keeps, per image, the iterate with the highest loss seen, so more steps can
never make the attack weaker.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from busadv.attacks.base import AttackContext, AttackSpec, eval_mode, register_attack
from busadv.attacks.epsilon import check_epsilon


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor, steps: int = 10,
        step_size: float | None = None, random_start: bool = True,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """L-inf PGD; keeps, per image, the iterate with the highest loss seen.

    eps may be a tensor of one epsilon per image ([N]): the per-image robustness search attacks every image
    of a batch at its own epsilon in one pass.
    """
    if steps < 1:
        raise ValueError(f"PGD needs at least one step, got {steps}")
    if isinstance(eps, torch.Tensor):
        if eps.min() < 0 or eps.max() > 1:
            raise ValueError("epsilon must lie in [0, 1] (pixel scale; 8/255 = 0.031)")
        eps = eps.to(x.device, x.dtype).view(-1, *([1] * (x.dim() - 1)))
    elif check_epsilon(eps) == 0.0:
        return x.detach().clone()
    alpha = 2.5 * eps / steps if step_size is None else float(step_size)
    x = x.detach()
    bound = torch.as_tensor(eps, dtype=x.dtype, device=x.device)  # a float or one eps per image
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
                delta = (delta.detach() + alpha * grad.sign()).clamp(-bound, bound)
                delta = (x + delta).clamp(0, 1) - x
        with torch.no_grad():
            final = F.cross_entropy(model(x + delta), y, reduction="none")
            improved = final > best_loss
            best[improved] = (x + delta)[improved]
    return best.detach()


def _run(context: AttackContext, eps: float) -> torch.Tensor:
    return pgd(context.model, context.x, context.labels, eps, steps=context.pgd_steps, generator=context.generator())


PGD = register_attack(AttackSpec(
    name="pgd", label="PGD",
    explanation="PGD: many small gradient steps from a random start; far stronger than FGSM, the usual test",
    run=_run, strength=20))
