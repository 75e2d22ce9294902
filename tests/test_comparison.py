"""Two recipes compared seed by seed (busadv.results.comparison and `python -m busadv compare`): the paired
differences, which runs pair at all, and the command's one-line refusals."""

import dataclasses

import pytest

from busadv.results import ResultRow, write_rows
from busadv.results.comparison import compare_recipes

AA = 4 / 255
WHOLE = [[5, 0, 0], [0, 5, 0], [0, 0, 5]]


def _rows(clean: dict[int, float], robust: dict[int, float], eps: float = 8 / 255, **recipe) -> list[ResultRow]:
    out = []
    for seed in sorted(clean.keys() | robust.keys()):
        common = dict(run=f"fgsm-{eps}-{seed}-{sorted(recipe.items())}", seed=seed, arch="simplecnn",
                      train_mode="fgsm", train_epsilon=eps, **recipe)
        if seed in clean:
            out.append(ResultRow(attack="none", test_epsilon=0.0, balanced_accuracy=clean[seed],
                                 malignant_sensitivity=0.7, **common))
        if seed in robust:
            out.append(ResultRow(attack="autoattack", test_epsilon=AA, balanced_accuracy=robust[seed],
                                 malignant_sensitivity=0.4 + seed / 100, **common))
    return out


def test_a_lever_is_compared_seed_by_seed_with_what_it_changed_named():
    reference = _rows({0: 0.70, 1: 0.72, 2: 0.68}, {0: 0.45, 1: 0.47, 2: 0.43})
    candidate = _rows({0: 0.65, 1: 0.66, 2: 0.64, 3: 0.9}, {0: 0.40, 1: 0.43, 2: 0.38, 3: 0.9}, critical_weight=2.0)
    (comparison,) = compare_recipes(candidate, reference, "autoattack", AA)
    assert comparison.seeds == (0, 1, 2) and comparison.unpaired == (3,), "seed 3 has no partner: left out"
    assert comparison.differs == ("critical_weight 2.0 (the reference's: 1.0)",)
    clean, robust, robust_sens, clean_sens = comparison.measures
    assert clean.difference.mean == pytest.approx(-0.05) and clean.difference.below_zero
    assert clean.candidate[0] == pytest.approx(0.65), "seed 3's 0.9 is not in the mean"
    assert robust.difference.mean == pytest.approx(-0.0467, abs=1e-4) and robust.difference.n == 3
    assert robust_sens.difference.mean == pytest.approx(0.0) and robust_sens.difference.p_value == 1.0
    assert "AutoAttack 0.0157 (4/255)" in robust.measure and clean_sens.measure == "clean malignant sensitivity"
    text = "\n".join(comparison.lines())
    assert "left out: seeds 3" in text and "-0.050 [" in text and "collapsed: none" in text


def test_only_the_same_model_mode_epsilon_and_data_pair_and_collapse_is_named():
    reference = _rows({0: 0.7, 1: 0.7}, {0: 0.4, 1: 0.4}) + _rows({0: 0.7, 1: 0.7}, {0: 0.4, 1: 0.4}, eps=4 / 255)
    other_data = _rows({0: 0.6, 1: 0.6}, {0: 0.3, 1: 0.3}, data_fingerprint="elsewhere")
    with pytest.raises(ValueError, match="no runs to pair"):
        compare_recipes(other_data, reference, "autoattack", AA)
    with pytest.raises(ValueError, match="under PGD"):
        compare_recipes(reference, reference, "pgd", AA)
    collapsed = [dataclasses.replace(r, collapsed=r.seed == 1 and r.attack == "none") for r in
                 _rows({0: 0.5, 1: 0.33}, {0: 0.3, 1: 0.33}, eps=4 / 255, epochs=30)]
    (comparison,) = compare_recipes(collapsed, reference, "autoattack", AA)
    assert "at ε 0.0157 (4/255)" in comparison.arm and comparison.collapsed == ("candidate seed 1 (clean)",)
    assert comparison.differs == ("epochs 30 (the reference's: None)",), "a row that does not say is shown so"


def test_an_epoch_count_chosen_on_other_seeds_says_so():
    reference = _rows({0: 0.7, 1: 0.7}, {0: 0.4, 1: 0.4}, epochs=37, epochs_chosen_on="5-9")
    candidate = _rows({0: 0.7, 1: 0.7}, {0: 0.4, 1: 0.4}, epochs=34, epochs_chosen_on="5-9")
    (comparison,) = compare_recipes(candidate, reference, "autoattack", AA)
    assert comparison.differs == ("epochs 34, chosen on seeds 5-9 (the reference's: 37, chosen on seeds 5-9)",)


