"""The explorer's first screen via AppTest (issue 17 items 1, 4, 8; issue 19 F1, F2).

The first screen's figure holds every slider position as a frame; what it shows (its own data) is the frame
at the slider's position, and that position is the page's epsilon, the one the closer look below is at.
These tests drive the cases where they once drifted apart (an upload, another model, another attack, a
visit to another page), the healthiest defaults, and hostile text from links and checkpoints.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from busadv.app.widgets import EPSILON_CHOICES
from busadv.attacks import format_epsilon
from tests.test_app import EXPLORER, RESULTS, _rewrite_metrics, chart, open_app, open_tab, png_bytes, texts

PROBABILITY = re.compile(r"(\S+) (\d{1,3}\.\d) %")


def stage(at) -> dict:
    return chart(at, "stage")


def agree(at) -> float:
    """Assert that the first screen shows the frame at its slider's position, that this position is the page's ε
    (the closer look's slider), and that its numbers are the closer look's; return that ε."""
    assert not at.exception, [e.value for e in at.exception]
    spec = stage(at)
    slider = spec["layout"]["sliders"][0]
    active = slider["active"]
    assert len(slider["steps"]) == len(spec["frames"]) == len(EPSILON_CHOICES)
    frame = spec["frames"][active]
    assert spec["data"][1]["source"] == frame["data"][0]["source"], "the picture is the slider's frame"
    shown = [a["text"] for a in spec["layout"]["annotations"]]
    assert shown == [a["text"] for a in frame["layout"]["annotations"]], "the numbers are the slider's frame"
    assert spec["layout"]["title"]["text"] == frame["layout"]["title"]["text"]
    eps = EPSILON_CHOICES[active]
    assert at.select_slider(key="eps").value == pytest.approx(eps), "the closer look is at the first screen's ε"
    if eps > 0:
        assert format_epsilon(eps) in shown[1]
    # The perturbed image's probabilities as text are the closer look's bars, to the 0.1 % shown.
    bars = chart(at, "probabilities")["data"][-1]["x"]
    text = [float(p) for _, p in PROBABILITY.findall(re.sub(r"<[^>]+>", "", shown[3]))]
    assert text == pytest.approx([100 * b for b in bars], abs=0.051)
    return eps


def test_each_frame_is_the_image_at_its_epsilon_with_the_predicted_class_marked(app_checkpoints):
    at = open_app(EXPLORER)
    spec = stage(at)
    sources = [f["data"][0]["source"] for f in spec["frames"]]
    whole = [i for i, e in enumerate(EPSILON_CHOICES) if e <= 16 / 255 + 1e-9 and abs(e * 255 - round(e * 255)) < 1e-6]
    assert len({sources[i] for i in whole}) == 17, "every k/255 up to 16 draws its own picture (0.05 shows as 13/255)"
    assert spec["data"][0]["source"] == sources[0], "ε = 0 is the original"
    for frame in spec["frames"]:
        left, right = (re.sub(r"<[^>]+>", "", frame["layout"]["annotations"][k]["text"]) for k in (2, 3))
        for block in (left, right):
            values = PROBABILITY.findall(block)
            assert [name for name, _ in values] == ["benign", "malignant", "normal"], block
            assert sum(float(p) for _, p in values) == pytest.approx(100, abs=0.2)
            top = max(values, key=lambda v: float(v[1]))
            assert f"▶ {top[0]} {top[1]} %" in block, "the predicted class is marked"
    labels = [step["label"] for step in spec["layout"]["sliders"][0]["steps"]]
    assert labels[:5] == ["0", "1/255", "2/255", "3/255", "4/255"] and labels[-1] == "0.5"
    assert agree(at) == pytest.approx(4 / 255)


def test_slider_pictures_and_numbers_agree_after_upload_model_attack_and_another_page(app_checkpoints):
    at = open_app(EXPLORER)
    at.select_slider(key="eps").set_value(8 / 255).run()
    assert agree(at) == pytest.approx(8 / 255)

    # Upload your own: the page waits for the file, then shows it at the same ε (it once showed 0 and used 4/255).
    at.radio(key="source").set_value("Upload your own").run()
    assert not at.exception and "Upload a breast-ultrasound image" in texts(at)
    at.file_uploader(key="upload").set_value(("scan.png", png_bytes(), "image/png")).run()
    assert agree(at) == pytest.approx(8 / 255)
    at.radio(key="source").set_value("Test image").run()
    assert agree(at) == pytest.approx(8 / 255)

    # Another model, another attack.
    at.select_slider(key="eps").set_value(12 / 255).run()
    other = next(o for o in at.selectbox(key="model").options if o != at.selectbox(key="model").value)
    at.selectbox(key="model").set_value(next(v for v in at.selectbox(key="model").options if v == other)).run()
    assert agree(at) == pytest.approx(12 / 255)
    at.radio(key="attack").set_value("pgd").run()
    assert agree(at) == pytest.approx(12 / 255)
    assert "PGD, ε = " in stage(at)["layout"]["annotations"][1]["text"]

    # Another page and back: whatever ε the page starts at, the slider, picture and numbers say the same.
    at.switch_page(RESULTS).run()
    at.switch_page(EXPLORER).run()
    agree(at)
    # A tab below the first screen that has no ε slider of its own keeps the first screen where it was.
    at.select_slider(key="eps").set_value(2 / 255).run()
    open_tab(at, "Compare")
    assert stage(at)["layout"]["sliders"][0]["active"] == EPSILON_CHOICES.index(2 / 255)
    open_tab(at, "Closer look")
    assert agree(at) == pytest.approx(2 / 255)


def test_the_defaults_are_the_healthiest_models(app_checkpoints):
    standard, fgsm = sorted(app_checkpoints.glob("*.pt"), key=lambda p: "-fgsm-" in p.name)
    extra = app_checkpoints / fgsm.name.replace("-fgsm-", "-fgsm-collapsed-")
    shutil.copy2(fgsm, extra)
    _rewrite_metrics(extra, collapsed=True, clean_balanced_accuracy=0.99)  # high score, but collapsed
    _rewrite_metrics(fgsm, collapsed=False, clean_balanced_accuracy=0.5)
    _rewrite_metrics(standard, collapsed=False, clean_balanced_accuracy=0.6)
    at = open_tab(open_app(EXPLORER), "Compare")
    assert at.selectbox(key="model").value == standard.stem
    assert at.selectbox(key="model_b").value == fgsm.stem, "the second model is never a collapsed one by default"

    # The per-image search on Results offers the healthiest checkpoint first.
    from busadv.app.checkpoints import checkpoint_infos, healthiest

    ranked = [i.name for i in healthiest(checkpoint_infos())]
    assert ranked[-1] == extra.stem and ranked[0] == standard.stem


def test_lesion_outline_and_correlation_are_explained_in_words(app_checkpoints):
    at = open_app(EXPLORER)
    at.select_slider(key="eps").set_value(16 / 255).run()
    said = texts(at)
    assert "White outline: the lesion" in said  # phantoms have lesion outlines
    kept = [c for c in at.markdown if c.value.startswith("#### r = ") or c.value == "#### —"]
    assert kept, "the correlation readout"
    assert re.search(r"same places|attention moved|looks where it did not before|no evidence", said)

    at.radio(key="source").set_value("Upload your own").run()
    at.file_uploader(key="upload").set_value(("scan.png", png_bytes(), "image/png")).run()
    assert not at.exception
    assert "White outline: the lesion" not in texts(at), "no outline is drawn, so none is named"


def test_the_strip_is_in_increasing_order(app_checkpoints):
    at = open_tab(open_app(EXPLORER), "ε strip")
    heads = [m.value.split("  \n")[0] for m in at.markdown if m.value.startswith("**clean") or
             m.value.startswith("**ε = ")]
    values = [0.0] + [float(re.search(r"ε = ([0-9.]+)", h).group(1)) for h in heads[1:]]
    assert values == sorted(values) and len(values) == 8, heads


# ------------------------------------------------------------------------------------------- hostile text

EVIL = "evil.invalid"
HOSTILE_CLASSES = [f"[m](http://{EVIL}/a)", f"<img src=http://{EVIL}/p>", f"![p](http://{EVIL}/q.png)"]


def _markup_leaks(at) -> list[str]:
    """Markdown links/images or raw HTML tags naming the hostile host, in any element that renders Markdown, and
    any unescaped tag in a chart's text."""
    found = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "title", "subheader"):
        for element in getattr(at, kind):
            value = str(element.value)
            if re.search(r"(?<!\\)\]\((?!\\)", value) and EVIL in value or re.search(r"(?<!\\)<(a|img)\b", value):
                found.append(value)
    for widget in list(at.selectbox) + list(at.radio) + list(at.get("segmented_control")):
        for option in getattr(widget, "options", []):
            text = str(option)
            if EVIL in text and (re.search(r"(?<!\\)\]\(", text) or re.search(r"(?<!\\)<img", text)):
                found.append(text)
    for element in at.get("plotly_chart"):
        spec = element.proto.spec
        if re.search(r"<(a|img)\b[^>]*" + re.escape(EVIL), json.loads(json.dumps(spec))):
            found.append("chart: " + spec[:200])
    return found


