"""Issue 19 item 1: every page in Chromium, with hostile text in every source, shows it as plain text.

One server, whose every source holds Markdown and HTML that would draw links and images: a results file
(cells and recipe names), a checkpoint (class names, recipe strings, data source), a data folder (file
names), a job database (configs, errors, results), a study report (findings) and, for the explorer, the URL's
query parameters. Each page must draw no `<a>` or `<img>` of the hostile host (HTML, SVG charts included),
show no exception, and make no request to any host but the server's.

Home and the explorer belong to another part of the app: their walk is its own test, so a failure there
is reported apart from the pages below.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from busadv.bench.startup import streamlit_server
from tests import test_browser
from tests.test_app import result_row
from tests.test_browser import CHROMIUM, ROOT, _free_port, settle

browser = test_browser.browser  # the browser test's fixture

pytestmark = [pytest.mark.hostile,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent: apt-get install chromium")]

EVIL = "evil.example"
# Each is one way Markdown, GitHub-flavoured Markdown, Streamlit or Plotly turns text into a link or an image.
HOSTILE = (f"[x](http://{EVIL}/a) ![i](http://{EVIL}/p.png) <a href=\"http://{EVIL}/h\">h</a> "
           f"<img src=\"http://{EVIL}/q.png\"> http://{EVIL}/bare www.{EVIL} `tick` :red[red] %{{x}}")
SHORT = [f"[x](http://{EVIL}/c)", f"<a href=http://{EVIL}>a</a>", f"![i](http://{EVIL}/i.png)"]  # class names
# A file name cannot hold "/": links and images without one still point at the hostile host.
FILE_NAME = f"benign [x](http:{EVIL}) ![i](http:{EVIL}) <img src=http:{EVIL}> www.{EVIL} `t` :red[r]"
SETTLE = 90


def _hostile_data(folder: Path) -> Path:
    """A BUSI-like folder (three class folders of small PNGs) whose file names hold links and images."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("benign", "malignant", "normal")):
        (folder / name).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 255, (64, 64), dtype=np.uint8)
            pixels[20:40, 20 + c * 5:40 + c * 5] = 30  # a lesion of its own per class
            stem = FILE_NAME.replace("benign", name) + f" ({i})" if i < 2 else f"{name} ({i})"
            Image.fromarray(pixels).save(folder / name / f"{stem}.png")
        # a near-copy of the first image (re-saved darker), so the Dataset page draws a group with the hostile name
        first = np.asarray(Image.open(folder / name / f"{FILE_NAME.replace('benign', name)} (0).png"))
        Image.fromarray((first * 0.97).astype(np.uint8)).save(folder / name / f"{FILE_NAME.replace('benign', name)} "
                                                                               "copy.png")
    return folder


def _hostile_checkpoint(good: Path, folder: Path) -> None:
    blob = torch.load(good, weights_only=True)
    blob["classes"] = list(SHORT)
    blob["train_config"] = dict(blob.get("train_config", {}), adv_labels=HOSTILE, data=HOSTILE)
    blob["data"] = dict(blob.get("data", {}), source=HOSTILE)
    blob["run_id"] = HOSTILE
    torch.save(blob, folder / "hostile-classes.pt")
    renamed = dict(torch.load(good, weights_only=True))
    renamed["data"] = dict(renamed.get("data", {}), source=HOSTILE)
    renamed["train_config"] = dict(renamed.get("train_config", {}), adv_labels=HOSTILE)
    torch.save(renamed, folder / f"{FILE_NAME}.pt")


