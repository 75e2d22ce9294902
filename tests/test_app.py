"""The Streamlit pages, driven headless with streamlit.testing.v1.AppTest.

Every test runs on its own BUSADV_HOME / BUSADV_CHECKPOINTS / BUSADV_CACHE (tests/conftest.py) and on
the simulated phantoms; checkpoints are tiny 32 px SimpleCNNs, so each test takes seconds.
"""

from __future__ import annotations

import io
import json
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app.py"
EXPLORER, JOBS, RESULTS = "pages/1_Perturbation_explorer.py", "pages/2_Jobs.py", "pages/3_Results.py"
SIMULATED = "Simulated phantoms (not clinical images)"


def open_app(page: str | None = None) -> AppTest:
    """Run app.py's multipage app on `page` (a path like "pages/2_Jobs.py"), as a request for its URL would.

    Why not AppTest.from_file(page): a page alone has no pages/ folder beside it, so its menu links
    (st.page_link("app.py"), ...) would name pages that do not exist.
    """
    at = AppTest.from_file(str(APP), default_timeout=90)
    if page:
        at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Everything the page says, for 'is this message shown' checks."""
    parts = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "subheader", "metric"):
        for element in getattr(at, kind):
            parts.append(str(element.value))
            if kind == "metric":
                parts.append(str(element.label))
    parts += [bar.text for bar in at.get("progress")]
    return "\n".join(parts)


def chart_specs(at: AppTest) -> dict[str, dict]:
    """Plotly charts by their widget key (the id ends with the key)."""
    out = {}
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        out[chart.proto.id] = spec
    return out


def chart(at: AppTest, key: str) -> dict:
    matches = [spec for cid, spec in chart_specs(at).items() if cid.endswith(key) or f"-{key}-" in cid or key in cid]
    assert matches, f"no chart with key {key!r} among {list(chart_specs(at))}"
    return matches[0]


def wait_for(at: AppTest, condition, timeout: float = 90.0, what: str = "condition") -> AppTest:
    """Rerun the page (as the polling fragment would) until `condition(at)` holds."""
    end = time.monotonic() + timeout
    while True:
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        if condition(at):
            return at
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}; page says:\n{texts(at)[-3000:]}")
        time.sleep(0.5)


def png_bytes(size: tuple[int, int] = (60, 45), mode: str = "RGB") -> bytes:
    image = Image.new(mode, size, color=(90, 90, 90) if mode == "RGB" else 90)
    for x in range(10, 30):
        for y in range(10, 25):
            image.putpixel((x, y), (20, 20, 20) if mode == "RGB" else 20)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def store():
    from busadv.jobs import JobStore

    return JobStore()


def set_job(job_id: int, **values) -> None:
    """Write job columns directly (a finished job with given rows, a job whose worker died)."""
    columns = ", ".join(f"{k} = ?" for k in values)
    with sqlite3.connect(store().path) as conn:
        conn.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*values.values(), job_id))


# ----------------------------------------------------------------------------- home


def test_home_names_data_models_and_jobs(app_checkpoints):
    at = open_app()
    page = texts(at)
    assert SIMULATED in page
    assert "240 images" in page and "110 benign" in page
    assert "Nothing is running." in page
    assert "from scratch" in page  # ResNet50 without ImageNet weights
    table = at.dataframe[0].value
    assert len(table) == 2 and set(table["training"]) == {"standard training", "FGSM training at ε=0.0314 (8/255)"}
    # Seven short columns (no sideways scrolling), with the accuracy under FGSM at 8/255 that training measured.
    assert list(table.columns) == ["model", "training", "data", "clean test accuracy", "under FGSM ε=0.0314 (8/255)",
                                   "seed", "trained"]
    assert set(table["model"]) == {"simplecnn, 32 px"} and set(table["data"]) == {"simulated phantoms"}
    assert table["under FGSM ε=0.0314 (8/255)"].between(0, 1).all()
    links = {link.proto.label: link.proto.page for link in at.main.get("page_link")}
    assert links["Perturbation explorer: drag ε on one image"] == "Perturbation_explorer"


PAGE_FILES = {"app.py": "Home", "pages/1_Perturbation_explorer.py": "Perturbation explorer",
              "pages/2_Jobs.py": "Jobs", "pages/3_Results.py": "Results"}


def test_pages_are_a_classic_multipage_app():
    """app.py plus pages/, no st.navigation: each page sets itself up, because a request for its URL runs it alone.

    Mixing st.navigation with a pages/ folder made a fresh server run a deep link (/explorer) in the
    file-based mode without app.py: no wide layout, no data label, another menu.
    """
    import ast
    import tomllib

    from busadv import ui

    pages = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py"))
    assert ["app.py", *pages] == list(PAGE_FILES)
    assert [(path, label) for path, label, _ in ui.PAGES] == list(PAGE_FILES.items())  # the menu lists every page

    def calls_navigation(tree: ast.AST) -> bool:
        return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "navigation"
                   for n in ast.walk(tree))

    for path, title in PAGE_FILES.items():
        tree = ast.parse((ROOT / path).read_text())
        assert not calls_navigation(tree), f"{path} calls st.navigation"
        statements = [node for node in tree.body if not isinstance(node, (ast.Import, ast.ImportFrom))]
        if ast.get_docstring(tree):
            statements = statements[1:]
        assert ast.unparse(statements[0]) == f"ui.page_setup({title!r})", f"{path} must start with ui.page_setup"
    assert not calls_navigation(ast.parse((ROOT / "busadv" / "ui.py").read_text()))
    assert not (ROOT / "app_pages").exists()
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showSidebarNavigation"] is False  # ui.page_setup draws the one menu


@pytest.mark.parametrize("path", list(PAGE_FILES))
def test_every_page_has_the_menu_and_the_data_label(path):
    at = open_app(None if path == "app.py" else path)
    assert [t.value for t in at.title][0].startswith(PAGE_FILES[path] if path != "app.py" else "busadv")
    assert [link.proto.label for link in at.sidebar.get("page_link")] == list(PAGE_FILES.values())
    assert [link.proto.page for link in at.sidebar.get("page_link")] == ["", "Perturbation_explorer", "Jobs", "Results"]
    assert any(SIMULATED in c.value for c in at.sidebar.caption)


def test_home_without_models_says_how_to_get_one():
    at = open_app()
    assert "No trained model yet" in texts(at)


# ----------------------------------------------------------------------------- explorer


def _probabilities(at: AppTest) -> tuple[list[float], list[float]]:
    spec = chart(at, "probabilities")
    return spec["data"][0]["x"], spec["data"][1]["x"]


def test_explorer_slider_changes_probabilities_and_marks_flips(app_checkpoints):
    at = open_app(EXPLORER)
    assert "-standard-" in at.selectbox(key="model").value  # standard training is offered first
    slider = at.select_slider(key="eps")
    assert "k/255" in slider.label
    slider.set_value(0.0).run()
    clean, perturbed = _probabilities(at)
    assert perturbed == pytest.approx(clean)
    assert "Prediction unchanged" in texts(at)
    # A wrong answer on the clean image is never shown as green "unchanged" good news.
    wrong = max(range(3), key=clean.__getitem__) != 1  # the image shown is malignant
    assert ("wrong without any noise" in texts(at)) == wrong
    assert bool(at.success) == (not wrong)

    at.select_slider(key="eps").set_value(0.5).run()
    assert not at.exception
    clean2, perturbed2 = _probabilities(at)
    assert clean2 == pytest.approx(clean)
    assert perturbed2 != pytest.approx(clean)
    flipped = max(range(3), key=perturbed2.__getitem__) != max(range(3), key=clean2.__getitem__)
    page = texts(at)
    assert ("Diagnosis flipped" in page) == flipped and ("Prediction unchanged" in page) == (not flipped)
    assert "0.5 (~127.5/255)" in page  # epsilon shown as value and as k/255
    # The readouts wrap instead of being cut off: a caption over a large markdown value.
    labels = [c.value for c in at.caption]
    assert "Clean prediction" in labels and "Smallest ε that flips it" in labels
    values = [m.value for m in at.markdown if m.value.startswith("#### ")]
    assert len(values) >= 3
    smallest = values[2].removeprefix("#### ")
    assert re.fullmatch(r"0\.\d+ \(\d+/255\)|0\.5 \(~127\.5/255\)|none up to 0\.5", smallest), smallest
    assert (":red-badge[:material/warning: flipped]" in page) == flipped

    # The epsilon strip: eight images with a prediction under each.
    strip = [m.value for m in at.markdown if m.value.startswith("**clean (ε = 0)**") or m.value.startswith("**ε = ")]
    assert len(strip) == 8
    assert len(at.image) >= 3 + 8


def test_explorer_other_class_image_and_attacks(app_checkpoints):
    at = open_app(EXPLORER)
    at.segmented_control(key="true_class").set_value("benign").run()
    options = at.selectbox(key="image_index").options
    assert len(options) > 1 and all("benign" in o for o in options)
    at.selectbox(key="image_index").set_value(at.selectbox(key="image_index").value).run()
    for attack in ("fgsm-pred", "noise"):
        at.radio(key="attack").set_value(attack).run()
        assert not at.exception
        assert chart(at, "probabilities")
    assert "Random noise" in texts(at)


def test_explorer_upload_image_and_non_image(app_checkpoints):
    at = open_app(EXPLORER)
    at.radio(key="source").set_value("Upload your own").run()
    assert "Upload a breast-ultrasound image" in texts(at)
    at.file_uploader(key="upload").set_value(("scan.png", png_bytes(), "image/png")).run()
    assert not at.exception and not at.error
    clean, _ = _probabilities(at)
    assert sum(clean) == pytest.approx(1.0, abs=1e-4)
    assert "attacks the model's own prediction" in texts(at)  # no known diagnosis

    at.selectbox(key="known").set_value("malignant").run()
    assert "true diagnosis: **malignant**" in texts(at)

    at.file_uploader(key="upload").set_value(("notes.png", b"this is not an image", "image/png")).run()
    assert not at.exception
    assert any("not a readable PNG or JPEG image" in e.value for e in at.error)
    assert not at.get("plotly_chart")


def test_explorer_compares_two_models(app_checkpoints):
    at = open_app(EXPLORER)
    assert at.selectbox(key="model_b").value != at.selectbox(key="model").value
    compare = [cid for cid in chart_specs(at) if "compare-" in cid]
    assert len(compare) == 2
    assert "Smallest flipping ε" in texts(at)


def test_explorer_without_model_trains_a_quick_one(monkeypatch):
    from busadv import ui

    monkeypatch.setattr(ui, "QUICK_TRAIN_CONFIG", {"arch": "simplecnn", "epochs": 1, "image_size": 32,
                                                   "test_epsilons": [8 / 255], "device": "cpu"})
    at = open_app(EXPLORER)
    assert "No trained model yet" in texts(at)
    at.button(key="quick-train").click().run()
    assert not at.exception
    jobs = store().list()
    assert [j.kind for j in jobs] == ["train"] and jobs[0].config["epochs"] == 1
    wait_for(at, lambda a: bool(a.get("plotly_chart")), what="the quick model and the explorer")
    assert Path(jobs[0].config.get("image_size") and store().get(jobs[0].id).result["checkpoint"]).exists()


# ----------------------------------------------------------------------------- jobs


def test_jobs_page_starts_a_training_job_and_follows_it_to_done(app_checkpoints):
    at = open_app(JOBS)
    at.number_input(key="t_epochs").set_value(1)
    at.number_input(key="t_size_simplecnn").set_value(32)
    at.text_input(key="t_test_eps").input("8/255")
    at.run()
    assert "0.0314 (8/255)" in texts(at)
    at.button(key="t_start").click().run()
    assert not at.exception
    job = store().list()[0]
    assert job.kind == "train" and job.config["image_size"] == 32 and job.config["test_epsilons"] == [8 / 255]
    wait_for(at, lambda a: f"Job {job.id} — done" in texts(a), what="the training job to finish")
    page = texts(at)
    assert "clean test accuracy" in page and "100% done" in page
    assert Path(store().get(job.id).result["checkpoint"]).exists()
    # The finished job's training curves are one click away.
    assert chart(at, "curves")["data"]


def test_jobs_page_shows_a_failed_jobs_error_and_log():
    job_id = store().submit("train", {"arch": "not-a-model"})
    at = open_app(JOBS)
    wait_for(at, lambda a: any("Failed" in e.value for e in a.error), what="the job to fail")
    error = next(e.value for e in at.error if "Failed" in e.value)
    assert "unknown model" in error
    assert f"Job {job_id} — failed" in texts(at)
    assert any("Traceback" in c.value or "unknown model" in c.value for c in at.code)


def test_jobs_page_marks_a_job_whose_worker_died_as_interrupted():
    job_id = store().submit("train", {"arch": "simplecnn"}, start=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.time()
    set_job(job_id, status="running", pid=dead.pid, pid_start=None, host=socket.gethostname(), started=now,
            heartbeat=now)
    at = open_app(JOBS)
    assert f"Job {job_id} — interrupted" in texts(at)
    assert any("died" in w.value for w in at.warning)


def _live_points(at: AppTest, job_id: int) -> int:
    """Epochs drawn so far in a running job's live curves (0 while there is no chart)."""
    specs = [spec for cid, spec in chart_specs(at).items() if f"jobs-live-{job_id}" in cid]
    return max((len(t["x"]) for spec in specs for t in spec["data"]), default=0)


