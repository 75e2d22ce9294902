"""The Streamlit pages, driven headless with streamlit.testing.v1.AppTest.

Every test runs on its own BUSADV_HOME / BUSADV_CHECKPOINTS / BUSADV_CACHE (tests/conftest.py) and on
the simulated phantoms; checkpoints are tiny 32 px SimpleCNNs, so each test takes seconds.
"""

from __future__ import annotations

import ast
import io
import json
import os
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
PAGE_FILES = {"app.py": "Home", EXPLORER: "Perturbation explorer", JOBS: "Jobs", RESULTS: "Results",
              "pages/4_Study.py": "Study", "pages/5_Dataset.py": "Dataset"}


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


def unescape(text: str) -> str:
    r"""Markdown source as it reads once rendered: '\:' -> ':', word joiners gone (busadv.app.layout.plain)."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u2060", "")


def texts(at: AppTest) -> str:
    """Everything the page says (escapes removed), for 'is this message shown' checks."""
    parts = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "subheader", "metric"):
        for element in getattr(at, kind):
            parts.append(str(element.value))
            if kind == "metric":
                parts.append(str(element.label))
    parts += [bar.text for bar in at.get("progress")]
    return unescape("\n".join(parts))


def chart_specs(at: AppTest) -> dict[str, dict]:
    """Plotly charts by their element id (the id ends with the widget key)."""
    return {chart.proto.id: json.loads(chart.proto.spec) for chart in at.get("plotly_chart")}


def chart(at: AppTest, key: str) -> dict:
    matches = [spec for cid, spec in chart_specs(at).items() if key in cid]
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
    """Write job columns directly (a finished job with given results, a job whose worker died)."""
    columns = ", ".join(f"{k} = ?" for k in values)
    with sqlite3.connect(store().path) as conn:
        conn.execute(f"UPDATE jobs SET {columns} WHERE id = ?", (*values.values(), job_id))


@pytest.fixture
def no_workers(monkeypatch):
    """Jobs stay queued: for tests that only check what a page submits."""
    from busadv.jobs import JobStore

    monkeypatch.setattr(JobStore, "dispatch", lambda self: [])


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
    attacked = "under FGSM 8/255"
    assert list(table.columns) == ["model", "training", "data", "balanced accuracy", "accuracy", "sensitivity",
                                   attacked, "check", "seed", "trained"]
    assert set(table["model"]) == {"simplecnn 32px"} and set(table["data"]) == {"phantoms"}
    for column in ("balanced accuracy", "accuracy", attacked):  # whole percentages
        assert table[column].str.fullmatch(r"\d{1,3}%").all(), column
    links = {link.proto.label: link.proto.page for link in at.main.get("page_link")}
    assert links["Perturbation explorer: drag ε on one image"] == "Perturbation_explorer"


def _rewrite_metrics(path: Path, **changes) -> None:
    """A checkpoint whose stored metrics say something else (older versions, a collapsed model)."""
    import torch

    blob = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            blob["metrics"].pop(key, None)
        else:
            blob["metrics"][key] = value
    torch.save(blob, path)


def test_home_table_flags_collapse_and_leaves_unrecorded_measures_empty(app_checkpoints):
    older, collapsed = sorted(app_checkpoints.glob("*.pt"))
    _rewrite_metrics(older, clean_balanced_accuracy=None, clean_sensitivity=None, collapsed=False)
    _rewrite_metrics(collapsed, collapsed=True, clean_balanced_accuracy=0.3333)
    at = open_app()
    table = at.dataframe[0].value.set_index("training")
    old_row = table.loc["standard training" if "standard" in older.name else "FGSM training at ε=0.0314 (8/255)"]
    assert old_row["balanced accuracy"] == "-" and old_row["sensitivity"] == "-"  # not recorded: "-", never "None"
    assert old_row["accuracy"].endswith("%") and old_row["check"] == "-"
    assert list(table["check"]).count("⚠ collapsed") == 1
    assert "1 of these models answer one class" in texts(at)


@pytest.mark.parametrize("path", list(PAGE_FILES))
def test_every_page_has_the_menu_and_the_data_label(path):
    at = open_app(None if path == "app.py" else path)
    title = {"app.py": "busadv", "pages/4_Study.py": "The study"}.get(path, PAGE_FILES[path])
    assert [t.value for t in at.title][0].startswith(title)
    assert [link.proto.label for link in at.sidebar.get("page_link")] == list(PAGE_FILES.values())
    assert [link.proto.page for link in at.sidebar.get("page_link")] == ["", "Perturbation_explorer", "Jobs", "Results",
                                                                          "Study", "Dataset"]
    assert any(SIMULATED in c.value for c in at.sidebar.caption)


def test_pages_are_a_classic_multipage_app():
    """app.py plus pages/, no st.navigation: each page sets itself up, because a request for its URL runs it alone.

    Mixing st.navigation with a pages/ folder made a fresh server run a deep link (/explorer) in the
    file-based mode without app.py: no wide layout, no data label, another menu.
    """
    import tomllib

    from busadv.app import layout

    pages = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py"))
    assert ["app.py", *pages] == list(PAGE_FILES)
    assert [(path, label) for path, label, _ in layout.PAGES] == list(PAGE_FILES.items())  # the menu lists every page

    def calls_navigation(tree: ast.AST) -> bool:
        return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "navigation"
                   for n in ast.walk(tree))

    for path, title in PAGE_FILES.items():
        tree = ast.parse((ROOT / path).read_text())
        assert not calls_navigation(tree), f"{path} calls st.navigation"
        statements = [node for node in tree.body if not isinstance(node, (ast.Import, ast.ImportFrom))]
        if ast.get_docstring(tree):
            statements = statements[1:]
        assert ast.unparse(statements[0]) == f"layout.page_setup({title!r})", f"{path} must start with page_setup"
    for module in (ROOT / "busadv" / "app").glob("*.py"):
        assert not calls_navigation(ast.parse(module.read_text())), module
    assert not (ROOT / "busadv" / "ui.py").exists() and not (ROOT / "app_pages").exists()
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showSidebarNavigation"] is False  # layout.page_setup draws the one menu


def test_only_the_app_and_its_pages_import_streamlit():
    """Pages are thin: they call busadv.app and the engine; nothing below busadv.app imports Streamlit."""
    engine = ("data", "models", "attacks", "training", "evaluation", "explorer", "results", "experiments", "jobs",
              "plots", "cli", "registry", "settings", "progress")
    for path in (ROOT / "busadv").rglob("*.py"):
        if path.relative_to(ROOT / "busadv").parts[0].removesuffix(".py") not in engine:
            continue
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any(name.split(".")[0] == "streamlit" for name in imported), path
    for path in (ROOT / "busadv" / "app").glob("*.py"):
        assert len(path.read_text().splitlines()) < 500, f"{path} is long: split it by concern"


def test_home_without_models_says_how_to_get_one():
    at = open_app()
    assert "No trained model yet" in texts(at)


# ----------------------------------------------------------------------------- explorer


def open_tab(at: AppTest, label: str) -> AppTest:
    """Open one of the explorer's tabs below the first screen (they run only when open), by its label's start."""
    full = next(t.label for t in at.tabs if t.label.startswith(label))
    at.session_state["explorer_tab"] = full
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def flip_readout(at: AppTest) -> str:
    """The first screen's 'Smallest ε that flips it' value."""
    captions = [c.value for c in at.caption]
    values = [m.value.removeprefix("#### ") for m in at.markdown if m.value.startswith("#### ")]
    readouts = [c for c in captions if c in {"Clean prediction", "Smallest ε that flips it", "Attention kept",
                                              "Attention on the lesion", "Peak on the lesion"} or c.startswith("With ")]
    return values[readouts.index("Smallest ε that flips it")]


