"""Corruption robustness (ImageNet-C style): the engine, result rows with a severity, the CLI, a real job, Results."""

from __future__ import annotations

import json
import statistics

import pytest

from busadv.attacks import AttackContext
from busadv.attacks.scanner import corrupt, perturbation_size
from busadv.cli import main
from busadv.evaluation.corruption import evaluate_corruptions
from busadv.experiments.robustness import corruption_job
from busadv.results import load_store, read_rows, rows_to_csv
from tests.robustness_helpers import run_in_worker, tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory)


def test_the_report_holds_every_corruption_and_severity_with_its_size_and_means(trained_simplecnn):
    model, _, test_set = trained_simplecnn
    report = evaluate_corruptions(model, test_set, ["gain", "defocus"], [1, 3, 5], batch_size=16, seed=2)
    assert [(c.corruption, c.severity) for c in report.conditions] == [
        ("gain", 1), ("gain", 3), ("gain", 5), ("defocus", 1), ("defocus", 3), ("defocus", 5)]
    assert all(c.result.n == len(test_set) == report.clean.n for c in report.conditions)
    assert report.conditions[1].setting == "±6 dB" and report.conditions[1].result.attack == "gain"
    # The reported size is the change the evaluation made, batch by batch with the same seeds.
    x = test_set.floats()
    batches = [corrupt(AttackContext(model, x[i:i + 16], None, seed=2, batch=b), "gain", 3)
               for b, i in enumerate(range(0, len(x), 16))]
    import torch

    linf, l2 = perturbation_size(x, torch.cat(batches))
    assert report.conditions[1].linf == pytest.approx(linf) == report.conditions[1].result.epsilon
    assert report.conditions[1].l2 == pytest.approx(float(l2.mean()), rel=1e-5)
    assert [c.linf for c in report.conditions[:3]] == sorted(c.linf for c in report.conditions[:3])
    # ImageNet-C-style means: over severities per corruption and over everything, and the drop from clean.
    values = [c.result.balanced_accuracy for c in report.conditions]
    assert report.mean() == pytest.approx(statistics.fmean(values))
    assert report.mean("accuracy", "gain") == pytest.approx(statistics.fmean(
        c.result.accuracy for c in report.conditions[:3]))
    assert report.mean_error() == pytest.approx(1 - report.mean())
    assert report.relative_drop() == pytest.approx(report.clean.balanced_accuracy - report.mean())
    assert [line["corruption"] for line in report.summary()] == ["gain", "defocus", "all (mean)"]
    assert report.severities() == [None, 1, 3, 5, 1, 3, 5] and len(report.results()) == 7
    again = evaluate_corruptions(model, test_set, ["gain", "defocus"], [1, 3, 5], batch_size=16, seed=2)
    assert [c.result.confusion for c in again.conditions] == [c.result.confusion for c in report.conditions]


def test_corruption_rows_carry_their_severity_through_csv_and_stay_apart(checkpoint):
    result = corruption_job({"checkpoint": str(checkpoint), "corruptions": ["jpeg", "tgc"], "severities": "2-3",
                             "epsilons": ["8/255"], "compare_attacks": ["fgsm"]})
    rows = read_rows(rows_to_csv(read_rows(json.dumps(result["rows"]), ".json")))
    graded = [(r.attack, r.severity) for r in rows if r.severity is not None]
    assert graded == [("jpeg", 2), ("jpeg", 3), ("tgc", 2), ("tgc", 3)]
    equal = {(r.attack, round(r.test_epsilon, 6)) for r in rows if r.severity is None and r.attack != "none"}
    assert equal == {(a, round(8 / 255, 6)) for a in ("fgsm", "jpeg", "tgc")}
    assert len({r.identity() for r in rows}) == len(rows), "a severity is its own condition"
    assert len({r.group_key() for r in rows}) == len(rows)
    stored, problems = load_store()
    assert problems == [] and {(r.attack, r.severity) for r in stored} >= set(graded)
    assert [line["corruption"] for line in result["summary"]] == ["jpeg", "tgc", "all (mean)"]
    assert {(s["corruption"], s["severity"]) for s in result["sizes"]} == set(graded)


