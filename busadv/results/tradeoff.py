"""The study's own question, answered from result rows: which training epsilon buys how much robustness, at
what clean cost, and does adversarial training at a small epsilon raise clean accuracy?

Every comparison is paired: a training epsilon is compared with standard training seed by seed (the same
seed means the same split and the same initialisation), so the spread between splits cancels out. Intervals
are 95% t-intervals of the paired differences; the p-value is the paired t-test's (scipy). With one seed
there is no interval, and the answer says so rather than guess.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from busadv.attacks import attack_label, format_epsilon
from busadv.results.row import RECIPE_FIELDS, ResultRow
from busadv.training.config import MODE_SETTINGS

CLEAN_TOLERANCE = 0.03  # "within 0.03 of standard": the rule that picks the best training epsilon
# Settings that may differ along one frontier: the mode (standard at 0), its epsilon and its mode-defaulted settings.
ALONG = {"train_mode", "train_epsilon", "train_pgd_steps", *MODE_SETTINGS} - {"class_balance"}
FAMILY_FIELDS = tuple(f for f in RECIPE_FIELDS if f not in ALONG)
CONFIDENCE = 0.95


@dataclass
class PairedDifference:
    """A training epsilon minus standard training, over the seeds both have."""

    n: int
    mean: float
    low: float = math.nan
    high: float = math.nan
    p_value: float = math.nan

    def text(self) -> str:
        if not self.n:
            return "no seeds in common"
        if self.n < 2:
            return f"{self.mean:+.3f} (one seed: no interval)"
        p_value = "p < 0.001" if self.p_value < 0.001 else f"p = {self.p_value:.2g}"
        return (f"{self.mean:+.3f} (95% CI {self.low:+.3f} to {self.high:+.3f}, paired t-test {p_value}, "
                f"{self.n} seeds)")

    def short(self) -> str:
        """For a table cell: '-0.036 [-0.105, +0.033] p=0.22'."""
        if self.n < 2:
            return self.text()
        p_value = "p<0.001" if self.p_value < 0.001 else f"p={self.p_value:.2g}"
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}] {p_value}"

    @property
    def above_zero(self) -> bool:
        return self.n >= 2 and self.low > 0

    @property
    def below_zero(self) -> bool:
        return self.n >= 2 and self.high < 0


def paired_difference(values: dict[int, float], reference: dict[int, float]) -> PairedDifference:
    seeds = sorted(s for s in values if s in reference and math.isfinite(values[s]) and math.isfinite(reference[s]))
    diffs = [values[s] - reference[s] for s in seeds]
    if not diffs:
        return PairedDifference(0, math.nan)
    mean = sum(diffs) / len(diffs)
    if len(diffs) < 2:
        return PairedDifference(1, mean)
    from scipy import stats

    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1))
    if sd < 1e-12:  # every seed moved by the same amount (rounding apart): the t-test has nothing to estimate
        sd = 0.0
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(diffs) - 1)) * sd / math.sqrt(len(diffs))
    p_value = 1.0 if sd == 0 and mean == 0 else (0.0 if sd == 0 else
                                                 float(stats.ttest_rel(
                                                     [values[s] for s in seeds], [reference[s] for s in seeds]).pvalue))
    return PairedDifference(len(diffs), mean, mean - half, mean + half, p_value)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else 0.0
    return mean, std


@dataclass
class EpsilonPoint:
    """One training epsilon (0 = standard training) of a frontier: per-seed measures and the paired comparison."""

    train_epsilon: float
    clean: dict[int, float]                 # seed -> clean balanced accuracy
    robust: dict[int, float]                # seed -> balanced accuracy under the attack
    robust_sensitivity: dict[int, float]    # seed -> malignant sensitivity under the attack
    collapsed_seeds: list[int] = field(default_factory=list)
    clean_vs_standard: PairedDifference | None = None
    robust_vs_standard: PairedDifference | None = None

    @property
    def seeds(self) -> list[int]:
        return sorted(set(self.clean) & set(self.robust))

    def stat(self, which: str) -> tuple[float, float]:
        return mean_std(list(getattr(self, which).values()))

    @property
    def label(self) -> str:
        return "standard (0)" if self.train_epsilon == 0 else format_epsilon(self.train_epsilon)


@dataclass
class TradeoffAnswer:
    arch: str
    mode: str
    attack: str
    epsilon: float
    points: list[EpsilonPoint]
    best: EpsilonPoint | None
    rule: str
    best_text: str
    clean_text: str
    recipe: dict[str, Any] = field(default_factory=dict)

    @property
    def condition(self) -> str:
        return f"{attack_label(self.attack)} at ε = {format_epsilon(self.epsilon)}"

    def table(self) -> list[dict[str, str]]:
        """One line per training epsilon, as plain text cells."""
        out = []
        for p in self.points:
            clean, robust, sens = p.stat("clean"), p.stat("robust"), p.stat("robust_sensitivity")
            out.append({
                "training ε": p.label, "seeds": str(len(p.seeds)),
                "clean BA": f"{clean[0]:.3f} ± {clean[1]:.3f}",
                "robust BA": f"{robust[0]:.3f} ± {robust[1]:.3f}",
                "robust sens.": f"{sens[0]:.2f} ± {sens[1]:.2f}",
                "Δ clean, 95% CI": p.clean_vs_standard.short() if p.clean_vs_standard else "-",
                "Δ robust, 95% CI": p.robust_vs_standard.short() if p.robust_vs_standard else "-",
                "collapsed": ", ".join(f"seed {s}" for s in p.collapsed_seeds) or "none",
            })
        return out


def _family(row: ResultRow) -> tuple[Any, ...]:
    """Runs of one frontier; where other seeds chose each training ε's epoch count (and values of settings, among
    the same candidates), those vary along it."""
    chosen = chosen_lever_names(row.levers_chosen_among) if row.epochs_chosen_on else set()
    return tuple(f"chosen on seeds {row.epochs_chosen_on}" if f == "epochs" and row.epochs_chosen_on
                 else f"chosen among {row.levers_chosen_among}" if f in chosen
                 else getattr(row, f) for f in FAMILY_FIELDS)


def chosen_lever_names(text: str) -> set[str]:
    """The settings a levers_chosen_among record names ('critical_weight 1, 2; clean_mix 0.3, 0.5')."""
    return {part.strip().split(" ", 1)[0] for part in str(text).split(";") if part.strip()}


def _families(rows: Sequence[ResultRow]) -> dict[tuple[Any, ...], list[ResultRow]]:
    families: dict[tuple[Any, ...], list[ResultRow]] = defaultdict(list)
    for row in rows:
        families[_family(row)].append(row)
    return families


def epsilon_tradeoffs(rows: Sequence[ResultRow], attack: str = "autoattack",
                      epsilon: float = 4 / 255) -> list[TradeoffAnswer]:
    """Every frontier the rows hold: standard training plus one adversarial mode at two or more training epsilons
    (or one epsilon beside standard), with the same everything else; the fullest first."""
    answers = []
    for members in _families(rows).values():
        standard = [r for r in members if r.train_mode == "standard"]
        if not standard:
            continue
        for mode in sorted({r.train_mode for r in members} - {"standard"}):
            chosen = standard + [r for r in members if r.train_mode == mode]
            answer = _answer(chosen, mode, attack, epsilon)
            if answer is not None:
                answers.append(answer)
    return sorted(answers, key=lambda a: (-len(a.points), -sum(len(p.seeds) for p in a.points)))


def unpaired_runs(rows: Sequence[ResultRow], attack: str = "autoattack", epsilon: float = 4 / 255) -> list[str]:
    """Adversarial runs tested under the attack that no frontier holds, because no standard training with their
    recipe is among the rows: one line each, naming where they differ from the nearest frontier's recipe. Without
    this, a lever compared across two files (its adversarial runs only) would vanish from the answer unsaid."""
    families = _families(rows)
    anchored = [family for family, members in families.items() if any(r.train_mode == "standard" for r in members)]
    lines = []
    for family, members in families.items():
        if family in anchored:
            continue
        tested = [r for r in members if r.train_mode != "standard" and r.attack == attack
                  and math.isclose(r.test_epsilon, epsilon, abs_tol=1e-6)]
        if not tested:
            continue
        modes = ", ".join(sorted({r.train_mode for r in tested}))
        epsilons = ", ".join(format_epsilon(e) for e in sorted({r.train_epsilon for r in tested}))
        line = (f"{tested[0].arch} {modes} at training ε {epsilons} ({len({r.seed for r in tested})} seeds) is left "
                "out: no standard training with its recipe is among these rows")
        if anchored:
            nearest = min(anchored, key=lambda other: sum(a != b for a, b in zip(family, other, strict=True)))
            differs = [f"{name} {str(mine)[:30]} (the frontier's: {str(theirs)[:30]})"
                       for name, mine, theirs in zip(FAMILY_FIELDS, family, nearest, strict=True) if mine != theirs]
            line += f"; it differs from the nearest frontier in {'; '.join(differs)}"
        lines.append(line + ". Train standard runs with the same settings to see it on a frontier.")
    return lines


def _answer(rows: Sequence[ResultRow], mode: str, attack: str, epsilon: float) -> TradeoffAnswer | None:
    by_eps: dict[float, dict[str, dict[int, ResultRow]]] = defaultdict(lambda: defaultdict(dict))
    exact: dict[float, float] = {}
    for row in rows:
        eps = 0.0 if row.train_mode == "standard" else round(float(row.train_epsilon), 6)
        exact.setdefault(eps, 0.0 if row.train_mode == "standard" else float(row.train_epsilon))
        if row.attack == "none":
            by_eps[eps]["clean"][row.seed] = row
        elif row.attack == attack and math.isclose(row.test_epsilon, epsilon, rel_tol=1e-6, abs_tol=1e-9):
            by_eps[eps]["robust"][row.seed] = row
    points = []
    for eps in sorted(by_eps):
        clean, robust = by_eps[eps]["clean"], by_eps[eps]["robust"]
        seeds = sorted(set(clean) & set(robust))
        if not seeds:
            continue
        points.append(EpsilonPoint(
            exact[eps], {s: clean[s].balanced_accuracy for s in seeds}, {s: robust[s].balanced_accuracy for s in seeds},
            {s: robust[s].malignant_sensitivity for s in seeds},
            collapsed_seeds=[s for s in seeds if clean[s].collapsed or robust[s].collapsed]))
    if len(points) < 2 or points[0].train_epsilon != 0:
        return None
    reference = points[0]
    for p in points[1:]:
        p.clean_vs_standard = paired_difference(p.clean, reference.clean)
        p.robust_vs_standard = paired_difference(p.robust, reference.robust)
    sample = rows[0]
    return _judge(points, mode, attack, epsilon, sample)


def _judge(points: list[EpsilonPoint], mode: str, attack: str, epsilon: float, sample: ResultRow) -> TradeoffAnswer:
    condition = f"{attack_label(attack)} at ε = {format_epsilon(epsilon)}"
    rule = (f"the training ε with the highest mean balanced accuracy under {condition} among those whose clean "
            f"balanced accuracy is on average within {CLEAN_TOLERANCE} of standard training (paired over seeds) and "
            f"with no collapsed run")
    adversarial = points[1:]
    eligible = [p for p in adversarial if p.clean_vs_standard is not None and p.clean_vs_standard.n
                and p.clean_vs_standard.mean >= -CLEAN_TOLERANCE and not p.collapsed_seeds]
    best = max(eligible, key=lambda p: p.stat("robust")[0]) if eligible else None
    if best is not None:
        assert best.robust_vs_standard is not None and best.clean_vs_standard is not None
        best_text = (f"Best training ε by the rule: {best.label}. Under {condition} it scores "
                     f"{best.stat('robust')[0]:.3f} balanced accuracy, {best.robust_vs_standard.text()} against "
                     f"standard training; clean it changes by {best.clean_vs_standard.text()}.")
    else:
        strongest = max(adversarial, key=lambda p: p.stat("robust")[0])
        cost = strongest.clean_vs_standard.text() if strongest.clean_vs_standard else "-"
        best_text = (f"No training ε meets the rule: each costs more than {CLEAN_TOLERANCE} clean balanced accuracy "
                     f"or has a collapsed run. The most robust, {strongest.label}, scores "
                     f"{strongest.stat('robust')[0]:.3f} under {condition} at a clean cost of {cost}.")
    smallest = adversarial[0]
    diff = smallest.clean_vs_standard
    if diff is None or not diff.n:
        clean_text = "Clean accuracy: no seeds in common with standard training."
    elif diff.above_zero:
        clean_text = (f"Adversarial training at the smallest ε ({smallest.label}) raises clean balanced accuracy: "
                      f"{diff.text()}.")
    elif diff.below_zero:
        clean_text = (f"Adversarial training at the smallest ε ({smallest.label}) lowers clean balanced accuracy: "
                      f"{diff.text()}. The study's hope is not borne out here.")
    else:
        clean_text = (f"Adversarial training at the smallest ε ({smallest.label}) does not measurably change clean "
                      f"balanced accuracy: {diff.text()}; the interval includes no change.")
    recipe = dict(zip(FAMILY_FIELDS, _family(sample), strict=True))
    return TradeoffAnswer(sample.arch, mode, attack, epsilon, points, best, rule, best_text, clean_text, recipe)


__all__ = ["CLEAN_TOLERANCE", "EpsilonPoint", "PairedDifference", "TradeoffAnswer", "epsilon_tradeoffs",
           "paired_difference", "unpaired_runs"]
