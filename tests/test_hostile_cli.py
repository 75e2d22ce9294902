"""Command-line options a careless user types (issue 19 weak cases): refused at parse time, before any work."""

from __future__ import annotations

import pytest

# Imported before any test patches busadv.data or busadv.experiments: a module first imported under a patch
# would keep the patched function for the rest of the session.
import busadv.cli.commands  # noqa: F401
import busadv.experiments  # noqa: F401

pytestmark = pytest.mark.hostile

NO_WORK = ("busadv.experiments.train_job", "busadv.experiments.evaluate_job", "busadv.experiments.experiment_job",
           "busadv.report.report_job")


@pytest.fixture
def no_work(monkeypatch):
    for target in NO_WORK:
        monkeypatch.setattr(target, lambda *a, **k: pytest.fail("work started before the output path was checked"))


def _refused(argv: list[str], capsys) -> str:
    from busadv.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("argv", [
    ["train", "--csv", "/nonexistent/dir/x.csv"],
    ["train", "--json", "/nonexistent/dir/x.json"],
    ["evaluate", "model.pt", "--csv", "/nonexistent/dir/x.csv"],
    ["experiment", "--out", "/nonexistent/dir/rows.csv"],
    ["report", "--out", "/nonexistent/dir/study.html"],
    ["attack", "model.pt", "--out", "/nonexistent/dir/pair.png"],
])
def test_an_output_file_in_a_missing_folder_is_refused_before_the_work(no_work, capsys, argv):
    err = _refused(argv, capsys)
    assert "/nonexistent/dir" in err and "does not exist" in err
    from pathlib import Path

    assert not Path("/nonexistent").exists()


@pytest.mark.parametrize(("argv", "says"), [
    (["train", "--csv", "rows.txt"], ".csv or .json"),
    (["experiment", "--out", "rows.xlsx"], ".csv or .json"),
    (["report", "--out", "study.pdf"], ".html"),
    (["attack", "model.pt", "--out", "pair.jpg"], ".png"),
])
def test_an_output_file_with_an_ending_busadv_does_not_write_is_refused(no_work, capsys, argv, says):
    assert says in _refused(argv, capsys)


def test_an_output_path_that_is_a_folder_is_refused(no_work, capsys, tmp_path):
    assert "is a folder" in _refused(["train", "--csv", str(tmp_path)], capsys)


@pytest.mark.parametrize(("text", "says"), [("foo=16", "'foo' is not a model"), ("resnet50=4", "resnet50"),
                                            ("simplecnn=99999", "simplecnn"), ("simplecnn", "model=pixels")])
def test_image_sizes_for_unknown_models_or_impossible_sizes_are_refused(no_work, capsys, text, says):
    err = _refused(["experiment", "--image-sizes", text], capsys)
    assert "argument --image-sizes" in err and says in err


@pytest.mark.parametrize("command", [["train"], ["experiment"]])
@pytest.mark.parametrize(("text", "says"), [("-1", "from 0 to 100000"), ("lots", "whole number of test images"),
                                            ("1e9", "whole number"), ("200000", "from 0 to 100000")])
def test_a_watch_size_that_is_not_a_count_of_test_images_is_refused(no_work, capsys, command, text, says):
    said = _refused(command + ["--watch-images", text], capsys)
    assert "--watch-images" in said and says in said, said


@pytest.mark.parametrize("command", [["train"], ["experiment"]])
@pytest.mark.parametrize(("text", "says"), [("0", "from 0.1 to 10"), ("nan", "from 0.1 to 10"),
                                            ("11", "from 0.1 to 10"), ("two", "must be a number"),
                                            ("1e9", "from 0.1 to 10")])
def test_a_malignant_weight_out_of_range_is_refused(no_work, capsys, command, text, says):
    said = _refused(command + ["--malignant-weight", text], capsys)
    assert "--critical-weight" in said and says in said, said


def test_control_characters_from_a_results_file_reach_the_terminal_written_out(tmp_path, capsys):
    """A recorded setting holding ESC sequences (retitle, recolour) is printed as text, never obeyed."""
    from busadv.cli import main
    from busadv.results import ResultRow, write_rows

    hostile = "x\x1b]0;pwned\x07\x1b[31mred\x9b2J"
    for name, augment, weight in (("reference.csv", "none", 1.0), ("candidate.csv", hostile, 2.0)):
        write_rows([ResultRow(run=f"{name}-{seed}", seed=seed, arch="simplecnn", train_mode="fgsm",
                              train_epsilon=8 / 255, augment=augment, critical_weight=weight, attack=attack,
                              test_epsilon=eps, balanced_accuracy=0.5, confusion=[[5, 0, 0], [0, 5, 0], [0, 0, 5]])
                    for seed in (0, 1) for attack, eps in (("none", 0.0), ("autoattack", 4 / 255))], tmp_path / name)
    assert main(["compare", str(tmp_path / "candidate.csv"), str(tmp_path / "reference.csv")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out
    assert "augment x\\x1b]0;pwned\\x07\\x1b[31mred\\x9b2j (the reference's: none)" in out


def test_terminal_text_writes_controls_out_and_keeps_lines_and_the_bar_redraw():
    from busadv.cli.output import CLEAR_LINE, terminal_text

    assert terminal_text("a\tb\nc\rd") == "a\tb\nc\rd"
    assert terminal_text(f"\r[###] 50%{CLEAR_LINE}") == f"\r[###] 50%{CLEAR_LINE}"
    assert terminal_text("\x00\x1b[2J\x7f") == "\\x00\\x1b[2J\\x7f"
