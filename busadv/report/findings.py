"""The seed study's findings, each judged from the data: holds, artefact (and which trap), or not seen.

Nothing here is typed in advance: every verdict and its evidence come from the result rows, so the same
code judges a rerun on other data, other seeds or another model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from busadv.attacks import format_epsilon
from busadv.results import GroupSummary, ResultRow, summarize

HOLDS, ARTEFACT, NOT_SEEN, MIXED = "holds", "artefact", "not seen", "mixed"
MARGIN = 0.05  # a difference in (balanced) accuracy worth a verdict: larger than seed noise on 156 images


@dataclass
class Finding:
    claim: str
    verdict: str
    evidence: list[str] = field(default_factory=list)
    trap: str = ""  # the trap that explains an artefact: collapse, label leaking, gradient masking, weak attack

    def text(self) -> str:
        trap = f" ({self.trap})" if self.trap else ""
        return f"{self.claim}: {self.verdict}{trap}. " + " ".join(self.evidence)


class Table:
    """Summaries of the report's rows, looked up by model and condition."""

    def __init__(self, rows: Sequence[ResultRow]) -> None:
        self.groups = summarize(rows)

    def find(self, arch: str, mode: str, train_eps: float, attack: str, eps: float,
             split_policy: str | None = None) -> GroupSummary | None:
        for g in self.groups:
            if (g.arch == arch and g.train_mode == mode and math.isclose(g.train_epsilon, train_eps, abs_tol=1e-9)
                    and g.attack == attack and math.isclose(g.test_epsilon, eps, abs_tol=1e-9)
                    and (split_policy is None or g.split_policy == split_policy)):
                return g
        return None

    def mean(self, group: GroupSummary | None, metric: str = "accuracy") -> float:
        return math.nan if group is None else group.stat(metric).mean


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0%}"


def standard_models_lose_accuracy(table: Table, arch: str, epsilons: Sequence[float],
                                  split: str | None = None) -> Finding:
    claim = f"FGSM lowers a standard {arch}'s accuracy"
    clean = table.find(arch, "standard", 0.0, "none", 0.0, split)
    if clean is None:
        return Finding(claim, NOT_SEEN, ["No standard model in these results."])
    evidence, drops, collapsed = [], [], []
    for eps in epsilons:
        attacked = table.find(arch, "standard", 0.0, "fgsm", eps, split)
        if attacked is None:
            continue
        drop = table.mean(clean) - table.mean(attacked)
        drops.append(drop)
        note = ""
        if attacked.collapsed_runs:
            collapsed.append(eps)
            note = (f" ({attacked.collapsed_runs} of {attacked.n_runs} runs answer one class for everything there: "
                    f"the accuracy is that class's share, {_pct(attacked.majority_rate)})")
        evidence.append(f"At ε={format_epsilon(eps)}: {_pct(table.mean(clean))} clean → {_pct(table.mean(attacked))} "
                        f"under FGSM (balanced accuracy {_pct(table.mean(clean, 'balanced_accuracy'))} → "
                        f"{_pct(table.mean(attacked, 'balanced_accuracy'))}){note}.")
    if not drops:
        return Finding(claim, NOT_SEEN, ["The standard model was not tested under FGSM."])
    if all(d > MARGIN for d in drops):
        return Finding(claim, HOLDS, evidence, "collapse explains the uneven drop" if collapsed else "")
    return Finding(claim, MIXED, evidence, "collapse" if collapsed else "")


