"""One model and one image under a moving epsilon: what the perturbation explorer page shows.

A single-step attack's direction is computed once per (model, image, attack); every epsilon after that
is one forward pass, and a list of epsilons is one batched forward pass. Iterative attacks (PGD) are
computed once per epsilon and kept. A probe is shared by every browser session that looks at the same
model and image, so its caches are filled under a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from busadv.attacks import ATTACKS, AttackContext, AttackSpec, eval_mode, explorer_attacks
from busadv.evaluation.transfer import carry_perturbation

CLEAN = "none"
# A long computation says how far it got: called with (done, total) after each step.
StepProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class StripItem:
    epsilon: float
    image: np.ndarray  # uint8 [H, W]
    predicted: int
    confidence: float
    probabilities: np.ndarray


class PerturbationProbe:
    """Cached attack directions for one model and one [0, 1] grayscale image; safe to share between threads."""

    def __init__(self, model: nn.Module, image: torch.Tensor | np.ndarray, true_label: int | None = None,
                 noise_seed: int = 0, pgd_steps: int = 10) -> None:
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
        label = None if true_label is None else torch.tensor([true_label], device=self.device)
        # Without a known diagnosis (an uploaded image) attacks aim at the model's own prediction.
        self._context = AttackContext(model, self.x, label, seed=noise_seed, pgd_steps=pgd_steps)
        self._iterated: dict[tuple[str, float], torch.Tensor] = {}
        self._lock = threading.RLock()
        self._clean_probs: np.ndarray | None = None
        self._flips: dict[tuple[str, float], float | None] = {}

    @staticmethod
    def attacks() -> tuple[AttackSpec, ...]:
        return explorer_attacks()

    def perturbed(self, attack: str, eps: float) -> torch.Tensor:
        """The image under `attack` at `eps` ([1, 1, H, W] in [0, 1])."""
        if eps == 0 or attack == CLEAN:
            return self.x
        spec = ATTACKS.get(attack)
        with self._lock:
            if spec.single_step:
                self._context.direction(spec)  # filled once under the lock, then read by everyone
                return spec.perturb(self._context, eps)
            key = (spec.name, float(eps))
            if key not in self._iterated:
                self._iterated[key] = spec.perturb(self._context, eps)
            return self._iterated[key]

    def probabilities_many(self, attack: str, epsilons: Sequence[float]) -> np.ndarray:
        """[len(epsilons), classes] in one batched forward pass."""
        batch = torch.cat([self.perturbed(attack, e) for e in epsilons])
        with self._lock, eval_mode(self.model), torch.inference_mode():
            return torch.softmax(self.model(batch), dim=1).cpu().numpy()

    def probabilities(self, attack: str, eps: float) -> np.ndarray:
        if eps == 0 or attack == CLEAN:
            if self._clean_probs is None:
                self._clean_probs = self.probabilities_many(CLEAN, [0.0])[0]
            return self._clean_probs
        return self.probabilities_many(attack, [eps])[0]

    def probabilities_of(self, adversarial: torch.Tensor, source_clean: torch.Tensor) -> np.ndarray:
        """This model's probabilities on another model's perturbation of the same image (transfer).

        The perturbation is carried onto this model's own clean input as the transfer matrix carries it
        (busadv.evaluation.transfer), so it stays within the same epsilon at this model's size.
        """
        x = carry_perturbation(adversarial.detach().to(self.device).float(),
                               source_clean.detach().to(self.device).float(), self.x)
        with self._lock, eval_mode(self.model), torch.inference_mode():
            return torch.softmax(self.model(x), dim=1).cpu().numpy()[0]

    def smallest_flip(self, attack: str, max_eps: float = 0.5, progress: StepProgress | None = None) -> float | None:
        """The smallest k/255 (k = 1 .. up to max_eps, then max_eps itself) that changes the predicted class.

        Single-step attacks scan the whole grid in batched forward passes. Iterative attacks are searched
        by bisection over the grid (each probe is one attack), assuming a flip persists at larger epsilons;
        `progress` hears (attacks done, at most this many) after each attack.
        """
        known = (attack, float(max_eps))
        if known not in self._flips:
            found = self._search_flip(attack, max_eps, progress)
            with self._lock:
                self._flips[known] = found
        return self._flips[known]

    def _search_flip(self, attack: str, max_eps: float, progress: StepProgress | None) -> float | None:
        clean = int(self.probabilities(CLEAN, 0.0).argmax())
        steps = np.arange(1, int(np.floor(max_eps * 255 + 1e-9)) + 1) / 255.0
        grid = steps if len(steps) and abs(steps[-1] - max_eps) < 1e-9 else np.append(steps, max_eps)
        if ATTACKS.get(attack).single_step:
            for start in range(0, len(grid), 64):
                chunk = grid[start:start + 64]
                flipped = np.nonzero(self.probabilities_many(attack, chunk.tolist()).argmax(1) != clean)[0]
                if len(flipped):
                    return float(chunk[flipped[0]])
            return None

        bound = 1 + int(np.ceil(np.log2(len(grid))))  # the bisection's most attacks
        done = [0]

        def flips(i: int) -> bool:
            answer = int(self.probabilities(attack, float(grid[i])).argmax()) != clean
            done[0] += 1
            if progress is not None:
                progress(min(done[0], bound), bound)
            return answer

        if not flips(len(grid) - 1):
            return None
        low, high = -1, len(grid) - 1  # grid[high] flips; grid[low] (or clean) does not
        while high - low > 1:
            middle = (low + high) // 2
            if flips(middle):
                high = middle
            else:
                low = middle
        return float(grid[high])

    def strip(self, attack: str, epsilons: Sequence[float], progress: StepProgress | None = None) -> list[StripItem]:
        """The same image at several epsilons, each with its predicted class and confidence.

        A single-step attack is one backward pass (its direction, cached) and one batched forward pass over all
        epsilons: the explorer's slider computes every position this way when an image is chosen. An iterative
        attack runs once per epsilon; `progress` hears (epsilons done, all of them) after each.
        """
        if progress is not None and not (attack == CLEAN or ATTACKS.get(attack).single_step):
            for done, eps in enumerate(epsilons, start=1):
                self.perturbed(attack, eps)  # kept in the probe's cache for the batch below
                progress(done, len(epsilons))
        probs = self.probabilities_many(attack, epsilons)
        return [StripItem(epsilon=float(eps), image=to_uint8(self.perturbed(attack, eps)), predicted=int(p.argmax()),
                          confidence=float(p.max()), probabilities=p) for eps, p in zip(epsilons, probs, strict=True)]

    def sweep(self, attack: str, max_eps: float = 0.2, points: int = 81) -> tuple[list[float], np.ndarray]:
        """Class probabilities on a fine epsilon grid (every k/255 up to 16 included)."""
        grid = sorted(set(np.round(np.linspace(0, max_eps, points), 6).tolist()) | {k / 255 for k in range(17)})
        if not ATTACKS.get(attack).single_step:
            grid = sorted({k / 255 for k in range(0, 17, 2)} | {0.05, 0.1, max_eps})  # one attack per point
        probs = np.concatenate([self.probabilities_many(attack, grid[i:i + 64]) for i in range(0, len(grid), 64)])
        return grid, probs


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