def _hostile_results(home: Path) -> None:
    from busadv.results import save_rows

    rows = []
    for seed in (0, 1):
        for attack, eps, score in (("none", 0.0, 0.8), ("fgsm", 8 / 255, 0.4), ("pgd", 8 / 255, 0.3),
                                   ("autoattack", 8 / 255, 0.2)):
            rows.append(result_row("fgsm", 8 / 255, attack, eps, seed, score, source=HOSTILE, run=f"{HOSTILE} {seed}",
                                   checkpoint=f"{HOSTILE} {seed}", adv_labels=HOSTILE, test_images=HOSTILE,
                                   dominant_class=SHORT[0], collapsed=seed == 1,
                                   recall=dict(zip(SHORT, (0.5, 0.3, 0.2), strict=True)),
                                   eval_pgd_steps=10 if attack == "pgd" else None))
    rows += [result_row("fgsm", 2 / 255, attack, eps, seed, 0.6, source=HOSTILE, run=f"{HOSTILE} two {seed}",
                        checkpoint=f"{HOSTILE} two {seed}", adv_labels=HOSTILE, recall=dict(zip(SHORT, (0.5, 0.3, 0.2),
                                                                                                strict=True)))
             for seed in (0, 1) for attack, eps in (("none", 0.0), ("fgsm", 8 / 255), ("pgd", 8 / 255))]
    # a second source, sorted after the hostile one (shown first): the page draws its source radio
    rows += [result_row("standard", 0.0, attack, eps, 0, 0.7, run="plain-run", checkpoint="plain",
                        source="some other data") for attack, eps in (("none", 0.0), ("fgsm", 8 / 255))]
    save_rows(rows, "hostile")
    (home / "results" / f"{FILE_NAME}.csv").write_text("not,a\nresults,file\n")  # a skipped file: its name shown


def _hostile_jobs() -> None:
    from busadv.jobs import JobStore

    store = JobStore()
    now = time.time()
    result = {"rows": [{"run": HOSTILE, "attack": HOSTILE, "test_epsilon": HOSTILE, "balanced_accuracy": 0.5}],
              "diagnoses": [HOSTILE], "checkpoint": f"/x/{FILE_NAME}.pt", "html": f"/x/{FILE_NAME}.html",
              "history": [{"epoch": 1, "train_loss": 1.0, "test_accuracy": 0.5}]}
    for kind, status in (("train", "done"), ("experiment", "failed"), ("report", "done"), ("evaluate", "interrupted"),
                         ("flips", "cancelled")):
        job_id = store.submit(kind, {"arch": HOSTILE, "mode": HOSTILE, "name": HOSTILE, "archs": [HOSTILE],
                                     "checkpoint": f"/x/{FILE_NAME}.pt", "attacks": [HOSTILE]}, start=False)
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE jobs SET status = ?, result = ?, error = ?, message = ?, started = ?, finished = ? "
                         "WHERE id = ?", (status, json.dumps(result), HOSTILE, HOSTILE, now - 5, now, job_id))


def _hostile_report(home: Path) -> None:
    reports = home / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    html = reports / "study-hostile.html"
    html.write_text("<html><body><p>report</p></body></html>")
    report = {"html": str(html), "findings": [{"claim": HOSTILE, "verdict": HOSTILE, "evidence": [HOSTILE],
                                               "trap": HOSTILE},
                                              {"claim": HOSTILE, "verdict": "holds", "evidence": [], "trap": ""}],
              "reused": 1, "evaluated": 0, "trained": 0, "missing": [HOSTILE], "rows": 3, "data_source": HOSTILE,
              "settings": {"archs": [HOSTILE], "seeds": [0], "epochs": 1, "image_sizes": {HOSTILE: 64},
                           "autoattack": []}}
    html.with_suffix(".json").write_text(json.dumps(report))


@pytest.fixture
def hostile_server(app_checkpoints, tmp_path):
    """A server on hostile sources; (its base URL, its data folder)."""
    home = Path(os.environ["BUSADV_HOME"])
    _hostile_checkpoint(sorted(app_checkpoints.glob("*.pt"))[0], app_checkpoints)
    _hostile_results(home)
    _hostile_jobs()
    _hostile_report(home)
    data = _hostile_data(tmp_path / "busi")
    port = _free_port()
    env = dict(os.environ, BUSADV_MAX_JOBS="1", PYTHONUNBUFFERED="1", BUSADV_DATA=str(data))
    with streamlit_server(ROOT, env, port, tmp_path / "streamlit.log", timeout=60) as base:
        yield base, data