def test_jobs_page_draws_a_running_jobs_curves_live_and_cancels_it(monkeypatch):
    monkeypatch.setenv("BUSADV_TEST_JOBS", "1")
    job_id = store().submit("sleep", {"steps": 400, "seconds": 0.05, "epochs": 20})  # an epoch ends each second
    at = open_app(JOBS)
    wait_for(at, lambda a: _live_points(a, job_id) >= 1, what="the first epoch's point")
    first = _live_points(at, job_id)
    wait_for(at, lambda a: _live_points(a, job_id) > first, what="the curves to grow while the job runs")
    spec = next(spec for cid, spec in chart_specs(at).items() if f"jobs-live-{job_id}" in cid)
    names = {t["name"] for t in spec["data"]}
    assert {"test accuracy (clean)", "training loss"} <= names
    assert spec["layout"]["xaxis"]["range"] == [0.5, 20.5]  # the axis spans the planned epochs
    assert store().get(job_id).status == "running"

    at.button(key=f"jobs-cancel-{job_id}").click().run()
    wait_for(at, lambda a: f"Job {job_id} — cancelled" in texts(a), what="the job to be cancelled")
    assert store().get(job_id).status == "cancelled"
    assert _live_points(at, job_id) == 0  # curves are for running jobs


def test_jobs_page_validates_settings_and_fills_in_the_study():
    at = open_app(JOBS)
    at.selectbox(key="t_mode").set_value("fgsm").run()
    assert not at.select_slider(key="t_eps").proto.disabled
    at.text_input(key="t_test_eps").input("8/255, lots").run()
    assert any("lots" in e.value for e in at.error)
    assert at.button(key="t_start").proto.disabled

    at.button(key="x_preset").click().run()
    assert at.multiselect(key="x_archs").value == ["simplecnn", "resnet50"]
    assert at.text_input(key="x_seeds").value == "0, 1, 2, 3, 4"
    assert "40 training runs" in texts(at)
    assert "from scratch" in texts(at)
    at.text_input(key="x_seeds").input("0-2").run()
    assert "24 training runs" in texts(at)


