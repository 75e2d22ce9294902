"""The Study page: a default that takes minutes, the long grid never the primary action, settings in words,
and no verdict over collapsed runs without its caveat (issue 17 item 6)."""

from __future__ import annotations

import re

from tests.test_app import SIMULATED, open_app, result_row, texts


def test_study_page_defaults_to_minutes_and_warns_before_days_of_work_with_autoattack_apart():
    at = open_app("pages/4_Study.py")
    said = texts(at)
    assert "0 of 9 runs are already in the results store" in said and "roughly" in said  # SimpleCNN, one seed
    assert "days" not in said and "AutoAttack about" not in said
    assert not [w for w in at.warning if "results store" in w.value]
    assert at.button(key="study_start").proto.type == "primary"
    at.button(key="s_full").click().run()  # the study's full settings: both models, five seeds, AutoAttack
    warned = " ".join(w.value for w in at.warning)
    assert "runs are already in the results store" in warned and "days" in warned and "AutoAttack about" in warned
    start = at.button(key="study_start")
    assert start.proto.type != "primary" and start.label.startswith("Start anyway (") and "days" in start.label


def test_study_page_shows_settings_in_words_and_a_caveat_on_verdicts_over_collapsed_runs():
    import json as json_module

    from busadv.report.study import study_plan
    from busadv.report.workflow import reports_dir

    plan = study_plan(None, ["simplecnn"], [0], 10, {}, [])
    config, _ = plan.runs()[0]
    from busadv.data import load_dataset

    fingerprint = load_dataset(None, int(config.image_size)).fingerprint
    from busadv.results import ResultRow, save_rows
    from busadv.results.row import recipe_columns

    recipe = recipe_columns(config) | {"data_fingerprint": fingerprint}
    rows = [ResultRow(**{**result_row("standard", 0.0, a, e, 0, 0.4, collapsed=True).__dict__, **recipe,
                         "run": "collapsed-run"}) for a, e in [("none", 0.0)] + [("fgsm", e) for e in (0.05, 0.2, 0.5)]]
    save_rows(rows, "collapsed")
    html = reports_dir() / "study-x.html"
    html.write_text("<html><body>report</body></html>")
    report = {"html": str(html), "findings": [{"claim": "FGSM lowers a standard simplecnn's accuracy",
                                               "verdict": "holds", "evidence": ["At ε=0.05: 40% → 40%."],
                                               "trap": ""}],
              "reused": 1, "evaluated": 0, "trained": 0, "missing": [], "rows": 4, "data_source": SIMULATED,
              "settings": {"archs": ["simplecnn"], "seeds": [0], "epochs": 10, "image_sizes": {},
                           "autoattack": []}}
    html.with_suffix(".json").write_text(json_module.dumps(report))
    at = open_app("pages/4_Study.py")
    said = texts(at)
    assert "caveat" in said and "1 of the 1 simplecnn runs behind this collapsed" in said
    assert "models simplecnn · seed 0 · 10 epochs · no AutoAttack" in said
    assert not re.search(r"\[|\{|'", " ".join(c.value for c in at.caption if "study-x" in c.value))  # no reprs


def test_a_caveat_counts_only_the_runs_a_finding_reads():
    from busadv.app.study import caveat

    collapse = {"simplecnn": {"standard": (0, 2), "fgsm-study": (0, 6), "fgsm-offline": (3, 6)},
                "resnet50": {"standard": (2, 2)}}
    online = "Training simplecnn on FGSM-perturbed images (online) raises accuracy on perturbed test images"
    offline = online.replace("online", "offline")
    assert caveat(online, collapse) is None
    assert "3 of the 8 simplecnn runs" in caveat(offline, collapse)
    assert caveat("FGSM lowers a standard simplecnn's accuracy", collapse) is None
    assert "2 of the 2 resnet50 runs" in caveat("FGSM lowers a standard resnet50's accuracy", collapse)