def _probabilities(at: AppTest) -> tuple[list[float], list[float]]:
    spec = chart(at, "probabilities")
    return spec["data"][0]["x"], spec["data"][1]["x"]


def test_explorer_slider_changes_probabilities_and_marks_flips(app_checkpoints):
    at = open_app(EXPLORER)
    assert "-standard-" in at.selectbox(key="model").value  # standard training is offered first
    slider = at.select_slider(key="eps")
    assert "k/255" in slider.label
    slider.set_value(0.0).run()
    spec = chart(at, "probabilities")
    assert len(spec["data"]) == 1, "at ε = 0 only the clean probabilities are drawn"
    clean = spec["data"][0]["x"]
    # A wrong answer on the clean image is never shown as green "unchanged" good news.
    wrong = max(range(3), key=clean.__getitem__) != 1  # the image shown is malignant
    assert ("wrong without any noise" in texts(at)) == wrong
    assert ("The model's answer" in texts(at)) == (not wrong) and not at.success

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
    assert len(values) >= 4
    smallest = flip_readout(at)
    assert re.fullmatch(r"0\.\d+ \(\d+/255\)|0\.5 \(~127\.5/255\)|none up to 0\.5", smallest), smallest
    assert (":red-badge[:material/warning: flipped]" in page) == flipped

    # The epsilon strip: eight images with a prediction under each.
    open_tab(at, "ε strip")
    strip = [m.value for m in at.markdown if m.value.startswith("**clean (ε = 0)**") or m.value.startswith("**ε = ")]
    assert len(strip) == 8
    assert len(at.image) >= 8
    open_tab(at, "Closer look")
    assert len(chart(at, "pictures-main")["data"]) == 6  # clean, perturbed, change; three Grad-CAM pictures


