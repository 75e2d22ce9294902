"""The perturbation explorer's attention views, presenter mode, exports, deep links and transfer, via AppTest."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.test_app import EXPLORER, chart, chart_specs, open_app, open_tab, texts
from tests.test_explain import kaggle_busi

ROOT = Path(__file__).resolve().parent.parent


def _pictures(at) -> dict:
    return chart(at, "pictures-main")


def _readout(at, label: str) -> str:
    """The value of a readout tile (a caption over a '#### value' markdown) by its label."""
    captions = [c.value for c in at.caption]
    values = [m.value.removeprefix("#### ") for m in at.markdown if m.value.startswith("#### ")]
    labels = [c for c in captions if c in {"Clean prediction", "Smallest ε that flips it", "Attention kept",
                                          "Attention on the lesion", "Peak on the lesion"} or c.startswith("With ")]
    assert label in labels, f"no readout {label!r} among {labels}"
    return values[labels.index(label)]


def test_gradcam_overlays_follow_the_slider_with_the_attention_numbers(app_checkpoints):
    at = open_app(EXPLORER)
    at.select_slider(key="eps").set_value(4 / 255).run()
    small = _pictures(at)
    titles = [a["text"] for a in small["layout"]["annotations"]]
    assert len(small["data"]) == 6 and any("Looks at: clean" in t for t in titles)
    assert any("Looks at: perturbed" in t for t in titles) and any("Attention moved" in t for t in titles)
    at.select_slider(key="eps").set_value(0.5).run()
    assert not at.exception
    large = _pictures(at)
    sources = lambda spec: [d["source"] for d in spec["data"]]  # noqa: E731
    assert sources(small)[0] == sources(large)[0], "the clean input does not move"
    assert sources(small)[4] != sources(large)[4], "the perturbed image's Grad-CAM follows the slider"
    assert _readout(at, "Attention kept").startswith("r = ") or _readout(at, "Attention kept") == "—"
    # Phantoms know their lesion: the share of attention on it and the pointing game are shown (malignant image).
    share = _readout(at, "Attention on the lesion")
    assert "%" in share and "→" in share, share
    assert _readout(at, "Peak on the lesion").split(" → ")[0] in {"yes", "no", "no peak"}
    assert "White outline: the lesion" in texts(at)


def test_a_normal_image_says_why_there_is_no_lesion_score(app_checkpoints):
    at = open_app(EXPLORER)
    at.segmented_control(key="true_class").set_value("normal").run()
    assert _readout(at, "Attention on the lesion") == "unavailable"
    assert "normal image has no lesion to point at" in texts(at)


def test_the_strip_shows_where_the_model_looks_with_the_pointing_game(app_checkpoints):
    at = open_tab(open_app(EXPLORER), "ε strip")
    at.segmented_control(key="strip_shows").set_value("attention").run()
    assert not at.exception
    assert sum("peak on lesion:" in m.value for m in at.markdown) == 8


def test_grouped_attacks_mark_the_strongest_and_offer_scanner_variation(app_checkpoints):
    from busadv.app.explorer.choices import families
    from busadv.attacks import explorer_attacks, strongest_attack

    at = open_app(EXPLORER)
    grouped = families(explorer_attacks())
    assert list(grouped)[0] == "adversarial" and at.selectbox(key="attack_family").value == "adversarial"
    options = at.radio(key="attack").options
    strongest = strongest_attack(grouped["adversarial"])
    assert [o for o in options if o.endswith("· strongest offered")] == [
        next(a.label for a in explorer_attacks() if a.name == strongest) + " · strongest offered"]
    assert "is the strongest attack offered here" in texts(at)
    last = list(grouped)[-1]
    at.selectbox(key="attack_family").set_value(last).run()
    assert not at.exception and at.radio(key="attack").value == grouped[last][0]


def test_without_busi_masks_the_page_says_why(app_checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("BUSADV_DATA", str(kaggle_busi(tmp_path / "busi", masks=False)))
    at = open_app(EXPLORER)
    assert not at.exception
    assert _readout(at, "Attention on the lesion") == "unavailable"
    assert "this BUSI folder has no lesion masks" in texts(at)


def test_busi_masks_give_the_lesion_score(app_checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("BUSADV_DATA", str(kaggle_busi(tmp_path / "Dataset_BUSI_with_GT")))
    at = open_app(EXPLORER)
    assert not at.exception
    assert at.segmented_control(key="true_class").value == "malignant"
    share = _readout(at, "Attention on the lesion")
    assert "%" in share, share
    assert "the lesion is 25% of the image" in texts(at)  # the masks outline the top-left quarter


def test_presenter_mode_walks_four_steps_on_the_first_screen_alone(app_checkpoints):
    at = open_app(EXPLORER)
    at.toggle(key="presenter").set_value(True).run()
    assert not at.exception
    page = texts(at)
    assert "Step 1 of 4: The image, as the model sees it" in page
    assert not at.select_slider, "presenter mode has no server slider: the steps (and the figure's own slider) set ε"
    assert list(chart_specs(at)) and all(cid.endswith("-stage") for cid in chart_specs(at)), \
        "presenter mode shows the first screen's figure and nothing else"
    assert not at.tabs and not at.get("download_button")
    assert at.button(key="presenter-prev").disabled
    stage = chart(at, "stage")
    assert stage["layout"]["sliders"][0]["active"] == 0, "step 1 is the clean image"
    titles = []
    for _ in range(3):
        at.button(key="presenter-next").click().run()
        assert not at.exception
        titles.append(next(m.value for m in at.markdown if m.value.startswith("### Step")))
    assert "Step 4 of 4" in texts(at) and at.button(key="presenter-next").disabled
    assert "A change too small to see" in titles[0] or "The smallest change" in titles[0]
    assert "The same size of" in titles[-1]
    at.button(key="presenter-prev").click().run()
    assert "Step 3 of 4" in texts(at)
    at.toggle(key="presenter").set_value(False).run()
    assert not at.exception and at.select_slider(key="eps").value == pytest.approx(4 / 255), "ε kept"


def test_presenter_plan():
    from busadv.app.explorer.presenter import plan

    steps = plan("fgsm", 14 / 255, "speckle")
    assert [s.key for s in steps] == ["clean", "small", "flip", "compare"]
    assert [s.epsilon for s in steps] == [0.0, 2 / 255, 14 / 255, 14 / 255]
    assert [s.attack for s in steps] == ["fgsm", "fgsm", "fgsm", "speckle"]
    assert plan("fgsm", 2 / 255, "noise")[1].epsilon == pytest.approx(1 / 255), "the small step stays below the flip"
    assert [s.key for s in plan("pgd", 1 / 255, "noise")] == ["clean", "flip", "compare"]
    never = plan("fgsm", None, "noise")
    assert never[2].epsilon == 0.5 and "No ε" in never[2].title and never[3].epsilon == 0.5


def test_equal_size_comparison_prefers_scanner_variation():
    from busadv.app.explorer.choices import equal_size_comparison
    from busadv.attacks import ATTACKS

    offered = [ATTACKS.get("fgsm"), ATTACKS.get("noise")]
    assert equal_size_comparison(offered) == "noise"
    corruptions = [a for a in ATTACKS if a.family == "corruption" and a.in_explorer]
    if corruptions:
        assert equal_size_comparison([*offered, *corruptions]) == corruptions[0].name


def test_export_buttons_and_their_files(app_checkpoints):
    at = open_app(EXPLORER)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download this comparison as PNG", "Download as HTML (works offline)"]


def test_deep_link_opens_the_named_model_image_attack_and_epsilon(app_checkpoints):
    names = sorted(p.stem for p in app_checkpoints.glob("*.pt"))
    fgsm_model = next(n for n in names if "-fgsm-" in n)
    at = open_app(EXPLORER)
    benign = at.segmented_control(key="true_class").set_value("benign").run().selectbox(key="image_index")
    wanted = benign.options[-1]

    linked = _open_link(model=fgsm_model, image=wanted, attack="pgd", eps="8/255")
    assert linked.selectbox(key="model").value == fgsm_model
    assert linked.segmented_control(key="true_class").value == "benign"
    assert linked.selectbox(key="image_index").format_func(linked.selectbox(key="image_index").value) == wanted
    assert linked.radio(key="attack").value == "pgd"
    assert linked.select_slider(key="eps").value == pytest.approx(8 / 255)
    assert "PGD" in texts(linked)
    assert dict(linked.query_params) == {"model": fgsm_model, "image": wanted, "attack": "pgd", "eps": "8/255"}, \
        "the address bar links to what is on screen"

    # Dragging the slider is never undone by the URL the page itself wrote a moment before.
    linked.select_slider(key="eps").set_value(16 / 255).run()
    assert linked.select_slider(key="eps").value == pytest.approx(16 / 255)
    assert linked.query_params["eps"] == "16/255"
    # A link followed from another page (the per-image list on Results) opens its case again.
    linked.switch_page("pages/3_Results.py").run()
    linked.switch_page(EXPLORER)
    linked.query_params.update(model=names[0], image=wanted, attack="fgsm", eps="0.054902")
    linked.run()
    assert not linked.exception and linked.selectbox(key="model").value == names[0]
    assert linked.select_slider(key="eps").value == pytest.approx(14 / 255), "0.054902 is 14/255"
    assert "nearest stop" not in texts(linked)

    bad = _open_link(model="no-such-model", eps="0.03")
    page = texts(bad)
    assert "not in the checkpoints folder" in page and "nearest stop" in page


def _open_link(**params: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    at.switch_page(EXPLORER)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_second_model_on_the_first_models_perturbed_image(app_checkpoints):
    at = open_app(EXPLORER)
    at.select_slider(key="eps").set_value(0.2).run()
    open_tab(at, "Compare")
    at.radio(key="compare_mode").set_value("transfer").run()
    assert not at.exception
    assert "Judged on the first model's FGSM image" in texts(at)
    compare = [cid for cid in chart_specs(at) if "compare-" in cid]
    assert len(compare) == 2
    second = json.loads(next(c.proto.spec for c in at.get("plotly_chart") if c.proto.id == compare[1]))
    assert "(transferred)" in second["data"][1]["name"]


def test_a_model_that_appears_while_the_page_is_open_is_used(app_checkpoint_files):
    at = open_app(EXPLORER)
    assert "No trained model yet" in texts(at)
    folder = Path(os.environ["BUSADV_CHECKPOINTS"])
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(app_checkpoint_files[0], folder / Path(app_checkpoint_files[0]).name)
    at.run()
    assert not at.exception and chart(at, "pictures-main")


def test_attention_command_line(app_checkpoint_files, capsys):
    from busadv.cli import main

    assert main(["attention", str(app_checkpoint_files[0]), "--epsilons", "0,8/255", "--limit", "12"]) == 0
    out = capsys.readouterr().out
    assert "peak on lesion" in out and "clean" in out and "FGSM ε=0.0314 (8/255)" in out
