"""The study report: its plan, reusing stored runs, verdicts computed from data, a self-contained HTML file."""

from __future__ import annotations

import re

import pytest

from busadv.cli import main
from busadv.evaluation import ConditionResult
from busadv.progress import format_seconds
from busadv.report.findings import (
    ARTEFACT,
    HOLDS,
    NOT_SEEN,
    Table,
    fgsm_training_helps,
    higher_under_attack_than_clean,
    random_split_inflates,
    standard_models_lose_accuracy,
)
from busadv.report.plan import gather
from busadv.report.study import study_plan
from busadv.report.workflow import report_job, stored_reports
from busadv.results import rows_for
from busadv.training import TrainConfig

HEALTHY = [[30, 6, 4], [5, 13, 2], [2, 1, 9]]         # accuracy 52/72, balanced ~0.68
WEAKER = [[20, 12, 8], [8, 8, 4], [4, 4, 4]]          # accuracy 32/72
BENIGN_ONLY = [[40, 0, 0], [20, 0, 0], [12, 0, 0]]    # collapsed: accuracy 40/72, balanced 1/3
BETTER = [[38, 1, 1], [1, 18, 1], [1, 1, 10]]         # accuracy 66/72


def rows(mode: str, eps: float, seeds=(0, 1, 2), split: str = "near", **conditions):
    """Rows of a recipe for several seeds; conditions map 'attack@eps' to a confusion matrix."""
    out = []
    for seed in seeds:
        config = TrainConfig(arch="simplecnn", mode=mode, epsilon=eps, image_size=32, seed=seed, split_policy=split)
        made = [ConditionResult(attack=k.split("@")[0], epsilon=float(k.split("@")[1]), confusion=v)
                for k, v in conditions.items()]
        out += rows_for(made, run=f"{mode}-{eps}-{split}-{seed}", seed=seed, train_config=config,
                        data_fingerprint="fp", data_source="test", simulated=True, eval_pgd_steps=10)
    return out


def test_the_study_plan_holds_the_protocol_busadvs_recipe_and_the_random_split():
    plan = study_plan(archs=["simplecnn"], seeds=[0, 1], epochs=1)
    runs = plan.runs()
    modes = sorted({(c.mode, c.split_policy) for c, _ in runs})
    assert modes == [("fgsm", "near"), ("fgsm-offline", "near"), ("fgsm-study", "near"), ("standard", "near"),
                     ("standard", "random")]
    assert len(runs) == 2 * (1 + 3 + 3) + 2 + 2
    study_conditions = next(w for c, w in runs if c.mode == "fgsm-study")
    for needed in [("none", 0.0), ("fgsm", 0.5), ("pgd", 0.05), ("fgsm-pred", 0.5), ("pgd", 8 / 255)]:
        assert any(a == needed[0] and abs(e - needed[1]) < 1e-9 for a, e in study_conditions), needed
    for mode in ("standard", "fgsm", "fgsm-study", "fgsm-offline"):  # AutoAttack on every recipe
        wanted = next(w for c, w in runs if c.mode == mode)
        assert any(a == "autoattack" and abs(e - 8 / 255) < 1e-9 for a, e in wanted), mode


def test_standard_models_losing_accuracy_holds_and_notes_collapse():
    table = Table(rows("standard", 0.0, **{"none@0": HEALTHY, "fgsm@0.05": WEAKER, "fgsm@0.5": BENIGN_ONLY}))
    finding = standard_models_lose_accuracy(table, "simplecnn", [0.05, 0.5])
    assert finding.verdict == HOLDS and "collapse" in finding.trap
    assert "that class's share" in " ".join(finding.evidence)


def test_fgsm_training_that_only_collapses_is_an_artefact_not_robustness():
    data = rows("standard", 0.0, **{"none@0": HEALTHY, "fgsm@0.05": WEAKER, "pgd@0.05": WEAKER})
    data += rows("fgsm-study", 0.05, **{"none@0": BENIGN_ONLY, "fgsm@0.05": BENIGN_ONLY, "pgd@0.05": BENIGN_ONLY})
    finding = fgsm_training_helps(Table(data), "simplecnn", "fgsm-study", [0.05])
    assert finding.verdict == ARTEFACT and "collapse" in finding.trap


def test_fgsm_training_that_survives_pgd_holds():
    data = rows("standard", 0.0, **{"none@0": HEALTHY, "fgsm@0.05": WEAKER, "pgd@0.05": BENIGN_ONLY})
    data += rows("fgsm-study", 0.05, **{"none@0": BETTER, "fgsm@0.05": HEALTHY, "pgd@0.05": HEALTHY})
    assert fgsm_training_helps(Table(data), "simplecnn", "fgsm-study", [0.05]).verdict == HOLDS


def test_fgsm_training_whose_gain_vanishes_under_pgd_is_an_artefact():
    data = rows("standard", 0.0, **{"none@0": HEALTHY, "fgsm@0.05": WEAKER, "pgd@0.05": WEAKER})
    data += rows("fgsm-study", 0.05, **{"none@0": HEALTHY, "fgsm@0.05": HEALTHY, "pgd@0.05": WEAKER})
    finding = fgsm_training_helps(Table(data), "simplecnn", "fgsm-study", [0.05])
    assert finding.verdict == ARTEFACT and "masking" in finding.trap


