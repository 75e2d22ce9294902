"""One model and one image under a moving epsilon: what the perturbation explorer page shows.

The gradient sign is computed once per (model, image, attack); every epsilon after that is one
forward pass, and a list of epsilons is one batched forward pass. That is what keeps the slider instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from busadv.attacks import Attack, apply_sign, eval_mode, gradient_sign, noise_sign

PROBE_ATTACKS: tuple[Attack, ...] = (Attack.FGSM, Attack.FGSM_PRED, Attack.NOISE)


@dataclass
class StripItem:
    epsilon: float
    image: np.ndarray  # uint8 [H, W]
    predicted: int
    confidence: float
    probabilities: np.ndarray


class PerturbationProbe:
    """Cached gradient signs for one model and one [0, 1] grayscale image."""

    def __init__(self, model: nn.Module, image: torch.Tensor | np.ndarray, true_label: int | None = None,
                 noise_seed: int = 0) -> None:
        x = torch.tensor(np.array(image, copy=True)) if isinstance(image, np.ndarray) else image.detach().clone()
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        while x.dim() < 4:
            x = x.unsqueeze(0)
        if x.shape[:2] != (1, 1):
            raise ValueError(f"the probe takes one grayscale image, got shape {tuple(x.shape)}")
        self.model = model
        self.device = next(model.parameters()).device
        self.x = x.float().to(self.device)
        self.true_label = true_label
        self.noise_seed = noise_seed
        self._signs: dict[Attack, torch.Tensor] = {}
        self._clean_probs: np.ndarray | None = None

    def sign(self, attack: str | Attack) -> torch.Tensor:
        """The +-1 direction of an attack; computed at most once."""
        attack = Attack.coerce(attack)
        if attack not in self._signs:
            if attack is Attack.NOISE:
                self._signs[attack] = noise_sign(self.x.shape, self.noise_seed, self.device)
            elif attack in (Attack.FGSM, Attack.FGSM_PRED):
                # Without a known diagnosis (an uploaded image) FGSM attacks the predicted label.
                label = None if attack is Attack.FGSM_PRED or self.true_label is None else \
                    torch.tensor([self.true_label], device=self.device)
                self._signs[attack], _ = gradient_sign(self.model, self.x, label)
            else:
                raise ValueError(f"the explorer offers {', '.join(a.value for a in PROBE_ATTACKS)}, not {attack.value}")
        return self._signs[attack]

    def perturbed(self, attack: str | Attack, eps: float) -> torch.Tensor:
        if eps == 0:
            return self.x
        return apply_sign(self.x, self.sign(attack), eps)

    def probabilities_many(self, attack: str | Attack, epsilons: Sequence[float]) -> np.ndarray:
        """[len(epsilons), classes] in one batched forward pass."""
        batch = torch.cat([self.perturbed(attack, e) for e in epsilons])
        with eval_mode(self.model), torch.inference_mode():
            return torch.softmax(self.model(batch), dim=1).cpu().numpy()

    def probabilities(self, attack: str | Attack, eps: float) -> np.ndarray:
        if eps == 0:
            if self._clean_probs is None:
                self._clean_probs = self.probabilities_many(Attack.NONE, [0.0])[0]
            return self._clean_probs
        return self.probabilities_many(attack, [eps])[0]

    def smallest_flip(self, attack: str | Attack, max_eps: float = 0.5) -> float | None:
        """The smallest k/255 (k = 1 .. up to max_eps, then max_eps itself) that changes the predicted class."""
        clean = int(self.probabilities(Attack.NONE, 0.0).argmax())
        steps = np.arange(1, int(np.floor(max_eps * 255 + 1e-9)) + 1) / 255.0
        grid = steps if len(steps) and abs(steps[-1] - max_eps) < 1e-9 else np.append(steps, max_eps)
        for start in range(0, len(grid), 64):
            chunk = grid[start:start + 64]
            preds = self.probabilities_many(attack, chunk.tolist()).argmax(1)
            flipped = np.nonzero(preds != clean)[0]
            if len(flipped):
                return float(chunk[flipped[0]])
        return None

    def strip(self, attack: str | Attack, epsilons: Sequence[float]) -> list[StripItem]:
        """The same image at several epsilons, each with its predicted class and confidence."""
        probs = self.probabilities_many(attack, epsilons)
        items = []
        for eps, p in zip(epsilons, probs):
            items.append(StripItem(epsilon=float(eps), image=to_uint8(self.perturbed(attack, eps)), predicted=int(p.argmax()),
                                   confidence=float(p.max()), probabilities=p))
        return items


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[.., H, W] tensor in [0, 1] -> uint8 [H, W] for display."""
    return (image.detach().reshape(image.shape[-2:]).cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)


def amplified_perturbation(clean: torch.Tensor, perturbed: torch.Tensor) -> np.ndarray:
    """The difference stretched to full contrast around mid-grey, so a 1/255 change is visible."""
    delta = (perturbed - clean).detach().reshape(clean.shape[-2:]).cpu().numpy()
    top = float(np.abs(delta).max())
    if top == 0:
        return np.full(delta.shape, 128, dtype=np.uint8)
    return ((delta / top) * 127 + 128).round().clip(0, 255).astype(np.uint8)
