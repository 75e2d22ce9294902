"""The seed study, answered: its protocol, busadv's additions, and a verdict on each of its findings.

The study trained SimpleCNN and ResNet50 on BUSI (cross-entropy, Adam, 10 epochs, batch 32, an 80/20
split), attacked the test set with FGSM, trained models on FGSM-perturbed images (online here as
fgsm-study, and offline as fgsm-offline, since the paper can be read both ways) and compared accuracy on
clean and perturbed test sets at epsilon 0.05, 0.2 and 0.5. busadv adds PGD and AutoAttack at the same and
at small epsilons, balanced accuracy and malignant sensitivity, the near-duplicate-aware split, and its
own best FGSM recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from busadv.attacks import SMALL_EPSILONS, STUDY_EPSILONS
from busadv.experiments import ExperimentConfig
from busadv.report.findings import (
    Finding,
    Table,
    fgsm_training_helps,
    higher_under_attack_than_clean,
    random_split_inflates,
    standard_models_lose_accuracy,
)
from busadv.report.plan import ReportPlan
from busadv.results import ResultRow
from busadv.training.config import STUDY_LEVERS

# busadv's best non-collapsing FGSM recipe on BUSI (README: "The study, answered", with the search behind it).
BEST_RECIPE: dict[str, Any] = {"modes": ["fgsm"], "train_epsilons": [8 / 255], "class_balance": "loss"}
SMALL_TESTS = (2 / 255, 4 / 255, 8 / 255)


def study_plan(data: str | None = None, archs: Sequence[str] = ("simplecnn", "resnet50"),
               seeds: Sequence[int] = (0, 1, 2, 3, 4), epochs: int = 10, image_sizes: dict[str, int] | None = None,
               autoattack: Sequence[float] = (8 / 255, 0.05), device: str = "auto",
               best: dict[str, Any] | None = None) -> ReportPlan:
    """Four grids: the standard model and the study's FGSM training (its protocol), busadv's best recipe, and the
    study's random split (standard only). AutoAttack runs on every recipe (not on the random split, which only
    asks how honest the split is): the slowest test, and the one a gradient-masked model cannot fool."""
    # The study's training (Adam 1e-3, batch 32, nothing added) for every grid, busadv's FGSM recipe included, so
    # the report's numbers stay those of the study's protocol; the training-epsilon frontier is its own preset.
    common: dict[str, Any] = dict(archs=list(archs), seeds=list(seeds), epochs=epochs, batch_size=32, lr=1e-3,
                                  **STUDY_LEVERS,
                                  image_sizes=dict(image_sizes or {}), data=data, device=device,
                                  test_attacks=["fgsm", "pgd"], test_epsilons=list(STUDY_EPSILONS))
    standard = ExperimentConfig(name="standard", modes=["standard"], train_epsilons=[], class_balance="none", **common)
    study = ExperimentConfig(name="study", modes=["fgsm-study", "fgsm-offline"], train_epsilons=list(STUDY_EPSILONS),
                             class_balance="none", **common)
    best_grid = ExperimentConfig(name="best", **(best or BEST_RECIPE), **common)
    split = ExperimentConfig(name="split", modes=["standard"], train_epsilons=[], split_policy="random",
                             class_balance="none",
                             **common | {"test_attacks": ["fgsm"], "test_epsilons": [0.05]})
    small = [("pgd", e) for e in SMALL_TESTS] + [("fgsm", e) for e in SMALL_TESTS]
    study_extra = [("fgsm-pred", e) for e in STUDY_EPSILONS] + [("noise", e) for e in STUDY_EPSILONS] + small
    strongest = [("autoattack", e) for e in autoattack]
    return ReportPlan(grids=[standard, study, best_grid, split],
                      conditions={"standard": study_extra + strongest, "study": study_extra + strongest,
                                  "best": small + strongest})


def judge(rows: Sequence[ResultRow], archs: Sequence[str]) -> list[Finding]:
    """Every finding of the study, for every model, from the rows."""
    table = Table([r for r in rows if r.split_policy != "random"])
    with_split = Table(rows)
    findings = []
    for arch in archs:
        findings.append(standard_models_lose_accuracy(table, arch, STUDY_EPSILONS))
        for mode in ("fgsm-study", "fgsm-offline"):
            findings.append(fgsm_training_helps(table, arch, mode, STUDY_EPSILONS))
        findings.append(higher_under_attack_than_clean(table, arch, "fgsm-study", 0.5))
        findings.append(random_split_inflates(with_split, arch))
    return findings


__all__ = ["BEST_RECIPE", "SMALL_EPSILONS", "study_plan", "judge"]
