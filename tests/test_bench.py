"""Smoke test of the benchmark's functions on tiny inputs: well-formed rows and correctness checks, no times."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from busadv import bench
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
    """A BUSI-shaped folder of 32 px phantom PNGs (5 per class), loaded as busadv loads BUSI."""
    folder = tmp_path_factory.mktemp("tiny-busi")
    for label, name in enumerate(("benign", "malignant", "normal")):
        bench._write_phantoms((str(folder), name, label, 0, 5, 32))
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BUSADV_CACHE", str(cache))
        data = load_busi(folder, 32)
    torch.manual_seed(0)
    model = build_model("simplecnn", 32).eval()
    return folder, data, model


def _well_formed(rows):
    assert rows
    for row in rows:
        assert isinstance(row, bench.Row)
        assert row.section and row.name
        if row.status == "ok" and row.target:
            assert row.met in (True, False)
        json.dumps(bench.asdict(row), default=str)  # the JSON report can hold it
    assert bench.format_table(rows).count("\n") >= len(rows) + 1


def test_interleaving_alternates_order():
    calls = []
    times = bench.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=4, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4}
    ratio, noise = bench.paired_ratio([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert ratio == 2.0 and noise == 0.0


def test_judge_and_table():
    rows = [bench.Row("x", "ratio row", 1.0, 2.0, "ms", 0.5, "<= 1.05").judge(),
            bench.Row("x", "speed-up", 1.0, 2.0, "s", 2.9, ">= 3").judge(noise=0.2),
            bench.Row("x", "absolute", 60.0, None, "ms", None, "<= 50", target_on="busadv").judge(),
            bench.Row("x", "missing", status="page not ready")]
    assert [r.met for r in rows] == [True, False, False, None]
    assert "within measured noise" in rows[1].note
    table = bench.format_table(rows)
    assert "page not ready" in table and "NO" in table and "yes" in table


def test_fgsm_matches_reference_and_floor(tiny, monkeypatch):
    _, data, model = tiny
    x, y = data.floats(slice(0, 4)), data.labels[:4]
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # as if not installed
    rows = bench.bench_fgsm(model, x, y, "tiny", repeats=1, warmup=0)
    _well_formed(rows)
    by_name = {r.name.split(" (")[0]: r for r in rows}
    assert by_name["FGSM / fwd+bwd floor"].busadv > 0
    assert by_name["FGSM images vs the written-out formula, max|diff|"].busadv == 0.0
    assert by_name["FGSM vs torchattacks.FGSM"].status == "not installed"
    adv = bench.reference_fgsm(model, x, y, 8 / 255)
    assert torch.equal(adv, bench.fgsm(model, x, y, 8 / 255))
    assert float((adv - x).abs().max()) <= 8 / 255 + 1e-6


def test_sweep_matches_naive_loop(tiny):
    _, data, model = tiny
    eps = (0.0, 2 / 255, 0.05, 0.5)
    naive = bench.naive_sweep(model, data, eps, batch_size=8)
    assert bench.busadv_sweep(model, data, eps, batch_size=8) == naive
    assert bench.evaluate_variant(model, data, eps, batch_size=8) == naive  # the lever variant too
    rows = bench.bench_sweep(model, data, eps, repeats=1, warmup=0, batch_size=8)
    _well_formed(rows)
    assert rows[1].busadv == 0.0 and rows[1].met
    assert rows[0].extra["accuracies"] == pytest.approx(naive)  # accumulated batch by batch


def test_probe_latency_rows(tiny):
    _, data, model = tiny
    rows = bench.bench_probe(model, data.floats(slice(0, 1)), int(data.labels[0]), "tiny", 50, repeats=2, warmup=0)
    _well_formed(rows)
    assert rows[0].unit == "ms" and rows[0].busadv > 0 and rows[0].reference > 0


def test_apptest_row_without_page():
    rows = bench.bench_apptest(None, {})
    assert rows[0].status == "page not ready"


def test_training_rows_and_same_images(tiny):
    folder, data, _ = tiny
    train_set, _ = split_dataset(data, 0.2, seed=0)
    # The reference loop decodes exactly the images busadv holds in memory.
    loader = bench.reference_loader(folder, train_set.names, 32, batch_size=len(train_set))
    loader = torch.utils.data.DataLoader(loader.dataset, batch_size=len(train_set), shuffle=False)
    x, y = next(iter(loader))
    assert torch.equal(x, train_set.floats()) and torch.equal(y, train_set.labels)
    rows, model = bench.bench_training(folder, train_set, "simplecnn", 32, batch_size=4, repeats=2, warmup=0,
                                       peak_flops=1e10)
    _well_formed(rows)
    names = " ".join(r.name for r in rows)
    assert "ImageFolder" in names and "FGSM training / standard" in names and "sgemm peak" in names
    flops = [r.extra["flops_per_image"] for r in rows if "flops_per_image" in r.extra]
    assert len(flops) == 2 and 0 < flops[0] < flops[1]  # FGSM training costs more FLOPs than standard
    assert not model.training


def test_study_extrapolation(tiny):
    from busadv.experiments import study_preset

    _, data, _ = tiny
    train_set, test_set = split_dataset(data, 0.2, seed=0)
    timing = bench.measure_epoch("simplecnn", 32, train_set, test_set, "standard", device="cpu")
    assert timing.train_seconds > 0 and timing.monitor_seconds >= 0 and timing.eval_seconds > 0
    config = study_preset(archs=["simplecnn"], image_sizes={"simplecnn": 32})
    timings = {"standard": bench.EpochTiming("standard", 1.0, 0.5, 2.0, 10, 5),
               "fgsm": bench.EpochTiming("fgsm", 2.0, 3.0, 2.0, 10, 5)}
    seconds = bench.extrapolate_study(config, timings, n_train=20, n_test=5)
    # 5 standard runs x (10 x (2 + 0.5) + 2) + 15 FGSM runs x (10 x (4 + 3) + 2)
    assert math.isclose(seconds, 5 * 27 + 15 * 72)


def test_flops_and_peak():
    model = build_model("simplecnn", 32)
    x, y = torch.rand(2, 1, 32, 32), torch.tensor([0, 1])
    standard = bench.training_flops_per_image(model, x, y, adversarial=False)
    assert standard > 0
    assert bench.sgemm_peak(n=64, repeats=1) > 0