def test_explorer_offers_the_registry_attacks_with_their_explanations(app_checkpoints):
    from busadv.attacks import explorer_attacks

    at = open_app(EXPLORER)
    offered = explorer_attacks()
    families = list(dict.fromkeys(spec.family for spec in offered))
    assert at.selectbox(key="attack_family").options == [
        {"adversarial": "Adversarial attack (worst case)", "corruption": "Scanner variation",
         "baseline": "Random noise"}.get(f, f) for f in sorted(families, key=["adversarial", "corruption",
                                                                              "baseline"].index)]
    adversarial = [spec.label for spec in offered if spec.family == "adversarial"]
    assert [o.removesuffix(" · strongest offered") for o in at.radio(key="attack").options] == adversarial
    assert "pgd" in [spec.name for spec in offered]
    at.segmented_control(key="true_class").set_value("benign").run()
    options = at.selectbox(key="image_index").options
    assert len(options) > 1 and all("benign" in o for o in options)
    for spec in offered:
        at.selectbox(key="attack_family").set_value(spec.family).run()
        at.radio(key="attack").set_value(spec.name).run()
        assert not at.exception
        assert chart(at, "probabilities") and chart(at, "stage")
        assert spec.explanation in texts(at)
        smallest = flip_readout(at)
        assert re.fullmatch(r"0\.\d+ \(\d+/255\)|0\.5 \(~127\.5/255\)|none up to 0\.5", smallest), (spec.name, smallest)
    at.selectbox(key="attack_family").set_value("adversarial").run()
    at.radio(key="attack").set_value("pgd").run()
    open_tab(at, "ε strip")
    at.toggle(key="show_sweep").set_value(True).run()  # PGD's sweep: one attack per point
    assert chart(at, "sweep")["data"]


