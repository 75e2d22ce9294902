"""The benchmark on tiny inputs: its ratio helpers, its correctness checks and well-formed rows; never a time."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import asdict
from types import SimpleNamespace

import pytest
import torch

from busadv.attacks import fgsm, format_epsilon
from busadv.bench import apptest, cli, common, context, levers, memory, slider, study, sweep, training
from busadv.bench import fgsm as bench_fgsm
from busadv.bench.common import Row
from busadv.data import load_busi, split_dataset
from busadv.models import build_model


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors on a shared 2-core machine: one thread avoids OpenMP spin-waits against other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A BUSI-shaped folder of 15 phantom PNGs at 32 px, loaded as busadv loads BUSI."""
    folder = context.phantom_folder(total=15, size=32, folder=tmp_path_factory.mktemp("tiny-busi"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BUSADV_CACHE", str(tmp_path_factory.mktemp("cache")))
        data = load_busi(folder, 32)
    torch.manual_seed(0)
    model = build_model("simplecnn", 32).eval()
    return folder, data, model


def _well_formed(rows):
    assert rows
    for row in rows:
        assert isinstance(row, Row)
        assert row.section and row.name
        if row.status == "ok" and row.target:
            assert row.met in (True, False)
        json.dumps(asdict(row), default=str)  # the JSON report can hold it
    assert common.format_table(rows).count("\n") >= len(rows) + 1


# ---------------------------------------------------------------------------------------------- helpers

def test_interleaving_alternates_order():
    calls = []
    times = common.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=4, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4}
    assert all(t >= 0 for v in times.values() for t in v)


def test_paired_ratio_is_the_median_of_pairs_with_its_spread():
    assert common.paired_ratio([2.0, 4.0, 6.0], [1.0, 2.0, 3.0]) == (2.0, 0.0)
    # Pairs, not medians of each side: the slow outlier pair moves the ratio less than the sides' medians would.
    ratio, noise = common.paired_ratio([1.0, 2.0, 3.0, 4.0, 50.0], [1.0, 1.0, 1.0, 1.0, 1.0])
    assert ratio == 3.0 and noise > 0
    ratio, noise = common.paired_ratio([1.0], [0.0])  # a zero time cannot be divided by
    assert math.isnan(ratio) and math.isnan(noise)


def test_speedup_row_reports_times_or_rates():
    t = {"base": [2.0, 2.0, 2.0], "fast": [1.0, 1.0, 1.0]}
    row = common.speedup_row("levers", "x", t, "base", "fast")
    assert (row.busadv, row.reference, row.ratio, row.unit) == (1000.0, 2000.0, 2.0, "ms")
    rate = common.speedup_row("levers", "x", t, "base", "fast", unit="img/s", per=32)
    assert (rate.busadv, rate.reference, rate.ratio) == (32.0, 16.0, 2.0)


def test_judge_and_table():
    rows = [Row("x", "ratio row", 1.0, 2.0, "ms", 0.5, "<= 1.05").judge(),
            Row("x", "speed-up", 1.0, 2.0, "s", 2.9, ">= 3").judge(noise=0.2),
            Row("x", "exact", 0.1, 0.0, "", None, "<= 0", target_on="busadv").judge(),
            common.not_measured("x", "missing", "page not ready", "no page")]
    assert [r.met for r in rows] == [True, False, False, None]
    assert "within measured noise" in rows[1].note
    table = common.format_table(rows)
    assert "not measured: page not ready" in table and "NO" in table and "yes" in table
    assert common.fmt(1234.5, "ms") == "1,234 ms" and common.fmt(None) == "-" and common.fmt(0.001) == "1.00e-03"


def test_environment_is_restored(monkeypatch):
    monkeypatch.setenv("BUSADV_BENCH_A", "before")
    monkeypatch.delenv("BUSADV_BENCH_B", raising=False)
    import os

    with common.environment({"BUSADV_BENCH_A": "in", "BUSADV_BENCH_B": "in"}):
        assert os.environ["BUSADV_BENCH_A"] == os.environ["BUSADV_BENCH_B"] == "in"
    assert os.environ["BUSADV_BENCH_A"] == "before" and "BUSADV_BENCH_B" not in os.environ


def test_guarded_turns_an_exception_into_an_error_row():
    lines = []
    rows = common.guarded("s", "part", lambda: 1 / 0, log=lines.append)
    assert rows[0].status == "error" and "ZeroDivisionError" in rows[0].note
    assert lines[-1].startswith("    (part:")


# ---------------------------------------------------------------------------------------------- sections

def test_phantom_folder_is_busi_shaped(tiny):
    folder, data, _ = tiny
    assert data.counts() == {"benign": 8, "malignant": 4, "normal": 3}  # BUSI's proportions, at least 3 per class
    assert (folder / "malignant" / "malignant (1).png").is_file() and data.image_size == 32
    assert context.class_counts(780) == context.BUSI_PROPORTIONS


def test_fgsm_matches_reference_and_floor(tiny, monkeypatch):
    _, data, model = tiny
    x, y = data.floats(slice(0, 4)), data.labels[:4]
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # as if not installed
    rows = bench_fgsm.bench_fgsm(model, x, y, "tiny", repeats=1, warmup=0)
    _well_formed(rows)
    by_name = {r.name.split(" (")[0]: r for r in rows}
    assert by_name["FGSM / fwd+bwd floor"].busadv > 0
    assert by_name["FGSM images vs the written-out formula, max|diff|"].busadv == 0.0
    assert by_name["FGSM vs torchattacks.FGSM"].status == "not installed"
    adv = bench_fgsm.reference_fgsm(model, x, y, 8 / 255)
    assert torch.equal(adv, fgsm(model, x, y, 8 / 255))
    assert float((adv - x).abs().max()) <= 8 / 255 + 1e-6


def test_fgsm_against_torchattacks(tiny):
    pytest.importorskip("torchattacks")
    _, data, model = tiny
    rows = bench_fgsm.bench_fgsm(model, data.floats(slice(0, 4)), data.labels[:4], "tiny", repeats=1, warmup=0)
    row = next(r for r in rows if "torchattacks" in r.name)
    assert row.status == "ok" and row.reference > 0 and row.extra["max_abs_diff"] <= 2 * 8 / 255


def test_sweep_matches_naive_loop_and_the_batched_lever(tiny):
    _, data, model = tiny
    eps = (0.0, 2 / 255, 0.05, 0.5)
    naive = sweep.naive_sweep(model, data, eps, batch_size=8)
    assert sweep.busadv_sweep(model, data, eps, batch_size=8) == naive
    assert levers.batched_sweep(model, data, eps, batch_size=8) == naive
    rows = sweep.bench_sweep(model, data, eps, repeats=1, warmup=0, batch_size=8)
    _well_formed(rows)
    assert rows[1].busadv == 0.0 and rows[1].met
    assert rows[0].extra["accuracies"] == pytest.approx(naive)  # accumulated batch by batch


def test_probe_latency_rows(tiny):
    _, data, model = tiny
    rows = slider.bench_probe(model, data.floats(slice(0, 1)), int(data.labels[0]), "tiny", repeats=2, warmup=0)
    _well_formed(rows)
    assert rows[0].unit == "ms" and rows[0].busadv > 0 and rows[0].reference > 0
    assert "gradient recomputed" in rows[0].note


def test_batchnorm_folding_keeps_the_function():
    torch.manual_seed(0)
    model = build_model("resnet50", 32).eval()
    x = torch.rand(2, 1, 32, 32)
    folded = levers.fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        logits, folded_logits = model(x), folded(x)
    assert float((logits - folded_logits).abs().max()) <= 1e-4 * float(logits.abs().max())


def test_apptest_rows_without_the_app(tmp_path):
    rows = apptest.bench_apptest({}, root=tmp_path)
    assert rows[0].status == "not measured: app not ready" and apptest.EXPLORER_PAGE in rows[0].note


def test_select_slider_values_are_read_back_from_their_labels():
    options = [0.0, 1 / 255, 8 / 255, 0.05, 0.5]
    fake = SimpleNamespace(type="select_slider", options=[format_epsilon(e) for e in options],
                           format_func=format_epsilon, value=options[0])
    assert apptest.option_values(fake) == options
    moves = apptest.slider_values(fake, 5)
    assert all(v in options for v in moves)
    assert all(a != b for a, b in zip([fake.value, *moves], moves))  # every move changes the value
    plain = SimpleNamespace(type="slider", min=0.0, max=0.5, step=0.01, value=0.0)
    assert all(0.0 <= v <= 0.5 for v in apptest.slider_values(plain, 4))


def test_training_rows_and_same_images(tiny):
    folder, data, _ = tiny
    train_set, _ = split_dataset(data, 0.2, seed=0)
    # The reference loop decodes exactly the images busadv holds in memory.
    loader = training.reference_loader(folder, train_set.names, 32, batch_size=len(train_set))
    loader = torch.utils.data.DataLoader(loader.dataset, batch_size=len(train_set), shuffle=False)
    x, y = next(iter(loader))
    assert torch.equal(x, train_set.floats()) and torch.equal(y, train_set.labels)
    rows = training.bench_training(folder, train_set, "simplecnn", 32, batch_size=4, repeats=2, warmup=0,
                                   peak_flops=1e10)
    _well_formed(rows)
    names = " ".join(r.name for r in rows)
    assert "ImageFolder" in names and "FGSM training / standard" in names and "sgemm peak" in names
    flops = [r.extra["flops_per_image"] for r in rows if "flops_per_image" in r.extra]
    assert len(flops) == 2 and 0 < flops[0] < flops[1]  # FGSM training costs more FLOPs than standard


def test_study_measures_a_real_run_and_extrapolates(tiny):
    from busadv.experiments import ExperimentConfig, study_preset
    from busadv.training import MODES

    _, data, _ = tiny
    grid = study_preset(archs=["simplecnn"], image_sizes={"simplecnn": 32}, device="cpu")
    config = next(r for r in grid.runs() if MODES.get(r.mode).adversarial)
    timing = study.measure_run(dataclasses.replace(config, epochs=1), data, grid)
    assert timing.train_seconds > 0 and timing.eval_seconds > 0 and timing.prepare_seconds >= 0
    assert (timing.n_train, timing.n_test) == (12, 3) and timing.n_watch in (0, 3)
    assert timing.monitor_seconds > 0 or not timing.n_watch

    grid = ExperimentConfig(archs=["simplecnn"], modes=["standard", "fgsm"], train_epsilons=[0.05, 0.2, 0.5],
                            seeds=[0, 1, 2, 3, 4], epochs=10, image_sizes={"simplecnn": 32}, monitor_images=64)
    timings = {"standard": study.EpochTiming("standard", 1.0, 0.5, 2.0, 10, 5, 0),
               "fgsm": study.EpochTiming("fgsm", 2.0, 3.0, 2.0, 10, 5, 5, prepare_seconds=1.0)}
    seconds = study.extrapolate_study(grid, timings, n_train=20, n_test=5)
    # Clean pass 0.1 s/image; FGSM watch 3 - 0.5 = 2.5 s on 5 images. 5 standard runs x (10 x (2 + 0.5) + 2)
    # + 15 FGSM runs x (10 x ((1 + 2) x 2 + 0.5 + 2.5) + 2)
    assert math.isclose(seconds, 5 * 27 + 15 * 92)


def test_memory_child_reports_json(tiny, capsys, monkeypatch, tmp_path):
    folder, _, _ = tiny
    monkeypatch.setenv("BUSADV_CACHE", str(tmp_path))
    memory.child_main(["train", "--data", str(folder), "--size", "32", "--batches", "1", "--batch-size", "4"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["what"] == "train" and out["trained_images"] == 4 and out["images_per_s"] > 0
    assert out["self_ru_maxrss_mb"] > 0


def test_cli_help_and_section_names(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(f"  {name}" in text for name in [*cli.SECTIONS, "levers"])
    assert all(option in text for option in ("--data", "--json", "--sections", "--quick"))
    assert cli.parse_sections("sweep, levers") == ["sweep", "levers"]
    with pytest.raises(Exception, match="unknown section"):
        cli.parse_sections("sweep,nope")


def test_quick_run_of_cheap_sections(tiny, tmp_path, monkeypatch, capsys):
    """`python -m busadv bench --quick --sections sweep,study` end to end: the checkpoint, the table, the JSON."""
    folder, _, _ = tiny
    out = tmp_path / "bench.json"
    assert cli.main(["--quick", "--data", str(folder), "--sections", "sweep,study", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "targets met:" in printed and "evaluate() speed-up" in printed
    report = json.loads(out.read_text())
    assert report["quick"] and report["sections"] == ["sweep", "study"]
    assert {r["section"] for r in report["rows"]} == {"sweep", "study"}
    assert all(r["status"] == "ok" for r in report["rows"]), [r["note"] for r in report["rows"]]
    accuracy = next(r for r in report["rows"] if r["name"].startswith("sweep accuracies"))
    assert accuracy["busadv"] == 0.0 and accuracy["met"]
