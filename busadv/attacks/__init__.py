"""Adversarial perturbations in [0, 1] pixel space, one file per attack family, behind one registry.

Adding an attack: a new file that calls `register_attack(AttackSpec(...))`, imported below.
"""

# isort: off
from busadv.attacks import fgsm as _fgsm  # noqa: F401 - importing an attack family registers it
from busadv.attacks import pgd as _pgd  # noqa: F401
from busadv.attacks import autoattack as _autoattack  # noqa: F401
from busadv.attacks import noise as _noise  # noqa: F401
from busadv.attacks import scanner as _scanner  # noqa: F401
# isort: on
from busadv.attacks.base import (
    ADVERSARIAL,
    ATTACKS,
    BASELINE,
    AttackContext,
    AttackSpec,
    apply_sign,
    attack_label,
    eval_mode,
    explorer_attacks,
    perturb,
    register_attack,
    strongest_attack,
)
from busadv.attacks.epsilon import (
    SMALL_EPSILONS,
    STRIP_EPSILONS,
    STUDY_EPSILONS,
    check_epsilon,
    format_epsilon,
    format_epsilon_list,
    parse_epsilon,
    parse_epsilon_list,
)
from busadv.attacks.fgsm import fgsm, fgsm_random_start, gradient_sign
from busadv.attacks.noise import noise_sign, random_sign_noise
from busadv.attacks.pgd import pgd

__all__ = [
    "ADVERSARIAL", "ATTACKS", "BASELINE", "SMALL_EPSILONS", "STRIP_EPSILONS", "STUDY_EPSILONS", "AttackContext",
    "AttackSpec", "apply_sign", "attack_label", "check_epsilon", "eval_mode", "explorer_attacks", "fgsm",
    "fgsm_random_start", "format_epsilon", "format_epsilon_list", "gradient_sign", "noise_sign", "parse_epsilon",
    "parse_epsilon_list", "perturb", "pgd", "random_sign_noise", "register_attack", "strongest_attack",
]