def test_explorer_upload_image_non_image_and_huge_image(app_checkpoints):
    at = open_app(EXPLORER)
    at.radio(key="source").set_value("Upload your own").run()
    assert "Upload a breast-ultrasound image" in texts(at)
    at.file_uploader(key="upload").set_value(("scan.png", png_bytes(), "image/png")).run()
    # The flip banner is the explorer's own alert (whether this made-up image flips depends on the tiny model).
    assert not at.exception and not [e for e in at.error if "Diagnosis flipped" not in e.value]
    clean, _ = _probabilities(at)
    assert sum(clean) == pytest.approx(1.0, abs=1e-4)
    assert "aims at the model's own prediction" in texts(at)  # no known diagnosis

    at.selectbox(key="known").set_value("malignant").run()
    assert "true diagnosis: **malignant**" in texts(at)

    at.file_uploader(key="upload").set_value(("notes.png", b"this is not an image", "image/png")).run()
    assert not at.exception
    assert any("not a readable PNG or JPEG image" in e.value for e in at.error)
    assert not at.get("plotly_chart")

    at.file_uploader(key="upload").set_value(("huge.png", png_bytes((6000, 5000), "L"), "image/png")).run()
    assert not at.exception
    assert any("cannot be used" in e.value and "million pixels" in e.value for e in at.error)


def test_explorer_compares_two_models(app_checkpoints):
    at = open_tab(open_app(EXPLORER), "Compare")
    assert at.selectbox(key="model_b").value != at.selectbox(key="model").value
    compare = [cid for cid in chart_specs(at) if "compare-" in cid]
    assert len(compare) == 2
    assert "Smallest flipping ε" in texts(at)


def test_a_registered_attack_appears_in_the_explorer_and_the_jobs_page(app_checkpoints):
    import torch

    from busadv.attacks import ATTACKS, AttackSpec, register_attack

    register_attack(AttackSpec(name="toy-shift", label="Toy shift", explanation="Toy shift: every pixel up by ε",
                               direction=lambda ctx: torch.ones_like(ctx.x)))
    try:
        at = open_app(EXPLORER)
        assert "Toy shift" in at.radio(key="attack").options
        at.radio(key="attack").set_value("toy-shift").run()
        assert not at.exception and "Toy shift: every pixel up by ε" in texts(at)
        assert chart(at, "probabilities")

        at = open_app(JOBS)
        for key in ("t_attacks", "e_attacks", "x_attacks"):
            assert "Toy shift" in at.multiselect(key=key).options, key
        assert set(at.multiselect(key="t_attacks").value) == {"fgsm", "pgd"}
    finally:
        ATTACKS.unregister("toy-shift")


def test_explorer_without_model_trains_a_quick_one(monkeypatch):
    from busadv.app import jobs

    monkeypatch.setattr(jobs, "QUICK_TRAIN_CONFIG", {"arch": "simplecnn", "epochs": 1, "image_size": 32,
                                                     "test_epsilons": [8 / 255], "device": "cpu"})
    at = open_app(EXPLORER)
    assert "No trained model yet" in texts(at)
    at.button(key="quick-train").click().run()
    assert not at.exception
    listed = store().list()
    assert [j.kind for j in listed] == ["train"] and listed[0].config["epochs"] == 1
    wait_for(at, lambda a: bool(a.get("plotly_chart")) and "probabilities" in str(list(chart_specs(a))),
             what="the quick model and the explorer")
    assert Path(store().get(listed[0].id).result["checkpoint"]).exists()


# ----------------------------------------------------------------------------- jobs