def _walk(browser, base: str, paths: list[str], width: int = 1400) -> tuple[list[str], list[str]]:
    """Open each page: (what it drew wrongly: hostile links or images, exception boxes; requests to other hosts)."""
    host = urllib.parse.urlsplit(base).netloc
    drawn, requested = [], []
    for path in paths:
        page = browser.new_page(viewport={"width": width, "height": 1000})
        requests: list[str] = []
        page.on("request", lambda request, seen=requests: seen.append(request.url))
        page.goto(f"{base}/{path}")
        where = path.split("?")[0] or "Home"
        try:
            settle(page, SETTLE)
            for expander in page.locator('[data-testid="stExpander"] summary').all():
                if expander.is_visible():  # those in other tabs are in the page already
                    expander.click(timeout=5000)  # folded details are drawn too
            settle(page, SETTLE)
        except Exception as exc:  # noqa: BLE001 - a page that never draws its title is one more finding
            drawn.append(f"{where}: did not finish drawing ({type(exc).__name__})")
        links = page.locator(f'a[href*="{EVIL}"]').count()
        images = page.locator(f'img[src*="{EVIL}"], image[href*="{EVIL}"]').count()
        raw = re.findall(rf"<(?:a|img|image)\b[^>]*{re.escape(EVIL)}[^>]*>", page.content())
        if links or images or raw:
            drawn.append(f"{where}: {links} link(s), {images} image(s) to the hostile host; e.g. {raw[:2]}")
        exceptions = page.locator('[data-testid="stException"]')
        if exceptions.count():
            drawn.append(f"{where}: exception box: {exceptions.first.inner_text()[:300]}")
        outside = sorted({u for u in requests if u.startswith("http") and urllib.parse.urlsplit(u).netloc != host})
        if outside:
            requested.append(f"{where}: {len(outside)} request(s) to other hosts, e.g. {outside[:2]}")
        page.close()
    return drawn, requested


MY_PAGES = ["Jobs", "Results", "Study", "Dataset"]
QUERY = urllib.parse.urlencode({"model": HOSTILE, "image": HOSTILE, "attack": HOSTILE, "eps": HOSTILE})
EXPLORER_AND_HOME = ["", "Perturbation_explorer", f"Perturbation_explorer?{QUERY}"]


def test_jobs_results_study_and_dataset_show_every_hostile_source_as_plain_text(hostile_server, browser):
    drawn, _ = _walk(browser, hostile_server[0], MY_PAGES)
    assert not drawn, "\n".join(drawn)


def test_home_and_the_explorer_show_every_hostile_source_and_url_parameter_as_plain_text(hostile_server, browser):
    drawn, _ = _walk(browser, hostile_server[0], EXPLORER_AND_HOME)
    assert not drawn, "\n".join(drawn)


def test_no_page_with_hostile_sources_makes_a_request_to_another_host(hostile_server, browser):
    """No request leaves the server's host: not to the hostile one, not for fonts or icons (issue 17 item 9)."""
    _, requested = _walk(browser, hostile_server[0], MY_PAGES + EXPLORER_AND_HOME)
    assert not requested, "\n".join(requested)


def test_the_hostile_sources_reach_the_pages(hostile_server):
    """The walk above proves something only if the hostile values are read: they are, by the same loaders."""
    from busadv.data import find_busi_root, list_busi_files
    from busadv.results import load_store

    rows, skipped = load_store()
    assert any(r.data_source == HOSTILE for r in rows) and any(FILE_NAME in s for s in skipped)
    names = [p.name for p, _ in list_busi_files(find_busi_root(hostile_server[1]))]
    assert any(FILE_NAME in n for n in names)


def test_a_data_files_name_is_escaped_in_the_dataset_pages_captions(tmp_path, monkeypatch):
    """F3 without a browser: the near-copy thumbnails are captioned with their file names, Markdown escaped."""
    from tests.test_app import open_app, unescape

    monkeypatch.setenv("BUSADV_DATA", str(_hostile_data(tmp_path / "busi")))
    at = open_app("pages/5_Dataset.py")
    captions = [image.caption for element in at.get("image") for image in element.proto.imgs]
    hostile = [c for c in captions if "evil" in c]
    assert hostile, captions
    assert all("\\[x\\]" in c and "\\<img" in c and unescape(c).startswith(("benign", "malignant", "normal"))
               for c in hostile), hostile