# ----------------------------------------------------------------------------- results


def _row(mode: str, train_eps: float, attack: str, test_eps: float, seed: int, acc: float) -> dict:
    confusion = [[8, 1, 1], [3, 5, 2], [0, 1, 9]]
    return {"run": f"{mode}-{train_eps}-s{seed}", "arch": "simplecnn", "train_mode": mode, "train_epsilon": train_eps,
            "adv_labels": "true", "seed": seed, "epochs": 1, "data_source": SIMULATED, "simulated": True,
            "attack": attack, "test_epsilon": test_eps, "accuracy": acc, "n": 30, "malignant_missed": 5,
            "malignant_total": 10, "malignant_missed_rate": 0.5, "changed": 3, "recall_benign": 0.8,
            "recall_malignant": 0.5, "recall_normal": 0.9, "confusion": confusion}


def finished_job(rows: list[dict]) -> int:
    job_id = store().submit("experiment", {"name": "synthetic"}, start=False)
    now = time.time()
    set_job(job_id, status="done", progress=1.0, started=now, finished=now, result=json.dumps({"rows": rows}))
    return job_id


def study_like_rows() -> list[dict]:
    rows = []
    for seed, j in ((0, -0.02), (1, 0.0), (2, 0.04)):
        rows += [_row("standard", 0.0, "none", 0.0, seed, 0.80 + j), _row("standard", 0.0, "fgsm", 0.5, seed, 0.20 + j),
                 # label leaking: the FGSM-trained model scores higher under FGSM than on clean images
                 _row("fgsm", 0.5, "none", 0.0, seed, 0.60 + j), _row("fgsm", 0.5, "fgsm", 0.5, seed, 0.90 + j)]
    return rows