def test_jobs_page_starts_a_training_job_and_follows_it_to_done(app_checkpoints):
    from busadv.results import load_store

    at = open_app(JOBS)
    at.number_input(key="t_epochs").set_value(1)
    at.number_input(key="t_size_simplecnn").set_value(32)
    at.text_input(key="t_test_eps").input("8/255")
    at.run()
    assert "0.0314 (8/255)" in texts(at)
    assert "One training run: roughly" in texts(at)
    at.button(key="t_start").click().run()
    assert not at.exception
    job = store().list()[0]
    assert job.kind == "train" and job.config["image_size"] == 32 and job.config["test_epsilons"] == [8 / 255]
    assert job.config["test_attacks"] == ["fgsm", "pgd"] and job.config["random_start"] is None
    wait_for(at, lambda a: f"Job {job.id} — done" in texts(a), what="the training job to finish")
    page = texts(at)
    assert "Clean test images: balanced accuracy" in page and "100% done" in page
    assert re.search(r"Under FGSM, balanced accuracy \d+% at ε=0.0314 \(8/255\)", page)
    assert re.search(r"Under PGD, balanced accuracy \d+% at ε=0.0314 \(8/255\)", page)
    assert Path(store().get(job.id).result["checkpoint"]).exists()
    assert chart(at, "curves")["data"]  # the finished job's training curves are one click away
    rows, problems = load_store()
    assert not problems and {r.attack for r in rows} == {"none", "fgsm", "pgd"}  # the Results page reads these


def test_jobs_page_submits_the_chosen_registry_settings(no_workers):
    at = open_app(JOBS)
    from busadv.app.widgets import SELECTION_CHOICES
    from busadv.models import MODELS
    from busadv.training import CLASS_BALANCE, MODES, TrainConfig
    from busadv.training.config import SELECTIONS

    assert list(SELECTION_CHOICES) == list(SELECTIONS), "every way to keep an epoch is offered"

    assert at.selectbox(key="t_arch").options == [m.label for m in MODELS]
    assert at.selectbox(key="t_mode").options == [m.label for m in MODES]
    for mode in MODES:  # random start: the mode's own default first, then on and off
        at.selectbox(key="t_mode").set_value(mode.name).run()
        default = "on" if mode.defaults.get("random_start") else "off"
        assert at.selectbox(key="t_rs").options == [f"default: {default}", "on", "off"]
        assert at.selectbox(key="t_rs").proto.disabled == (not mode.adversarial)
    at.selectbox(key="t_mode").set_value("fgsm").run()
    at.selectbox(key="t_rs").select_index(1)  # on
    at.selectbox(key="t_split").set_value("random")
    at.selectbox(key="t_labels").select_index(2)  # predicted labels
    at.selectbox(key="t_balance").select_index(3)  # sampler
    at.selectbox(key="t_select").select_index(1 + list(SELECTION_CHOICES).index("best-sensitive"))
    at.number_input(key="t_cw").set_value(2.5)
    at.multiselect(key="t_attacks").unselect("pgd")
    at.run()
    at.button(key="t_start").click().run()
    assert not at.exception
    config = store().list()[0].config
    assert config["mode"] == "fgsm" and config["epsilon"] == pytest.approx(8 / 255)
    assert config["random_start"] is True and config["split_policy"] == "random"
    assert config["adv_labels"] == "predicted" and config["test_attacks"] == ["fgsm"]
    assert config["class_balance"] == list(CLASS_BALANCE)[2]
    assert config["select"] == "best-sensitive" and config["critical_weight"] == 2.5
    trained = TrainConfig.from_dict({k: v for k, v in config.items()  # the worker's own check takes what it sent
                                     if k not in ("test_attacks", "test_epsilons", "eval_pgd_steps")})
    assert trained.select == "best-sensitive" and trained.critical_weight == 2.5


def test_jobs_page_shows_a_failed_jobs_error_and_log():
    job_id = store().submit("train", {"arch": "not-a-model"})
    at = open_app(JOBS)
    wait_for(at, lambda a: any("Failed" in e.value for e in a.error), what="the job to fail")
    error = unescape(next(e.value for e in at.error if "Failed" in e.value))
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


