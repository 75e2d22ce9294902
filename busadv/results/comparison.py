"""Two recipes compared seed by seed: does a change to training (a lever, a selection rule, a mode) help?

Why paired: the same seed means the same split and initialisation, and on BUSI the spread between splits
(about 0.05 balanced accuracy) is larger than most levers' effect; the difference taken seed by seed cancels
it. Runs are matched by model, training mode and training epsilon; a seed counts only where both recipes were
tested on the same data (the rows' data fingerprint) under the chosen attack and clean. Each file may hold
several recipes (a grid's rows): every candidate recipe is compared with every reference recipe of the same
model, mode and training epsilon.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from busadv.attacks import attack_label, format_epsilon
from busadv.results.row import RECIPE_FIELDS, ResultRow
from busadv.results.tradeoff import PairedDifference, mean_std, paired_difference

ARM_FIELDS = ("arch", "train_mode", "train_epsilon", "data_fingerprint")  # what two compared runs share
# Per seed, the measures compared: (label, attacked, ResultRow attribute).
MEASURES: tuple[tuple[str, bool, str], ...] = (
    ("clean balanced accuracy", False, "balanced_accuracy"),
    ("balanced accuracy under {condition}", True, "balanced_accuracy"),
    ("malignant sensitivity under {condition}", True, "malignant_sensitivity"),
    ("clean malignant sensitivity", False, "malignant_sensitivity"),
)


@dataclass(frozen=True)
class MeasureComparison:
    measure: str
    candidate: tuple[float, float]  # mean, standard deviation over the paired seeds
    reference: tuple[float, float]
    difference: PairedDifference    # candidate minus reference, seed by seed


@dataclass(frozen=True)
class RecipeComparison:
    arm: str                       # 'simplecnn, fgsm training at ε 0.0314 (8/255)'
    differs: tuple[str, ...]       # 'select best-sensitive (the reference's: best-both)'
    seeds: tuple[int, ...]         # the seeds both were tested on
    unpaired: tuple[int, ...]      # seeds only one of them has (left out)
    measures: tuple[MeasureComparison, ...]
    collapsed: tuple[str, ...]     # 'candidate seed 3 (clean)': runs that answer one class for almost everything
    chosen: tuple[str, ...] = ()   # 'reference seed 2: 2 runs of this recipe; the first listed is used'

    def lines(self) -> list[str]:
        """The comparison as plain text: a header, the settings that differ, one line per measure."""
        out = [f"{self.arm}: candidate minus reference over {len(self.seeds)} paired seeds "
               f"({', '.join(map(str, self.seeds)) or 'none'})"]
        out.append("  differs in: " + ("; ".join(self.differs) if self.differs else "nothing recorded (a rerun)"))
        if self.unpaired:
            out.append(f"  left out: seeds {', '.join(map(str, self.unpaired))} (tested in one file only)")
        width = max(len(m.measure) for m in self.measures) if self.measures else 0
        for m in self.measures:
            out.append(f"  {m.measure.ljust(width)}  {mean_std_text(m.candidate):>13}  vs  "
                       f"{mean_std_text(m.reference):>13}  "
                       f"Δ {m.difference.short()}")
        out.append("  collapsed: " + (", ".join(self.collapsed) if self.collapsed else "none"))
        out += [f"  note: {note}" for note in self.chosen]
        return out


def mean_std_text(value: tuple[float, float]) -> str:
    """'0.707 ± 0.059', or 'n/a' where no seed has the measure (no malignant image among the test images)."""
    return "n/a" if math.isnan(value[0]) else f"{value[0]:.3f} ± {value[1]:.3f}"


def _by_recipe(rows: Sequence[ResultRow]) -> dict[tuple[object, ...], list[ResultRow]]:
    groups: dict[tuple[object, ...], list[ResultRow]] = defaultdict(list)
    for row in rows:
        groups[row.recipe()].append(row)
    return groups


def _run_of(row: ResultRow) -> str:
    return row.checkpoint or row.run


def _tested_with_notes(rows: Sequence[ResultRow], attack: str, epsilon: float
                       ) -> tuple[dict[int, tuple[ResultRow, ResultRow]], dict[int, list[str]]]:
    """seed -> (its clean row, its row under the attack at epsilon), both from one run, for seeds tested both ways;
    and a note for each seed where a choice had to be made.

    A seed may hold several runs of one recipe (a rerun) or one run tested with several PGD step counts: the
    first run listed (the store lists the newest first) and its strongest attack (most steps) are used, and
    said so, rather than whichever row happens to come last.
    """
    out: dict[int, tuple[ResultRow, ResultRow]] = {}
    notes: dict[int, list[str]] = defaultdict(list)
    for seed in sorted({r.seed for r in rows}):
        mine = [r for r in rows if r.seed == seed]
        runs = list(dict.fromkeys(_run_of(r) for r in mine))
        tested = [run for run in runs if any(r.attack == "none" for r in mine if _run_of(r) == run)
                  and any(_under(r, attack, epsilon) for r in mine if _run_of(r) == run)]
        if not tested:
            continue
        run = tested[0]
        if len(tested) > 1:
            notes[seed].append(f"seed {seed}: {len(tested)} runs of this recipe; the first listed is used")
        clean = next(r for r in mine if _run_of(r) == run and r.attack == "none")
        attacked = [r for r in mine if _run_of(r) == run and _under(r, attack, epsilon)]
        strongest = max(attacked, key=lambda r: r.eval_pgd_steps or 0)
        steps = sorted({r.eval_pgd_steps or 0 for r in attacked})
        if len(steps) > 1:
            notes[seed].append(f"seed {seed}: tested with {', '.join(map(str, steps))} attack steps; the strongest "
                         f"({strongest.eval_pgd_steps}) is used")
        out[seed] = (clean, strongest)
    return out, notes


def _under(row: ResultRow, attack: str, epsilon: float) -> bool:
    return row.attack == attack and math.isclose(row.test_epsilon, epsilon, abs_tol=1e-6)


def _tested(rows: Sequence[ResultRow], attack: str, epsilon: float) -> dict[int, tuple[ResultRow, ResultRow]]:
    """seed -> (its clean row, its row under the attack at epsilon), for seeds tested both ways."""
    return _tested_with_notes(rows, attack, epsilon)[0]


def tested_recipes(rows: Sequence[ResultRow], attack: str, epsilon: float) -> dict[tuple[object, ...], list[ResultRow]]:
    """Each recipe among the rows (RECIPE_FIELDS) with a seed tested both clean and under `attack` at `epsilon`."""
    return {recipe: members for recipe, members in _by_recipe(rows).items() if _tested(members, attack, epsilon)}


def same_arm(recipe: tuple[object, ...], other: tuple[object, ...]) -> bool:
    """Whether runs of the two recipes may be paired: the same model, training mode, training ε and data."""
    return all(recipe[RECIPE_FIELDS.index(f)] == other[RECIPE_FIELDS.index(f)] for f in ARM_FIELDS)


def _differs(candidate: tuple[object, ...], reference: tuple[object, ...]) -> tuple[str, ...]:
    """Each recorded setting that differs; an epoch count other seeds chose on validation says so."""
    chosen_on = RECIPE_FIELDS.index("epochs_chosen_on")

    def value(recipe: tuple[object, ...], name: str, text: object) -> str:
        shown = str(text)[:30] if text != "" else "not recorded"
        if name == "epochs" and recipe[chosen_on]:
            shown += f", chosen on seeds {str(recipe[chosen_on])[:30]}"
        return shown

    return tuple(f"{name} {value(candidate, name, mine)} (the reference's: {value(reference, name, theirs)})"
                 for name, mine, theirs in zip(RECIPE_FIELDS, candidate, reference, strict=True)
                 if name not in ARM_FIELDS and mine != theirs)


def compare_recipes(candidate: Sequence[ResultRow], reference: Sequence[ResultRow], attack: str = "autoattack",
                    epsilon: float = 4 / 255) -> list[RecipeComparison]:
    """Every candidate recipe against every reference recipe of the same model, mode and training epsilon, over
    the seeds both were tested on, clean and under `attack` at `epsilon`; ValueError when no pair exists."""
    condition = f"{attack_label(attack)} {format_epsilon(epsilon)}"
    out = []
    for mine, my_rows in tested_recipes(candidate, attack, epsilon).items():
        my_tests, my_notes = _tested_with_notes(my_rows, attack, epsilon)
        for theirs, their_rows in tested_recipes(reference, attack, epsilon).items():
            if not same_arm(mine, theirs):
                continue
            their_tests, their_notes = _tested_with_notes(their_rows, attack, epsilon)
            seeds = tuple(sorted(my_tests.keys() & their_tests.keys()))
            unpaired = tuple(sorted(my_tests.keys() ^ their_tests.keys()))
            measures = []
            for label, attacked, attribute in MEASURES:
                mine_values = {s: float(getattr(my_tests[s][attacked], attribute)) for s in seeds}
                their_values = {s: float(getattr(their_tests[s][attacked], attribute)) for s in seeds}
                measures.append(MeasureComparison(
                    label.format(condition=condition), mean_std(list(mine_values.values())),
                    mean_std(list(their_values.values())), paired_difference(mine_values, their_values)))
            collapsed = tuple(f"{who} seed {s} ({'clean' if not attacked else condition})"
                              for who, tests in (("candidate", my_tests), ("reference", their_tests))
                              for s in seeds for attacked in (0, 1) if tests[s][attacked].collapsed)
            row = my_rows[0]
            arm = f"{row.arch}, {row.train_mode} training" + (
                f" at ε {format_epsilon(row.train_epsilon)}" if row.train_epsilon else "")
            notes = tuple(f"{who} {note}" for who, of in (("candidate", my_notes), ("reference", their_notes))
                          for s in seeds for note in of.get(s, []))
            out.append(RecipeComparison(arm, _differs(mine, theirs), seeds, unpaired, tuple(measures), collapsed,
                                        notes))
    if not out:
        raise ValueError(f"no runs to pair: it needs runs of the same model, training mode and training ε on the "
                         f"same data in both, each tested clean and under {condition} (the rows of `experiment "
                         f"--test-attacks {attack} --test-epsilons {format_epsilon(epsilon)}`)")
    return sorted(out, key=lambda c: (-len(c.seeds), c.arm))