def test_higher_under_attack_than_clean_is_label_leaking_and_absent_when_not_observed():
    leak = rows("fgsm-study", 0.5, **{"none@0": WEAKER, "fgsm@0.5": BETTER, "fgsm-pred@0.5": BENIGN_ONLY})
    finding = higher_under_attack_than_clean(Table(leak), "simplecnn", "fgsm-study", 0.5)
    assert finding.verdict == ARTEFACT and "label leaking" in finding.trap
    honest = rows("fgsm-study", 0.5, **{"none@0": HEALTHY, "fgsm@0.5": WEAKER})
    assert higher_under_attack_than_clean(Table(honest), "simplecnn", "fgsm-study", 0.5).verdict == NOT_SEEN


def test_a_random_split_that_inflates_accuracy_is_flagged():
    data = rows("standard", 0.0, **{"none@0": HEALTHY}) + rows("standard", 0.0, split="random",
                                                                **{"none@0": BETTER})
    finding = random_split_inflates(Table(data), "simplecnn")
    assert finding.verdict == ARTEFACT and "near-duplicates" in finding.trap


def test_a_report_reuses_every_stored_run_and_writes_a_self_contained_file(tmp_path, capsys):
    plan = study_plan(archs=["simplecnn"], seeds=[0], epochs=1, image_sizes={"simplecnn": 32}, autoattack=[])
    said = []
    first, counts, missing = gather(plan, said.append)
    assert counts.trained == len(plan.runs()) and not missing
    assert said[0].message.startswith(f"{len(plan.runs())} of {len(plan.runs())} runs to train or evaluate: roughly")
    again, counts, _ = gather(plan)
    assert (counts.reused, counts.trained) == (len(plan.runs()), 0) and len(again) == len(first)
    out = tmp_path / "study.html"
    assert main(["report", "--models", "simplecnn", "--seeds", "0", "--epochs", "1", "--image-sizes", "simplecnn=32",
                 "--autoattack", "", "--no-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"runs reused {len(plan.runs())}, evaluated from checkpoints 0, trained 0" in printed
    html = out.read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=[\"']https?://", html), "must work offline"
    assert 'class="verdict' in html and "findings, judged from the data" in html
    assert [r["html"] for r in stored_reports()] == [str(out)], "one written elsewhere is listed on the Study page"


def test_a_missing_condition_is_evaluated_from_the_checkpoint_not_retrained():
    plan = study_plan(archs=["simplecnn"], seeds=[0], epochs=1, image_sizes={"simplecnn": 32}, autoattack=[])
    gather(plan)
    plan.conditions["study"].append(("noise", 3 / 255))  # never measured: no test had 3/255
    _, counts, _ = gather(plan, run=False)
    assert [(run.conditions, run.train) for run in counts.pending] == [([("noise", 3 / 255)], False)] * 6
    rows, counts, _ = gather(plan)
    assert counts.trained == 0 and counts.evaluated == 6  # the study grid's six FGSM runs, from their checkpoints
    assert sum(r.attack == "noise" and abs(r.test_epsilon - 3 / 255) < 1e-9 for r in rows) == 6


def test_the_time_left_counts_training_and_autoattack_likely_and_at_its_worst_case():
    from busadv.experiments.estimates import AUTOATTACK, LIKELY_SHARES, autoattack_cost, rate_at

    with_aa = study_plan(archs=["simplecnn"], seeds=[0, 1], epochs=2, image_sizes={"simplecnn": 32},
                         autoattack=[8 / 255])
    without = study_plan(archs=["simplecnn"], seeds=[0, 1], epochs=2, image_sizes={"simplecnn": 32}, autoattack=[])
    _, counts, missing = gather(with_aa, run=False)
    assert len(counts.pending) == len(with_aa.runs()) == len(missing) and all(r.train for r in counts.pending)
    rates = {"simplecnn": 50.0}
    total, text = counts.time_left(rates, measured=False)
    plain_total, plain_text = gather(without, run=False)[1].time_left(rates, measured=False)
    attacked = [r for r in counts.pending if any(a == "autoattack" for a, _ in r.conditions)]
    assert len(attacked) == len(with_aa.runs()) - 2  # every recipe but the random split's two seeds
    per_image = 1 / rate_at(rates, "simplecnn", 32)
    robust = [r for r in attacked if r.config.mode != "standard"]
    assert robust and len(robust) < len(attacked)  # the study's FGSM runs beside its standard ones
    likely = sum(r.n_test * autoattack_cost(*LIKELY_SHARES[r.config.mode != "standard"]) for r in attacked)
    assert total == pytest.approx(plain_total + likely * per_image)
    worst = sum(r.n_test for r in attacked) * AUTOATTACK * per_image
    assert text.startswith("roughly ") and "AutoAttack about" in text and "AutoAttack" not in plain_text
    assert f"up to {format_seconds(worst)}" in text
    assert counts.time_left({"simplecnn": 100.0}, measured=True)[0] == pytest.approx(total / 2)


@pytest.mark.parametrize("config, message", [({"preset": "paper"}, "unknown report preset"),
                                             ({"out": "study.pdf"}, "an .html file"),
                                             ({"models": "vgg"}, "unknown report setting"),
                                             ({"archs": ["vgg"]}, "unknown model 'vgg'")])
def test_bad_report_settings_are_refused_before_any_work(config, message):
    with pytest.raises(ValueError, match=message):
        report_job(config)