def test_a_finished_jobs_card_shows_its_diagnoses():
    job_id = store().submit("train", {"arch": "simplecnn"}, start=False)
    now = time.time()
    result = {"rows": [], "diagnoses": ["Label leaking: simplecnn, FGSM-trained: 3 of 3 run(s) (seed 0, 1, 2): "
                                        "FGSM above clean. Train FGSM on predicted labels [see](http://x)."]}
    set_job(job_id, status="done", progress=1.0, started=now, finished=now, result=json.dumps(result))
    at = open_app(JOBS)
    warnings = [w.value for w in at.warning if "Label leaking" in w.value]
    assert len(warnings) == 1 and "3 of 3 run(s)" in unescape(warnings[0])
    assert "\\[see\\]" in warnings[0]  # text from a result is shown as text, never as a link


def _live_points(at: AppTest, job_id: int) -> int:
    """Epochs drawn so far in a running job's live curves (0 while there is no chart)."""
    specs = [spec for cid, spec in chart_specs(at).items() if f"jobs-live-{job_id}" in cid]
    return max((len(t["x"]) for spec in specs for t in spec["data"]), default=0)


def test_jobs_page_draws_a_running_jobs_curves_live_and_cancels_it():
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
    assert "Sleep (test only)" in texts(at)  # a plugin's job kind is named by its registry label

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

    from busadv.experiments import study_preset

    at.button(key="x_preset").click().run()
    preset = study_preset()
    assert at.multiselect(key="x_archs").value == preset.archs
    assert at.multiselect(key="x_modes").value == preset.modes
    assert at.multiselect(key="x_attacks").value == preset.test_attacks
    assert at.text_input(key="x_seeds").value == "0, 1, 2, 3, 4"
    assert f"{len(preset.runs())} training runs" in texts(at) and "roughly" in texts(at)
    assert "from scratch" in texts(at)
    at.text_input(key="x_seeds").input("0-2").run()
    assert f"{len(study_preset(seeds=[0, 1, 2]).runs())} training runs" in texts(at)
    at.text_input(key="x_seeds").input("0, x").run()
    assert any("'x' is not a whole number" in e.value for e in at.error)
    assert at.button(key="x_start").proto.disabled


def test_jobs_page_chooses_epoch_counts_on_other_seeds_when_asked():
    at = open_app(JOBS)
    at.button(key="x_frontier").click().run()
    at.text_input(key="x_epochs_on").input("5-9").run()
    said = texts(at)
    assert "25 runs on seeds 5-9 first choose each group's epoch count on validation" in said
    assert "then 25 training runs" in said and not at.button(key="x_start").proto.disabled
    at.text_input(key="x_epochs_on").input("3-7").run()
    assert any("seed(s) 3-4 both choose the epoch counts and are tested" in e.value for e in at.error)
    assert at.button(key="x_start").proto.disabled


# ----------------------------------------------------------------------------- results


def result_row(mode: str, train_eps: float, attack: str, test_eps: float, seed: int, score: float, *,
               collapsed: bool = False, source: str = SIMULATED, checkpoint: str = "", **extra):
    from busadv.results import ResultRow

    confusion = [[8, 1, 1], [3, 5, 2], [0, 1, 9]]
    values = dict(run=f"{mode}-{train_eps}-s{seed}", seed=seed, arch="simplecnn", train_mode=mode,
                  train_epsilon=train_eps, epochs=1, adv_labels="true", attack=attack, test_epsilon=test_eps, n=30,
                  accuracy=score, balanced_accuracy=score, malignant_sensitivity=0.5, malignant_missed=5,
                  malignant_total=10, majority_rate=0.4, dominant_class="benign",
                  dominant_share=0.95 if collapsed else 0.4, collapsed=collapsed,
                  recall={"benign": 0.8, "malignant": 0.5, "normal": 0.9}, confusion=confusion, data_source=source,
                  simulated=source == SIMULATED, checkpoint=checkpoint)
    values.update(extra)
    return ResultRow(**values)