def fgsm_training_helps(table: Table, arch: str, mode: str, epsilons: Sequence[float],
                        strong: Sequence[str] = ("pgd", "autoattack")) -> Finding:
    """Does training on FGSM images make a model robust, or only look so under FGSM?"""
    protocol = "online" if mode == "fgsm-study" else "offline"
    claim = f"Training {arch} on FGSM-perturbed images ({protocol}) raises accuracy on perturbed test images"
    evidence, verdicts, traps = [], [], []
    for eps in epsilons:
        trained = table.find(arch, mode, eps, "fgsm", eps)
        baseline = table.find(arch, "standard", 0.0, "fgsm", eps)
        clean = table.find(arch, mode, eps, "none", 0.0)
        if trained is None or baseline is None or clean is None:
            continue
        gain = table.mean(trained) - table.mean(baseline)
        line = (f"Trained and tested at ε={format_epsilon(eps)}: FGSM accuracy {_pct(table.mean(trained))} vs "
                f"{_pct(table.mean(baseline))} for the standard model")
        if gain <= MARGIN:
            verdicts.append(NOT_SEEN)
            evidence.append(line + ": no gain.")
            continue
        reasons = []
        collapsed = max(trained.collapsed_runs, clean.collapsed_runs)
        if collapsed:
            reasons.append(("collapse", f"{collapsed} of {trained.n_runs} runs answer one class for (almost) every "
                                        f"image, so accuracy is that class's share ({_pct(trained.majority_rate)})"))
        if table.mean(trained, "balanced_accuracy") <= 1 / 3 + MARGIN:
            reasons.append(("collapse", f"balanced accuracy under FGSM is "
                                        f"{_pct(table.mean(trained, 'balanced_accuracy'))}, chance is 33%"))
        if table.mean(trained) > table.mean(clean) + MARGIN:
            reasons.append(("label leaking", f"it scores higher under FGSM than on clean images "
                                             f"({_pct(table.mean(clean))})"))
        for attack in strong:
            hard = table.find(arch, mode, eps, attack, eps)
            hard_base = table.find(arch, "standard", 0.0, attack, eps)
            if hard is not None and hard_base is not None and (
                    table.mean(hard, "balanced_accuracy") <= table.mean(hard_base, "balanced_accuracy") + MARGIN):
                reasons.append(("weak attack / gradient masking",
                                f"under {attack.upper() if attack == 'pgd' else 'AutoAttack'} its balanced accuracy "
                                f"({_pct(table.mean(hard, 'balanced_accuracy'))}) is no better than the standard "
                                f"model's ({_pct(table.mean(hard_base, 'balanced_accuracy'))})"))
                break
        if reasons:
            verdicts.append(ARTEFACT)
            traps += [t for t, _ in reasons]
            evidence.append(line + "; but " + "; ".join(r for _, r in reasons) + ".")
        else:
            verdicts.append(HOLDS)
            evidence.append(line + ", and the gain survives PGD/AutoAttack and balanced accuracy.")
    if not verdicts:
        return Finding(claim, NOT_SEEN, ["Not tested."])
    verdict = verdicts[0] if len(set(verdicts)) == 1 else (ARTEFACT if ARTEFACT in verdicts else MIXED)
    return Finding(claim, verdict, evidence, ", ".join(dict.fromkeys(traps)))


def higher_under_attack_than_clean(table: Table, arch: str, mode: str, eps: float) -> Finding:
    claim = (f"At ε={format_epsilon(eps)}, the FGSM-trained {arch} scores higher on perturbed than on clean "
             f"images")
    clean = table.find(arch, mode, eps, "none", 0.0)
    attacked = table.find(arch, mode, eps, "fgsm", eps)
    if clean is None or attacked is None:
        return Finding(claim, NOT_SEEN, ["Not tested."])
    line = f"{_pct(table.mean(attacked))} under FGSM vs {_pct(table.mean(clean))} clean"
    if table.mean(attacked) <= table.mean(clean) + MARGIN / 2:
        return Finding(claim, NOT_SEEN, [line + "."])
    evidence = [line + "."]
    predicted = table.find(arch, mode, eps, "fgsm-pred", eps)
    pgd = table.find(arch, mode, eps, "pgd", eps)
    trap = "label leaking"
    if predicted is not None:
        evidence.append(f"FGSM on the model's own predictions (which cannot leak the label) gives "
                        f"{_pct(table.mean(predicted))}.")
    if pgd is not None:
        evidence.append(f"PGD gives {_pct(table.mean(pgd))} (balanced {_pct(table.mean(pgd, 'balanced_accuracy'))}).")
    if attacked.collapsed_runs or clean.collapsed_runs:
        trap += ", collapse"
        evidence.append(f"{max(attacked.collapsed_runs, clean.collapsed_runs)} of {clean.n_runs} runs answer one "
                        f"class for (almost) everything.")
    evidence.append("A real attack cannot make a model more accurate: the perturbation carries the label "
                    "(Kurakin et al. 2016).")
    return Finding(claim, ARTEFACT, evidence, trap)


def random_split_inflates(table: Table, arch: str) -> Finding:
    claim = f"A random image-level split (the study's) reports {arch}'s clean accuracy honestly"
    near = table.find(arch, "standard", 0.0, "none", 0.0, "near")
    random = table.find(arch, "standard", 0.0, "none", 0.0, "random")
    if near is None or random is None:
        return Finding(claim, NOT_SEEN, ["Both split policies are needed to judge this."])
    gap = table.mean(random) - table.mean(near)
    balanced_gap = table.mean(random, "balanced_accuracy") - table.mean(near, "balanced_accuracy")
    evidence = [f"Clean accuracy {_pct(table.mean(random))} with the random split vs {_pct(table.mean(near))} when "
                f"near-duplicates (the same scan with other calipers or crops) stay on one side "
                f"({gap:+.1%}; balanced accuracy {balanced_gap:+.1%})."]
    if gap > MARGIN / 2:
        return Finding(claim, ARTEFACT, evidence, "near-duplicates on both sides of the split")
    return Finding(claim, HOLDS, evidence + ["The difference is within seed noise here."])