def test_the_compare_command_prints_the_pairing_and_refuses_bad_files_in_one_line(tmp_path, capsys):
    from busadv.cli import main

    def written(rows: list[ResultRow], name: str):
        write_rows([dataclasses.replace(r, confusion=WHOLE) for r in rows], tmp_path / name)
        return str(tmp_path / name)

    reference = written(_rows({0: 0.70, 1: 0.72}, {0: 0.45, 1: 0.47}), "reference.csv")
    candidate = written(_rows({0: 0.65, 1: 0.66}, {0: 0.40, 1: 0.43}, critical_weight=2.0), "candidate.csv")
    assert main(["compare", candidate, reference]) == 0
    out = capsys.readouterr().out
    assert "candidate minus reference over 2 paired seeds (0, 1)" in out
    assert "differs in: critical_weight 2.0 (the reference's: 1.0)" in out and "clean balanced accuracy" in out
    for args, message in (([candidate, str(tmp_path / "missing.csv")], "no such results file"),
                          ([candidate, reference, "--attack", "pgd"], "no runs to pair"),
                          ([candidate, reference, "--attack", "fgsm,pgd"], "--attack takes one attack"),
                          ([candidate, reference, "--epsilon", "2"], "epsilon")):
        try:
            code = main(["compare", *args])
        except SystemExit as stop:  # argparse refuses a bad option before the command runs
            code = stop.code
        err = capsys.readouterr().err
        assert code in (1, 2) and message in err and "Traceback" not in err, (args, err)


def test_the_results_page_compares_two_recipes_seed_by_seed():
    from tests.test_app import RESULTS, open_app, result_row, stored, texts, unescape

    rows = []
    for weight, clean, robust in ((1.0, [0.70, 0.72, 0.68], [0.45, 0.47, 0.43]),
                                  (2.0, [0.65, 0.66, 0.64], [0.40, 0.43, 0.38])):
        for seed in range(3):
            common = dict(critical_weight=weight, run=f"w{weight}-s{seed}")
            rows += [result_row("fgsm", 8 / 255, "none", 0.0, seed, clean[seed], **common),
                     result_row("fgsm", 8 / 255, "autoattack", AA, seed, robust[seed], **common)]
    stored(rows)
    at = open_app(RESULTS)
    assert not at.exception
    page = unescape(texts(at))
    assert "Two recipes compared, seed by seed" in page and "paired over 3 seeds" in page
    table = next(d.value for d in at.dataframe if "Δ (candidate - reference), 95% CI" in d.value.columns)
    first = table["Δ (candidate - reference), 95% CI"][0]
    assert first.startswith(("+0.050 [", "-0.050 [")), first
    at.selectbox(key="compare_candidate").select_index(1).run()
    table = next(d.value for d in at.dataframe if "Δ (candidate - reference), 95% CI" in d.value.columns)
    assert table["Δ (candidate - reference), 95% CI"][0][0] != first[0], "the other way round: the sign turns"
    assert "critical_weight" in unescape(texts(at)) and "(the reference's: " in unescape(texts(at))


def test_the_results_page_says_when_no_two_recipes_can_be_paired():
    from tests.test_app import RESULTS, open_app, result_row, stored, texts, unescape

    stored([result_row("fgsm", 8 / 255, attack, eps, seed, 0.6) for seed in range(2)
            for attack, eps in (("none", 0.0), ("autoattack", AA))])
    at = open_app(RESULTS)
    assert not at.exception
    assert "No two recipes of one model, training mode and training ε are tested" in unescape(texts(at))


def test_a_seed_with_two_runs_or_two_step_counts_uses_one_run_and_its_strongest_attack_and_says_so():
    reference = _rows({0: 0.70, 1: 0.72}, {0: 0.45, 1: 0.47})
    candidate = _rows({0: 0.60, 1: 0.62}, {0: 0.40, 1: 0.42}, critical_weight=2.0)
    # A rerun of seed 0 listed after the first run: its rows must not be mixed with the first run's.
    rerun = [dataclasses.replace(r, run="rerun-0", balanced_accuracy=0.9 if r.attack == "none" else 0.1)
             for r in candidate if r.seed == 0]
    # Seed 1 of the reference also tested with a weaker attack (fewer steps), listed last.
    weaker = [dataclasses.replace(r, eval_pgd_steps=5, balanced_accuracy=0.99) for r in reference
              if r.seed == 1 and r.attack == "autoattack"]
    strong = [dataclasses.replace(r, eval_pgd_steps=100) if r.attack == "autoattack" else r for r in reference]
    (comparison,) = compare_recipes(candidate + rerun, strong + weaker, "autoattack", AA)
    clean, robust = comparison.measures[:2]
    assert clean.candidate[0] == pytest.approx(0.61), "the first run of seed 0 (0.60), not its rerun (0.9)"
    assert robust.candidate[0] == pytest.approx(0.41)
    assert robust.reference[0] == pytest.approx(0.46), "the 100-step rows, not the weaker 5-step one (0.99)"
    assert comparison.chosen == ("candidate seed 0: 2 runs of this recipe; the first listed is used",
                                 "reference seed 1: tested with 5, 100 attack steps; the strongest (100) is used")
    assert "  note: candidate seed 0: 2 runs" in "\n".join(comparison.lines())