def study_like_rows() -> list:
    rows = []
    for seed, j in ((0, -0.02), (1, 0.0), (2, 0.04)):
        rows += [result_row("standard", 0.0, "none", 0.0, seed, 0.80 + j),
                 result_row("standard", 0.0, "fgsm", 0.5, seed, 0.20 + j),
                 # label leaking: the FGSM-trained model scores higher under FGSM than on clean images
                 result_row("fgsm", 0.5, "none", 0.0, seed, 0.60 + j),
                 result_row("fgsm", 0.5, "fgsm", 0.5, seed, 0.90 + j)]
    return rows


def stored(rows: list, label: str = "test") -> Path:
    from busadv.results import save_rows

    return save_rows(rows, label)


def test_results_page_draws_error_bars_diagnoses_confusion_and_export():
    from busadv.results import summarize

    rows = study_like_rows()
    stored(rows)
    at = open_app(RESULTS)
    page = texts(at)
    assert SIMULATED in page
    assert at.selectbox(key="metric").value == "balanced_accuracy"
    assert len(at.warning) == 1 and "label leaking (1 model)" in unescape(at.warning[0].value)  # one summary
    leaking = [unescape(m.value) for m in at.markdown if "Label leaking" in m.value]  # details, folded below
    assert len(leaking) == 1 and "3 of 3 run(s)" in leaking[0]

    bars = [t for t in chart(at, "bars")["data"] if t["type"] == "bar"]
    assert [b["name"] for b in bars] == ["standard", "FGSM ε=0.5"]  # one legend entry per trained model
    expected = {(g.train_mode, g.attack): g.stat("balanced_accuracy").std for g in summarize(rows)}
    assert bars[0]["error_y"]["array"] == pytest.approx([expected[("standard", "none")],
                                                         expected[("standard", "fgsm")]])
    assert bars[1]["error_y"]["array"] == pytest.approx([expected[("fgsm", "none")], expected[("fgsm", "fgsm")]])
    dots = [t for t in chart(at, "bars")["data"] if t["type"] == "scatter" and t.get("y") and None not in t["y"]]
    assert sum(len(d["y"]) for d in dots) == 12 and all("seed" in h for d in dots for h in d["hovertext"])

    curve = chart(at, "curve")["data"]
    assert any(t.get("fill") == "toself" and "mean ± std" in t["name"] for t in curve)

    attacked = chart(at, "cm_attacked")
    assert len(attacked["layout"]["shapes"]) == 2  # malignant -> benign, malignant -> normal
    assert "15 of 30 malignant missed" in attacked["layout"]["title"]["text"]  # pooled over 3 seeds
    assert "Counts pooled over 3 run(s)" in texts(at)

    table = at.dataframe[0].value
    assert set(table["runs (seeds)"]) == {"3 (0, 1, 2)"} and "Balanced accuracy" in table.columns
    assert set(table["collapsed"]) == {"-"}  # an empty cell says "-", never "None" or nothing
    download = at.get("download_button")
    assert download and download[0].proto.label == "Download these rows as CSV"