def test_corruptions_from_the_cli(checkpoint, tmp_path, capsys):
    out_csv = tmp_path / "c.csv"
    code = main(["corruptions", str(checkpoint), "--corruptions", "gain,speckle", "--severities", "1,5",
                 "--epsilons", "8/255", "--compare-attacks", "fgsm,pgd", "--pgd-steps", "2", "--csv", str(out_csv)])
    assert code == 0
    out = capsys.readouterr().out
    for text in ("Gain change", "±12 dB", "speckle contrast 0.35", "mean corruption error", "all (mean)",
                 "at equal L-inf size", "PGD ε=0.0314 (8/255)", "results store:"):
        assert text in out, text
    rows = read_rows(out_csv.read_bytes())
    assert sorted((r.attack, r.severity) for r in rows if r.severity) == [
        ("gain", 1), ("gain", 5), ("speckle", 1), ("speckle", 5)]
    gain_5 = next(r for r in rows if (r.attack, r.severity) == ("gain", 5))
    assert gain_5.test_epsilon == pytest.approx(12 / 60, abs=1e-6), "12 dB of a 60 dB display: 0.2 of the grey scale"


@pytest.mark.parametrize("argv, message", [
    (["--corruptions", "fog"], "--corruptions: corruptions: 'fog' is an unknown corruption"),
    (["--corruptions", "pgd"], "'pgd' is an attack, not a scanner corruption"),
    (["--severities", "1-7"], "--severities: severities: 6 is outside 1..5"),
    (["--severities", "x"], "--severities: severities: 'x' is not a level"),
])
def test_bad_corruption_options_get_one_line_naming_the_option(checkpoint, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["corruptions", str(checkpoint), *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_checkpoint_or_a_bad_setting_is_refused_before_any_work(tmp_path, capsys):
    assert main(["corruptions", str(tmp_path / "missing.pt")]) == 2
    assert capsys.readouterr().err.strip().endswith("missing.pt: no such checkpoint file")
    with pytest.raises(ValueError, match="unknown corruption evaluation setting"):
        corruption_job({"checkpoint": "x.pt", "severity": 3})
    with pytest.raises(ValueError, match="severities: 9 is outside"):
        corruption_job({"checkpoint": "x.pt", "severities": [9]})


def test_corruptions_as_a_background_job_land_in_the_store(checkpoint, tmp_path):
    job = run_in_worker(tmp_path, "corruptions", {"checkpoint": str(checkpoint), "corruptions": ["motion"],
                                                  "severities": [1, 2], "epsilons": []})
    assert [(r["attack"], r["severity"]) for r in job.result["rows"]] == [("none", None), ("motion", 1),
                                                                           ("motion", 2)]
    stored, _ = load_store()
    assert {(r.attack, r.severity) for r in stored} == {("none", None), ("motion", 1), ("motion", 2)}


def test_the_results_page_draws_corruptions_by_severity_and_at_equal_size(checkpoint):
    from tests.test_app import RESULTS, chart, open_app, texts

    corruption_job({"checkpoint": str(checkpoint), "corruptions": ["gain", "jpeg"], "severities": "1-5",
                    "epsilons": ["2/255", "8/255"], "compare_attacks": ["fgsm"]})
    at = open_app(RESULTS)
    curves = chart(at, "corr_curves")
    assert {t["name"] for t in curves["data"] if t.get("name")} >= {"Gain change", "JPEG re-compression"}
    assert next(t for t in curves["data"] if t.get("name") == "Gain change")["x"] == [1, 2, 3, 4, 5]
    bars = chart(at, "corr_equal")
    names = {t["name"] for t in bars["data"] if t.get("type") == "bar"}
    assert names == {"Gain change (scanner)", "JPEG re-compression (scanner)", "FGSM (attack)"}
    page = texts(at)
    assert "Ordinary scanner variation (not an attack)" in page and "hover a point for its physical setting" in page