def test_results_page_draws_error_bars_warnings_confusion_and_export():
    from busadv.experiments import summarize

    rows = study_like_rows()
    finished_job(rows)
    at = open_app(RESULTS)
    page = texts(at)
    assert SIMULATED in page
    assert any("label leaking" in w.value for w in at.warning)
    assert len([w for w in at.warning if w.value.startswith("**Check th")]) == 1  # the notes share one box

    bars = [t for t in chart(at, "bars")["data"] if t["type"] == "bar"]
    assert len(bars) == 4
    summary = summarize(rows)
    expected = {(s["train_mode"], s["attack"]): s["accuracy_std"] for s in summary}
    by_name = {b["name"]: b for b in bars}
    standard_fgsm = next(b for n, b in by_name.items() if n.startswith("Standard") and "FGSM test" in n)
    assert standard_fgsm["error_y"]["array"] == pytest.approx([expected[("standard", "fgsm")]])
    adv_clean = next(b for n, b in by_name.items() if n.startswith("FGSM-trained") and "clean" in n)
    assert adv_clean["error_y"]["array"] == pytest.approx([expected[("fgsm", "none")]])
    dots = [t for t in chart(at, "bars")["data"] if t["type"] == "scatter"]
    assert sum(len(d["y"]) for d in dots) == 12 and all("seed" in h for d in dots for h in d["hovertext"])

    curve = chart(at, "curve")["data"]
    assert any(t.get("fill") == "toself" and "mean ± std" in t["name"] for t in curve)

    attacked = chart(at, "cm_attacked")
    assert len(attacked["layout"]["shapes"]) == 2  # malignant -> benign, malignant -> normal
    assert "of 30 malignant missed" in attacked["layout"]["title"]["text"]  # pooled over 3 seeds
    assert "Counts pooled over 3 run(s)" in texts(at)

    download = at.get("download_button")
    assert download and download[0].proto.label == "Download these rows as CSV"