@pytest.mark.hostile
def test_link_parameters_are_shown_as_text(app_checkpoints):
    from streamlit.testing.v1 import AppTest

    from tests.test_app import APP

    hostile = f"[x](http://{EVIL}/a) ![p](http://{EVIL}/p.png) <img src=http://{EVIL}/h.png> :red[r] `code"
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.switch_page(EXPLORER)
    for key in ("model", "image", "attack", "eps"):
        at.query_params[key] = hostile
    at.run()
    assert not at.exception
    said = texts(at)
    assert "not in the checkpoints folder" in said and "is not offered here" in said and "not usable" in said
    assert f"[x](http://{EVIL}/a)" in said, "the link's text is shown, as text"
    assert not _markup_leaks(at), _markup_leaks(at)


@pytest.mark.hostile
def test_checkpoint_class_names_are_shown_as_text(app_checkpoints):
    for path in app_checkpoints.glob("*.pt"):
        blob = torch.load(path, weights_only=True)
        blob["classes"] = HOSTILE_CLASSES
        torch.save(blob, path)
    at = open_app(EXPLORER)
    assert not at.exception
    if at.radio(key="source").value != "Upload your own" and not at.get("plotly_chart"):
        at.radio(key="source").set_value("Upload your own").run()  # the data's classes differ: an upload still works
    if at.get("file_uploader"):
        at.file_uploader(key="upload").set_value(("scan.png", png_bytes(), "image/png")).run()
    assert not at.exception
    assert not _markup_leaks(at), _markup_leaks(at)
    for tab in ("ε strip", "Compare", "Closer look"):
        if at.get("plotly_chart"):
            open_tab(at, tab)
            assert not _markup_leaks(at), (tab, _markup_leaks(at))
    spec = json.dumps([json.loads(c.proto.spec) for c in at.get("plotly_chart")])
    assert "&lt;img src=http://evil.invalid/p&gt;" in spec or not at.get("plotly_chart")
