"""AutoAttack (Croce & Hein 2020) from the Adversarial Robustness Toolbox: the final word on robustness.

An ensemble of parameter-free attacks, each run on the images the previous ones failed to flip: APGD with
cross-entropy, APGD with the targeted DLR loss against each other class (APGD-T), a minimal-norm attack and
the gradient-free Square attack, which sees through masked gradients. The attacks are ART's; busadv only
chains them (ART's own AutoAttack class would also run Square and DeepFool once per target class). ART 1.20.1
has no FAB, so its DeepFool (also a minimal-norm boundary attack) takes FAB's place. The budget is reduced
from the paper's (1 restart instead of 5, 1,000
Square queries instead of 5,000) so that a CPU evaluates a test set in minutes; BUDGET says so everywhere.
Why ART and not a copy: attacks are easy to get subtly wrong, and a maintained library is checked by many.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import numpy as np
import torch

from busadv.attacks.base import AttackContext, AttackSpec, register_attack

BUDGET = "APGD-CE and APGD-T 100 iterations, 1 restart; DeepFool 50 iterations; Square 1,000 queries"


@contextlib.contextmanager
def _seeded_numpy(seed: int) -> Iterator[None]:
    """ART draws its random starts from numpy's global generator: seed it for this call only."""
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


def _quiet_art() -> None:
    for name in ("art", "art.attacks", "art.estimators"):
        logging.getLogger(name).setLevel(logging.ERROR)


def autoattack(context: AttackContext, eps: float) -> torch.Tensor:
    """The perturbed batch: for each image, the first ensemble member that flips it (else the clean image).

    Each member runs only on the images every earlier member failed to flip, as in AutoAttack; results are
    projected to the eps ball (DeepFool is a minimal-norm attack and may step outside it) and kept only if
    they still flip the prediction.
    """
    from art.attacks.evasion import AutoProjectedGradientDescent, DeepFool, SquareAttack
    from art.estimators.classification import PyTorchClassifier

    _quiet_art()
    x = context.x.detach()
    classes = int(context.clean_logits.shape[1])
    classifier = PyTorchClassifier(
        model=context.model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=classes,
        clip_values=(0.0, 1.0), device_type="gpu" if x.is_cuda else "cpu")
    images = x.cpu().numpy().astype(np.float32)
    labels = context.labels.detach().cpu().numpy()
    adversarial = images.copy()
    unbroken = classifier.predict(images).argmax(1) == labels
    batch = max(1, len(images))

    def apgd(loss: str, targeted: bool = False) -> AutoProjectedGradientDescent:
        return AutoProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=2 * eps / 10, max_iter=100,
                                            nb_random_init=1, batch_size=batch, loss_type=loss, targeted=targeted,
                                            verbose=False)

    def attempt(attack: object, target: np.ndarray | None = None) -> None:
        index = np.flatnonzero(unbroken)
        if not len(index):
            return
        goal = labels[index] if target is None else target[index]
        found = attack.generate(images[index], y=goal)  # type: ignore[attr-defined]
        found = np.clip(np.clip(found, images[index] - eps, images[index] + eps), 0.0, 1.0).astype(np.float32)
        flipped = classifier.predict(found).argmax(1) != labels[index]
        adversarial[index[flipped]] = found[flipped]
        unbroken[index[flipped]] = False

    with _seeded_numpy(context.seed * 100003 + context.batch), torch.enable_grad():
        attempt(apgd("cross_entropy"))
        if classes > 2:  # APGD-T: the targeted DLR loss against each other class in turn
            for shift in range(1, classes):
                attempt(apgd("difference_logits_ratio", targeted=True), (labels + shift) % classes)
        attempt(DeepFool(classifier, max_iter=50, epsilon=1e-3, nb_grads=classes, batch_size=batch, verbose=False))
        attempt(SquareAttack(classifier, norm=np.inf, eps=eps, max_iter=1000, p_init=0.8, nb_restarts=1,
                             batch_size=batch, verbose=False))
    result = torch.from_numpy(adversarial).to(x.device, x.dtype)
    return torch.min(torch.max(result, x - eps), x + eps).clamp(0.0, 1.0)


AUTOATTACK = register_attack(AttackSpec(
    name="autoattack", label="AutoAttack",
    explanation="AutoAttack (ART): an ensemble of strong attacks, including one that needs no gradients; "
                "the most trustworthy test, and the slowest",
    run=autoattack, strength=30, in_explorer=False, slow=True))