def test_results_page_metric_switch_and_csv_rows():
    from busadv.experiments import rows_to_csv

    at = open_app(RESULTS)
    assert "No results yet" in texts(at)
    csv_bytes = rows_to_csv(study_like_rows()).encode()
    at.file_uploader(key="rows_csv").set_value(("study.csv", csv_bytes, "text/csv")).run()
    assert not at.exception
    assert chart(at, "bars")
    at.selectbox(key="metric").set_value("malignant_missed_rate").run()
    bars = chart(at, "bars")
    assert "Malignant" in bars["layout"]["yaxis"]["title"]["text"]
    dots = [t for t in bars["data"] if t["type"] == "scatter"]  # single seeds for every measure, not only accuracy
    assert sum(len(d["y"]) for d in dots) == 12 and {v for d in dots for v in d["y"]} == {0.5}
    at.file_uploader(key="rows_csv").set_value(("bad.csv", b"a,b\n1,2\n", "text/csv")).run()
    assert any("bad.csv: not a busadv results file" in e.value for e in at.error)


def test_results_page_counts_a_checkpoint_once():
    """A training job and a later evaluation of the same checkpoint: the newest row is kept, the other left out."""
    def rows(acc: float) -> list[dict]:
        return [dict(_row("standard", 0.0, "none", 0.0, 0, acc), checkpoint="/models/a.pt"),
                dict(_row("standard", 0.0, "fgsm", 0.5, 0, acc / 2), checkpoint="/models/a.pt")]

    finished_job(rows(0.6))
    finished_job(rows(0.8))  # newer
    at = open_app(RESULTS)
    assert "2 row(s) left out" in texts(at)
    clean = next(t for t in chart(at, "bars")["data"] if t["type"] == "bar" and "clean" in t["name"])
    assert clean["y"] == pytest.approx([0.8]) and clean["error_y"]["array"] == pytest.approx([0.0])


def test_epsilon_helpers():
    from busadv import ui

    assert ui.parse_epsilon_list("2/255, 0.05; 8/255") == pytest.approx([2 / 255, 0.05, 8 / 255])
    with pytest.raises(ValueError):
        ui.parse_epsilon_list("2/255, x")
    assert ui.parse_int_list("0-2, 7") == [0, 1, 2, 7]
    assert 0.0 in ui.EPSILON_CHOICES and 8 / 255 in ui.EPSILON_CHOICES and 0.5 in ui.EPSILON_CHOICES
    assert list(ui.EPSILON_CHOICES) == sorted(ui.EPSILON_CHOICES)
