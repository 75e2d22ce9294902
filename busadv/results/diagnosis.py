"""The traps of adversarial evaluation, spotted run by run and told in plain language.

Per run, never on a group mean: a mean over five seeds can look healthy while two of them answer one
class for everything. Each diagnosis says how many runs of a recipe show the problem and which seeds.

- collapse: one class for >= 90% of the images (clean or attacked): accuracy is that class's share.
- label leaking: FGSM-trained on true labels and more accurate under FGSM than clean (Kurakin et al. 2016).
- gradient masking: a stronger attack weaker than a weaker one (PGD above FGSM, AutoAttack above PGD),
  accuracy that does not fall as epsilon grows, or random noise hurting as much as FGSM.
- catastrophic overfitting: watch PGD accuracy collapsing between epochs while FGSM holds (Wong et al. 2020),
  or, on the test set, a model trained on one-step perturbations that resists FGSM far better than PGD
  at an epsilon up to its training epsilon.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from busadv.attacks import ADVERSARIAL, ATTACKS, attack_label, format_epsilon
from busadv.results.row import ResultRow
from busadv.training.modes import MODES

COLLAPSE = "collapse"
LABEL_LEAKING = "label_leaking"
MASKING = "gradient_masking"
OVERFITTING = "catastrophic_overfitting"
KINDS: dict[str, str] = {
    COLLAPSE: "Answers one class for (almost) everything",
    LABEL_LEAKING: "Label leaking",
    MASKING: "Gradient masking",
    OVERFITTING: "Catastrophic overfitting",
}
LARGE_EPSILON = 0.1
FGSM_PGD_GAP = 0.15  # balanced accuracy; seed-to-seed spread of a healthy FGSM-trained SimpleCNN's gap is ~0.05


@dataclass(frozen=True)
class Diagnosis:
    kind: str
    model: str                 # the recipe in words
    recipe: tuple[Any, ...]
    runs: tuple[str, ...]      # the runs that show it
    seeds: tuple[int, ...]
    n_runs: int                # runs of this recipe in the rows
    message: str

    @property
    def title(self) -> str:
        return KINDS[self.kind]

    def text(self) -> str:
        return f"{self.title}: {self.message}"


def recipe_text(arch: str, mode: str, epsilon: float, adv_labels: str | None) -> str:
    """'simplecnn, FGSM-trained at ε=0.031 (8/255), true labels'."""
    if not (mode in MODES and MODES.get(mode).adversarial):
        return f"{arch}, {mode} training"
    labels = f", {adv_labels} labels" if adv_labels else ""
    return f"{arch}, {mode.upper()}-trained at ε={format_epsilon(epsilon)}{labels}"


def model_name(row: ResultRow) -> str:
    return recipe_text(row.arch, row.train_mode, row.train_epsilon, row.adv_labels)


def _condition(attack: str, eps: float, severity: int | None = None) -> str:
    if attack == "none":
        return "the clean test set"
    if severity is not None:  # a scanner corruption measured at a severity level, not at a chosen size
        return f"{attack_label(attack)} at severity {severity}"
    return f"{attack_label(attack)} at ε={format_epsilon(eps)}"


def _margin(row: ResultRow) -> float:
    """A difference in accuracy worth flagging: 2 points and at least 1.5 images."""
    return max(0.02, 1.5 / max(row.n, 1))


def _strength(attack: str) -> int | None:
    if attack not in ATTACKS:
        return None
    spec = ATTACKS.get(attack)
    return spec.strength if spec.family == ADVERSARIAL else None


def _per_run(rows: Sequence[ResultRow]) -> dict[str, dict[tuple[str, float], ResultRow]]:
    runs: dict[str, dict[tuple[str, float], ResultRow]] = defaultdict(dict)
    for row in rows:
        runs[row.run][(row.attack, round(row.test_epsilon, 9))] = row
    return runs


def run_findings(conditions: dict[tuple[str, float], ResultRow]) -> list[tuple[str, str]]:
    """(kind, detail) for each trap one run shows; the details name conditions and numbers."""
    found: list[tuple[str, str]] = []
    clean = conditions.get(("none", 0.0))
    for (attack, eps), row in sorted(conditions.items()):
        if row.collapsed:
            found.append((COLLAPSE, f"'{row.dominant_class}' for {row.dominant_share:.0%} of images on "
                                    f"{_condition(attack, eps, row.severity)}"))
    any_row = next(iter(conditions.values()))
    if any_row.overfit_epoch is not None:
        found.append((OVERFITTING, f"watch PGD accuracy collapsed at epoch {any_row.overfit_epoch}"))
    if clean is None:
        return found
    mode = MODES.get(any_row.train_mode) if any_row.train_mode in MODES else None
    adversarial_training = mode is not None and mode.adversarial
    single_step = mode is not None and mode.single_step
    by_eps: dict[float, dict[str, ResultRow]] = defaultdict(dict)
    for (attack, eps), row in conditions.items():
        if attack != "none":
            by_eps[eps][attack] = row
    for eps, attacks in sorted(by_eps.items()):
        fgsm = attacks.get("fgsm")
        if fgsm is not None and not fgsm.collapsed and fgsm.accuracy > clean.accuracy + _margin(clean):
            if adversarial_training and any_row.adv_labels == "true":
                found.append((LABEL_LEAKING, f"FGSM at ε={format_epsilon(eps)} {fgsm.accuracy:.2f} > clean "
                                             f"{clean.accuracy:.2f}"))
            else:
                found.append((MASKING, f"FGSM at ε={format_epsilon(eps)} {fgsm.accuracy:.2f} > clean "
                                       f"{clean.accuracy:.2f}"))
        ranked = sorted(((s, a, r) for a, r in attacks.items() if (s := _strength(a)) is not None),
                        key=lambda t: t[0])
        for i, (weak_s, weak, weak_row) in enumerate(ranked):
            for strong_s, strong, strong_row in ranked[i + 1:]:
                if strong_s > weak_s and strong_row.accuracy > weak_row.accuracy + _margin(weak_row):
                    found.append((MASKING, f"{attack_label(strong)} {strong_row.accuracy:.2f} above "
                                           f"{attack_label(weak)} {weak_row.accuracy:.2f} at ε={format_epsilon(eps)}"))
        pgd = attacks.get("pgd")
        if (single_step and fgsm is not None and pgd is not None and not fgsm.collapsed and not pgd.collapsed
                and eps <= any_row.train_epsilon + 1e-9  # beyond it one big step overshoots: a gap is no symptom
                and fgsm.balanced_accuracy - pgd.balanced_accuracy >= FGSM_PGD_GAP):
            found.append((OVERFITTING, f"at ε={format_epsilon(eps)} FGSM leaves balanced accuracy "
                                       f"{fgsm.balanced_accuracy:.2f}, PGD only {pgd.balanced_accuracy:.2f}: "
                                       f"it resists the one-step attack it learned from, and little else"))
        noise = attacks.get("noise")
        if (fgsm is not None and noise is not None and clean.accuracy - noise.accuracy >= _margin(clean)
                and fgsm.accuracy >= noise.accuracy - _margin(clean) / 2):
            found.append((MASKING, f"random noise hurts as much as FGSM at ε={format_epsilon(eps)} "
                                   f"({noise.accuracy:.2f} vs {fgsm.accuracy:.2f})"))
    per_attack: dict[str, list[ResultRow]] = defaultdict(list)
    for (attack, _eps), row in sorted(conditions.items()):
        if attack != "none" and _strength(attack) is not None and not row.collapsed:
            per_attack[attack].append(row)
    for attack, series in per_attack.items():
        if len(series) < 2:
            continue
        low, high = series[0], series[-1]
        if high.accuracy > low.accuracy + _margin(low):
            found.append((MASKING, f"{attack_label(attack)} accuracy rises from {low.accuracy:.2f} at "
                                   f"ε={format_epsilon(low.test_epsilon)} to {high.accuracy:.2f} at "
                                   f"ε={format_epsilon(high.test_epsilon)}"))
        elif high.test_epsilon >= LARGE_EPSILON and high.balanced_accuracy > 0.5:
            found.append((MASKING, f"{attack_label(attack)} at ε={format_epsilon(high.test_epsilon)} still leaves "
                                   f"balanced accuracy {high.balanced_accuracy:.2f}; a real attack that large "
                                   f"brings it to chance"))
    return found


ADVICE: dict[str, str] = {
    COLLAPSE: "its accuracy there is that class's share of the test images, not robustness or skill.",
    LABEL_LEAKING: "the model reads the label from the perturbation. Train FGSM on predicted labels and trust PGD.",
    MASKING: "the attack's gradients are uninformative, so its figures overstate robustness; trust the "
             "strongest attack.",
    OVERFITTING: "FGSM training stopped making the model robust; use a random start with a smaller step, "
                 "PGD training or fewer epochs.",
}


def diagnose(rows: Sequence[ResultRow]) -> list[Diagnosis]:
    """Every trap found, one Diagnosis per (recipe, kind), counting the runs that show it."""
    runs = _per_run(rows)
    by_recipe: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for run, conditions in runs.items():
        by_recipe[next(iter(conditions.values())).recipe()].append(run)
    out: list[Diagnosis] = []
    for recipe, members in by_recipe.items():
        findings: dict[str, dict[str, list[str]]] = defaultdict(dict)
        for run in members:
            for kind, detail in run_findings(runs[run]):
                findings[kind].setdefault(run, []).append(detail)
        first = next(iter(runs[members[0]].values()))
        for kind in KINDS:
            if kind not in findings:
                continue
            affected = findings[kind]
            seeds = tuple(next(iter(runs[r].values())).seed for r in affected)
            example = "; ".join(dict.fromkeys(d for details in affected.values() for d in details[:3]))
            seed_text = ", ".join(str(s) for s in seeds)
            message = (f"{model_name(first)}: {len(affected)} of {len(members)} run(s) (seed {seed_text}): "
                       f"{_shorten(example)}. {ADVICE[kind][0].upper()}{ADVICE[kind][1:]}")
            out.append(Diagnosis(kind=kind, model=model_name(first), recipe=recipe, runs=tuple(affected),
                                 seeds=seeds, n_runs=len(members), message=message))
    return out


def _shorten(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