def test_results_page_measures_collapsed_runs_and_uploads():
    from busadv.results import rows_to_csv

    at = open_app(RESULTS)
    assert "No results yet" in texts(at)
    rows = study_like_rows()
    rows[0] = result_row("standard", 0.0, "none", 0.0, 0, 0.4, collapsed=True)  # seed 0 answers one class
    at.file_uploader(key="rows_csv").set_value(("study.csv", rows_to_csv(rows).encode(), "text/csv")).run()
    assert not at.exception

    def clean_standard(a: AppTest) -> list[float]:
        bar = next(t for t in chart(a, "bars")["data"] if t["type"] == "bar" and t["name"] == "standard")
        return bar["y"][:1]  # the clean test set comes first

    crosses = [t for t in chart(at, "bars")["data"] if t.get("name") == "collapsed runs"]
    assert crosses and len(crosses[0]["y"]) == 1  # the collapsed run is a red cross, not hidden in the mean
    assert clean_standard(at) == pytest.approx([(0.4 + 0.8 + 0.84) / 3])
    assert "answers one class" in unescape(at.warning[0].value).lower()

    at.toggle(key="show_collapsed").set_value(False).run()
    assert not [t for t in chart(at, "bars")["data"] if t.get("name") == "collapsed runs"]
    at.toggle(key="exclude_collapsed").set_value(True).run()
    assert clean_standard(at) == pytest.approx([(0.8 + 0.84) / 2])  # seed 0 left out of every condition

    at.selectbox(key="metric").set_value("accuracy").run()
    bars = chart(at, "bars")
    assert bars["layout"]["yaxis"]["title"]["text"] == "Accuracy"
    assert any("commonest class" in t.get("name", "") for t in bars["data"])  # the majority rate, in the legend

    at.file_uploader(key="rows_csv").set_value(("bad.csv", b"a,b\n1,2\n", "text/csv")).run()
    assert any("bad.csv: not a busadv results file" in unescape(e.value) for e in at.error)
    assert "No results yet" in texts(at)


def test_results_page_never_pools_simulated_and_real_data_and_escapes_uploaded_text():
    from busadv.results import rows_to_csv

    stored(study_like_rows())
    busi = "[BUSI](http://example.invalid) :red[at] /data"
    upload = [result_row("standard", 0.0, "none", 0.0, 5, 0.7, source=busi, run="b0"),
              result_row("standard", 0.0, "fgsm", 0.05, 5, 0.3, source=busi, run="b0")]
    at = open_app(RESULTS)
    at.file_uploader(key="rows_csv").set_value(("busi.csv", rows_to_csv(upload).encode(), "text/csv")).run()
    assert not at.exception
    radio = at.radio(key="source")
    assert len(radio.options) == 2
    assert SIMULATED in texts(at)
    radio.set_value(busi).run()
    bars = [t for t in chart(at, "bars")["data"] if t["type"] == "bar"]
    assert [b["y"] for b in bars] == [pytest.approx([0.7, 0.3])]  # the BUSI rows only: clean, then FGSM
    assert all(busi not in c.value for c in at.caption)  # shown as text, never as a link or coloured
    assert any(unescape(c.value) == f"Data: {busi}" for c in at.caption)


def test_results_page_counts_a_checkpoint_once():
    """A training run and a later evaluation of the same checkpoint: the newest row is kept."""
    def rows(score: float) -> list:
        return [result_row("standard", 0.0, "none", 0.0, 0, score, checkpoint="/models/a.pt"),
                result_row("standard", 0.0, "fgsm", 0.5, 0, score / 2, checkpoint="/models/a.pt")]

    older = stored(rows(0.6), "train")
    time.sleep(0.05)
    stored(rows(0.8), "evaluate")  # newer
    os.utime(older, (time.time() - 60, time.time() - 60))
    at = open_app(RESULTS)
    (bar,) = [t for t in chart(at, "bars")["data"] if t["type"] == "bar"]
    assert bar["y"][:1] == pytest.approx([0.8]) and bar["error_y"]["array"][:1] == pytest.approx([0.0])  # clean
    assert "With one run per model there is no spread to show" in texts(at)


def test_epsilon_choices():
    from busadv.app.widgets import EPSILON_CHOICES

    assert 0.0 in EPSILON_CHOICES and 8 / 255 in EPSILON_CHOICES and 0.5 in EPSILON_CHOICES
    assert list(EPSILON_CHOICES) == sorted(EPSILON_CHOICES)


def test_plain_text_cannot_draw_links_or_colours():
    from busadv.app.layout import plain

    assert plain("[x](http://a) :red[b] $c$ *d*") == r"\[x\](http\:" + "\u2060" + r"//a) \:red\[b\] \$c\$ \*d\*"
    assert plain("- item") == r"\- item" and plain("12. item") == r"12\. item"
    assert plain("two\nlines") == "two lines"
