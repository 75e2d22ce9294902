"""Random +-eps per pixel: exactly FGSM's size without its aim. An attack must beat it to mean anything."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from busadv.attacks.base import BASELINE, AttackContext, AttackSpec, apply_sign, register_attack


def noise_sign(shape: torch.Size | Sequence[int], seed: int = 0, device: torch.device | str = "cpu") -> torch.Tensor:
    """A reproducible random +-1 pattern."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 2, tuple(shape), generator=generator) * 2 - 1).float().to(device)


def random_sign_noise(x: torch.Tensor, eps: float, seed: int = 0) -> torch.Tensor:
    return apply_sign(x, noise_sign(x.shape, seed, x.device), eps)


def _direction(context: AttackContext) -> torch.Tensor:
    return noise_sign(context.x.shape, context.seed + context.batch, context.x.device)


NOISE = register_attack(AttackSpec(
    name="noise", label="Random noise",
    explanation="Random noise of the same size (±ε per pixel): the baseline an attack must beat",
    direction=_direction, family=BASELINE))
