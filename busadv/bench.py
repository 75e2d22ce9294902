"""`python -m busadv.bench`: how fast busadv is, measured against its floors and plain reference code.

Every comparison runs both sides in this one process, interleaved (A B, B A, A B, ...: noise and slow
drift on this shared machine hit both), after warm-up runs, and reports medians; a ratio is the median
of the per-pair ratios. No test asserts a time: this table is how speed is judged.

Sections (``--sections``):
  fgsm      FGSM against one forward+input-backward pass (its floor) and against torchattacks.FGSM
  sweep     evaluate() at 11 epsilons against a loop that runs FGSM from scratch per epsilon
  slider    PerturbationProbe latency for SimpleCNN and ResNet50, and an AppTest rerun of the explorer page
  train     training throughput against an ImageFolder + DataLoader loop; FGSM over standard; FLOPs vs sgemm peak
  study     the SimpleCNN study grid's wall time from one measured epoch of each mode (ResNet50 too on CUDA)
  memory    peak resident memory of training each model and of the app with ResNet50 loaded (subprocesses)
  startup   time to the first page of `streamlit run app.py`, cold and with the data cache warm
  levers    (not in the default run) the measured effect of each speed lever named in the report
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from busadv.attacks import STUDY_EPSILONS, Attack, fgsm
from busadv.data import CLASSES, ImageSet, load_busi, split_dataset
from busadv.models import Arch, build_model
from busadv.settings import PROJECT_ROOT, cache_dir

SECTIONS = ("fgsm", "sweep", "slider", "train", "study", "memory", "startup")
SWEEP_EPSILONS: tuple[float, ...] = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 0.05, 0.1, 0.2, 0.3, 0.5)
BUSI_PROPORTIONS = {"benign": 437, "malignant": 210, "normal": 133}
MB = 1024 * 1024


# ============================================================================ rows and the table

@dataclass
class Row:
    """One line of the table. `target_on` says which figure the target judges: the ratio or busadv's own."""

    section: str
    name: str
    busadv: float | None = None
    reference: float | None = None
    unit: str = ""
    ratio: float | None = None
    target: str = ""            # e.g. "<= 1.05"; "" for a figure shown for reference only
    target_on: str = "ratio"    # "ratio" or "busadv"
    met: bool | None = None
    status: str = "ok"          # ok, or why there is no figure: "not installed", "page not ready", ...
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def judge(self, noise: float | None = None) -> "Row":
        """Set `met` from the target; a miss smaller than the measured spread is marked as within noise."""
        if not self.target or self.status != "ok":
            return self
        value = self.ratio if self.target_on == "ratio" else self.busadv
        if value is None or not math.isfinite(value):
            return self
        op, limit = self.target.split()[0], float(self.target.split()[1])
        self.met = value <= limit if op == "<=" else value >= limit
        if not self.met and noise is not None and abs(value - limit) <= noise:
            self.note = (self.note + "; " if self.note else "") + f"miss within measured noise (+-{noise:.3g})"
        return self


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan"
    a = abs(value)
    if a == 0:
        text = "0"
    elif a >= 1000:
        text = f"{value:,.0f}"
    elif a >= 100:
        text = f"{value:.0f}"
    elif a >= 10:
        text = f"{value:.1f}"
    elif a >= 0.01:
        text = f"{value:.3g}"
    else:
        text = f"{value:.2e}"
    return f"{text} {unit}".strip()


def format_table(rows: Sequence[Row]) -> str:
    header = ("section", "name", "busadv", "reference", "ratio", "target", "met")
    lines = []
    for r in rows:
        if r.status != "ok":
            busadv, ref, ratio, met = r.status, "-", "-", "-"
        else:
            busadv, ref = _fmt(r.busadv, r.unit), _fmt(r.reference, r.unit)
            ratio = "-" if r.ratio is None else f"{r.ratio:.3g}"
            met = {True: "yes", False: "NO", None: "-"}[r.met]
        target = f"{'ratio' if r.target_on == 'ratio' else 'busadv'} {r.target}" if r.target else "(report)"
        lines.append((r.section, r.name, busadv, ref, ratio, target, met))
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(len(header))]
    widths[1] = min(widths[1], 58)
    out = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)),
           "  ".join("-" * w for w in widths)]
    for line, row in zip(lines, rows):
        out.append("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip())
        if row.note:
            out.append(" " * (widths[0] + 2) + "  note: " + row.note)
    return "\n".join(out)


# ============================================================================ timing

def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1,
                device: torch.device | None = None) -> dict[str, list[float]]:
    """Seconds per call of each function, the calls interleaved A B, B A, A B, ... after `warmup` rounds."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
            _sync(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(median of a_i / b_i, half the interquartile range of those ratios: the noise band)."""
    ratios = sorted(x / y for x, y in zip(a, b) if y > 0)
    if not ratios:
        return math.nan, math.nan
    if len(ratios) < 4:
        return median(ratios), (ratios[-1] - ratios[0]) / 2
    q = statistics.quantiles(ratios, n=4)
    return median(ratios), (q[2] - q[0]) / 2


# ============================================================================ machine

def machine_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    info = {"cpu_model": model, "logical_cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "mkldnn": torch.backends.mkldnn.is_available(),
            "python": platform.python_version(), "load_average_at_start": load,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    return info


def sgemm_peak(n: int = 2048, repeats: int = 5, device: torch.device | None = None) -> float:
    """Best FLOP/s of an n x n float32 matrix product: the machine's practical compute ceiling."""
    device = device or torch.device("cpu")
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    times = interleaved({"mm": lambda: a @ b}, repeats, warmup=2, device=device)["mm"]
    return 2 * n ** 3 / min(times)


def count_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


# ============================================================================ data

def _class_counts(total: int) -> dict[str, int]:
    whole = sum(BUSI_PROPORTIONS.values())
    counts = {c: max(3, round(total * n / whole)) for c, n in BUSI_PROPORTIONS.items()}
    return counts


def _write_phantoms(args: tuple[str, str, int, int, int, int]) -> None:
    """Phantoms start..stop-1 of one class as PNGs named like BUSI's files."""
    from PIL import Image

    from busadv.phantoms import phantom_image

    folder, name, label, start, stop, size = args
    target = Path(folder) / name
    target.mkdir(parents=True, exist_ok=True)
    for i in range(start, stop):
        path = target / f"{name} ({i + 1}).png"
        if not path.exists():
            rng = np.random.default_rng([0, label, i])
            Image.fromarray(phantom_image(rng, size, label), mode="L").save(path)


def phantom_folder(total: int = 240, size: int = 128) -> Path:
    """A BUSI-shaped folder of phantom PNGs (cached), so both sides of a comparison decode the same files."""
    counts = _class_counts(total)
    folder = cache_dir() / f"bench-phantoms-{size}px-{'-'.join(str(counts[c]) for c in CLASSES)}"
    marker = folder / ".complete"
    if marker.exists():
        return folder
    workers = max(1, os.cpu_count() or 1)
    jobs = []
    for label, name in enumerate(CLASSES):
        step = max(1, -(-counts[name] // workers))
        jobs += [(str(folder), name, label, a, min(a + step, counts[name]), size) for a in range(0, counts[name], step)]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_phantoms, jobs))
    else:
        for job in jobs:
            _write_phantoms(job)
    marker.write_text("ok")
    return folder


def resolve_data(path: str | None, phantoms: int) -> tuple[Path, bool]:
    """(folder, simulated): --data, else $BUSADV_DATA, else a phantom folder written once to the cache."""
    chosen = path or os.environ.get("BUSADV_DATA") or None
    if chosen:
        return Path(chosen), False
    return phantom_folder(phantoms), True


# ============================================================================ 1. FGSM

def reference_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """The formula written out: clamp(x + eps * sign(grad_x CE(model(x), y)), 0, 1), model in eval mode."""
    was = model.training
    model.eval()
    try:
        xg = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(xg), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xg)
        return (x + eps * grad.sign()).clamp(0, 1).detach()
    finally:
        model.train(was)


def forward_backward_floor(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FGSM's floor: one forward pass and one backward pass to the input, nothing else."""
    xg = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(xg), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, xg)
    return grad


def torchattacks_fgsm(model: nn.Module, eps: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    try:
        import torchattacks
    except Exception:  # absent, or broken by its pinned requirements
        return None
    return torchattacks.FGSM(model, eps=eps)


def bench_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, label: str, eps: float = 8 / 255,
               repeats: int = 5, warmup: int = 1, use_torchattacks: bool = True) -> list[Row]:
    """FGSM vs its floor and vs torchattacks on one model and batch; also checks the images agree."""
    device = x.device
    model.eval()
    ta = torchattacks_fgsm(model, eps) if use_torchattacks else None
    fns: dict[str, Callable[[], Any]] = {
        "floor": lambda: forward_backward_floor(model, x, y),
        "busadv": lambda: fgsm(model, x, y, eps),
    }
    if ta is not None:
        fns["torchattacks"] = lambda: ta(x, y)
    times = interleaved(fns, repeats, warmup, device)
    ours = fgsm(model, x, y, eps)
    ref = reference_fgsm(model, x, y, eps)
    diff_ref = float((ours - ref).abs().max())
    b = median(times["busadv"])
    ratio, noise = paired_ratio(times["busadv"], times["floor"])
    rows = [Row("fgsm", f"FGSM / fwd+bwd floor ({label})", b * 1000, median(times["floor"]) * 1000, "ms",
                ratio, "<= 1.05", extra={"noise": noise, "times": times}).judge(noise),
            Row("fgsm", f"FGSM images vs the written-out formula, max|diff| ({label})", diff_ref, 0.0, "",
                None, "<= 0", target_on="busadv").judge()]
    if ta is None:
        rows.append(Row("fgsm", f"FGSM vs torchattacks.FGSM ({label})",
                        status="not installed" if use_torchattacks else "skipped",
                        note="pip install --no-deps torchattacks==3.5.1 (requirements-bench.txt)"))
        return rows
    theirs = ta(x, y)
    diff = float((ours - theirs).abs().max())
    differ = (ours != theirs)
    detail = ""
    if bool(differ.any()):
        # torchattacks takes the mean loss (gradients scaled by 1/batch), busadv the summed loss: where the input
        # gradient is tiny the two signs can disagree. Show how many pixels and how small their gradients are.
        grad = forward_backward_floor(model, x, y)
        detail = (f"; {int(differ.sum())} of {differ.numel()} pixels differ, where busadv's |grad| <= "
                  f"{float(grad[differ].abs().max()):.1e} (median |grad| {float(grad.abs().median()):.1e})")
    ratio, noise = paired_ratio(times["busadv"], times["torchattacks"])
    rows.insert(1, Row("fgsm", f"FGSM vs torchattacks.FGSM ({label})", b * 1000, median(times["torchattacks"]) * 1000,
                       "ms", ratio, "<= 1.0", note=f"same images: max|diff| = {diff:.3g}{detail}",
                       extra={"max_abs_diff": diff, "noise": noise}).judge(noise))
    return rows


# ============================================================================ 2. epsilon sweep

def naive_sweep(model: nn.Module, dataset: ImageSet, epsilons: Sequence[float], batch_size: int = 64) -> list[float]:
    """Accuracy at each epsilon, running FGSM from scratch for every epsilon (what evaluate() avoids)."""
    device = next(model.parameters()).device
    accuracies = []
    for eps in epsilons:
        correct = 0
        for start in range(0, len(dataset), batch_size):
            x = dataset.floats(slice(start, start + batch_size), device)
            y = dataset.labels[start:start + batch_size].to(device)
            x_adv = fgsm(model, x, y, eps)
            with torch.no_grad():
                correct += int((model(x_adv).argmax(1) == y).sum())
        accuracies.append(correct / max(len(dataset), 1))
    return accuracies


def busadv_sweep(model: nn.Module, dataset: ImageSet, epsilons: Sequence[float], batch_size: int = 64,
                 evaluate_fn: Callable | None = None) -> list[float]:
    """Accuracy at each epsilon from busadv.evaluation.evaluate (clean row for epsilon 0)."""
    from busadv.evaluation import evaluate

    results = (evaluate_fn or evaluate)(model, dataset, ["fgsm"], list(epsilons), batch_size=batch_size)
    by_eps = {r.epsilon: r.accuracy for r in results if r.attack == "fgsm"}
    clean = results[0].accuracy
    return [clean if e == 0 else by_eps[float(e)] for e in epsilons]


def bench_sweep(model: nn.Module, dataset: ImageSet, epsilons: Sequence[float] = SWEEP_EPSILONS,
                repeats: int = 3, warmup: int = 1, batch_size: int = 64, label: str = "") -> list[Row]:
    """evaluate() vs the naive loop, interleaved batch by batch; `repeats` full sweeps of the set per side."""
    model.eval()
    device = next(model.parameters()).device
    batches = [dataset.subset(torch.arange(i, min(i + batch_size, len(dataset))))
               for i in range(0, len(dataset), batch_size)]
    for _ in range(warmup):  # every later batch has the same shapes as the first
        busadv_sweep(model, batches[0], epsilons, batch_size)
        naive_sweep(model, batches[0], epsilons, batch_size)
    correct: dict[str, list[float]] = {"busadv": [0.0] * len(epsilons), "naive": [0.0] * len(epsilons)}
    count = {"busadv": iter(range(10 ** 9)), "naive": iter(range(10 ** 9))}

    def side(name: str, fn: Callable) -> Callable[[], None]:
        def run() -> None:
            i = next(count[name])
            batch = batches[i % len(batches)]
            accs = fn(model, batch, epsilons, batch_size)
            if i < len(batches):  # the first pass over the set gives the accuracies
                correct[name] = [c + a * len(batch) for c, a in zip(correct[name], accs)]
        return run

    times = interleaved({"busadv": side("busadv", busadv_sweep), "naive": side("naive", naive_sweep)},
                        repeats * len(batches), 0, device)
    nb = len(batches)
    per_sweep = {k: [sum(v[r * nb:(r + 1) * nb]) for r in range(repeats)] for k, v in times.items()}
    ratio, noise = paired_ratio(times["naive"], times["busadv"])
    acc = {k: [c / len(dataset) for c in v] for k, v in correct.items()}
    diff = max(abs(a - b) for a, b in zip(acc["busadv"], acc["naive"]))
    what = f"{len(epsilons)} eps, {len(dataset)} images{', ' + label if label else ''}"
    return [Row("sweep", f"evaluate() speed-up over naive FGSM loop ({what})", median(per_sweep["busadv"]),
                median(per_sweep["naive"]), "s", ratio, ">= 3",
                note="ratio = naive / busadv (median of per-batch ratios); figures = one full sweep",
                extra={"noise": noise, "accuracies": acc["busadv"], "naive_accuracies": acc["naive"]}).judge(noise),
            Row("sweep", "sweep accuracies vs naive loop, max|diff|", diff, 0.0, "", None, "<= 0", target_on="busadv",
                extra={"accuracies": acc["busadv"]}).judge()]


# ============================================================================ 3. slider

def bench_probe(model: nn.Module, image: torch.Tensor, label: int, name: str, limit_ms: float,
                repeats: int = 20, warmup: int = 2) -> list[Row]:
    """Latency from a new epsilon to new probabilities with the gradient cached, vs recomputing it."""
    from busadv.explorer import PerturbationProbe

    model.eval()
    device = next(model.parameters()).device
    probe = PerturbationProbe(model, image, label)
    probe.probabilities("fgsm", 1 / 255)  # the gradient sign is cached from here on
    grid = [k / 255 for k in range(1, 33)]
    counter = {"i": 0}

    def next_eps() -> float:
        counter["i"] += 1
        return grid[counter["i"] % len(grid)]

    def cached() -> None:
        probe.probabilities("fgsm", next_eps())

    def uncached() -> None:
        PerturbationProbe(model, image, label).probabilities("fgsm", next_eps())

    times = interleaved({"cached": cached, "uncached": uncached}, repeats, warmup, device)
    b, r = median(times["cached"]) * 1000, median(times["uncached"]) * 1000
    ratio, noise = paired_ratio(times["cached"], times["uncached"])
    return [Row("slider", f"slider latency, gradient cached ({name})", b, r, "ms", ratio, f"<= {limit_ms:g}",
                target_on="busadv", note="reference = gradient recomputed on every move",
                extra={"times_ms": [t * 1000 for t in times["cached"]]}).judge()]


def find_explorer_page(root: Path = PROJECT_ROOT) -> Path | None:
    """The explorer page's script in pages/."""
    for folder in ("pages",):
        found = sorted(p for p in (root / folder).glob("*.py") if "explor" in p.name.lower()) \
            if (root / folder).is_dir() else []
        if found:
            return found[0]
    return None


def _pick_slider(at: Any) -> Any | None:
    """The epsilon slider: an st.slider or st.select_slider whose label speaks of epsilon, else the first one."""
    sliders = list(at.slider) + list(at.select_slider)
    if not sliders:
        return None
    for s in sliders:
        text = str(getattr(s, "label", "")).lower()
        if "eps" in text or "ε" in text or "epsilon" in text:
            return s
    return sliders[0]


def _slider_values(slider: Any, count: int) -> list[Any]:
    """`count` new positions spread over the slider, each different from the one before."""
    fractions = [0.37, 0.71, 0.19, 0.53, 0.88, 0.11]
    current = slider.value
    values = []
    if getattr(slider, "type", "") == "select_slider":
        try:
            from busadv.ui import EPSILON_CHOICES as choices  # the options' values (AppTest sees only their labels)
        except Exception:
            choices = None
        options = list(choices) if choices else list(slider.options)
        for k in range(count):
            v = options[int(round(fractions[k % 6] * (len(options) - 1)))]
            if v == current:
                v = options[0] if current != options[0] else options[-1]
            values.append(v)
            current = v
        return values
    lo, hi = slider.min, slider.max
    step = slider.step or 0
    for k in range(count):
        fraction = fractions[k % 6]
        if isinstance(lo, int) and isinstance(hi, int):
            v = int(lo + round((hi - lo) * fraction))
        else:
            v = lo + (hi - lo) * fraction
            if step:
                v = lo + round((v - lo) / step) * step
            v = min(max(float(v), float(lo)), float(hi))
        if v == current:
            v = hi if current != hi else lo
        values.append(v)
        current = v
    return values


def bench_apptest(page: Path | None, env: dict[str, str], repeats: int = 3, timeout: float = 180) -> list[Row]:
    """A full AppTest rerun of the explorer page after a slider move (first run shown as the reference)."""
    name = "explorer page: AppTest rerun after a slider move"
    if page is None:
        return [Row("slider", name, status="page not ready", note="no pages/*explor*.py")]
    try:
        from streamlit.testing.v1 import AppTest
    except Exception as exc:
        return [Row("slider", name, status="not installed", note=f"streamlit: {exc}")]
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        # Pages link to app.py in their menu, so they run inside the app: open it, then switch to the page.
        at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=timeout)
        at.run()
        start = time.perf_counter()
        at.switch_page(str(page.relative_to(PROJECT_ROOT))).run()
        first = time.perf_counter() - start
        if at.exception:
            return [Row("slider", name, status="page not ready",
                        note=f"{page.name} raised: {str(at.exception[0].value)[:120]}")]
        slider = _pick_slider(at)
        if slider is None:
            return [Row("slider", name, status="page not ready", note=f"{page.name} has no st.slider yet")]
        times = []
        for v in _slider_values(slider, repeats + 1):
            slider = _pick_slider(at)
            start = time.perf_counter()
            slider.set_value(v).run()
            times.append(time.perf_counter() - start)
            if at.exception:
                return [Row("slider", name, status="page not ready",
                            note=f"slider move raised: {str(at.exception[0].value)[:120]}")]
        times = times[1:]  # the first move may build caches the later ones reuse
        return [Row("slider", name, median(times) * 1000, first * 1000, "ms", median(times) / first,
                    note=f"{page.name}, slider '{slider.label}'; reference = first run of the page",
                    extra={"times_ms": [t * 1000 for t in times]})]
    except Exception as exc:  # a page being written right now may break in any way
        return [Row("slider", name, status="page not ready", note=f"{type(exc).__name__}: {str(exc)[:120]}")]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ============================================================================ 4. training throughput

def _is_image(path: str) -> bool:
    p = Path(path)
    return p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"} and "_mask" not in p.stem.lower() \
        and not p.name.startswith(".")


def reference_loader(folder: Path, names: Sequence[str], image_size: int, batch_size: int, seed: int = 0,
                     root: Path | None = None) -> torch.utils.data.DataLoader:
    """torchvision ImageFolder + DataLoader over the same files, decoding PNGs every epoch (the plain loop)."""
    from torchvision import datasets, transforms

    from busadv.data import find_busi_root

    root = root or find_busi_root(folder)
    transform = transforms.Compose([transforms.Grayscale(1), transforms.Resize((image_size, image_size)),
                                    transforms.ToTensor()])
    full = datasets.ImageFolder(str(root), transform=transform, is_valid_file=_is_image)
    index = {os.path.relpath(path, root): i for i, (path, _) in enumerate(full.samples)}
    subset = torch.utils.data.Subset(full, [index[n] for n in names])
    return torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=True,
                                       generator=torch.Generator().manual_seed(seed))


def reference_train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: Iterable,
                          device: torch.device) -> float:
    """The textbook loop: NCHW tensors straight from the loader, cross-entropy, Adam."""
    model.train()
    total = 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total


def busadv_trainer(arch: str, image_size: int, train_set: ImageSet, mode: str = "standard", eps: float = 0.05,
                   batch_size: int = 32, device: torch.device | None = None, seed: int = 0,
                   channels_last: bool | None = None) -> tuple[nn.Module, Callable[[], Any]]:
    """(model, one-epoch function) set up exactly as busadv.training.train_model sets them up."""
    from busadv.training import TrainConfig, seed_everything, train_one_epoch

    device = device or torch.device("cpu")
    config = TrainConfig(arch=arch, mode=mode, epsilon=eps if mode != "standard" else 0.0, batch_size=batch_size,
                         image_size=image_size, seed=seed, device=device.type)
    generator = seed_everything(seed)
    model = build_model(arch, image_size).to(device)
    if device.type == "cpu" if channels_last is None else channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    return model, lambda: train_one_epoch(model, optimizer, train_set, config, generator, device)


def training_flops_per_image(model: nn.Module, x: torch.Tensor, y: torch.Tensor, adversarial: bool) -> float:
    """FLOPs of one training step per image: forward + backward (+ the FGSM forward and input backward).

    Counted with torch.utils.flop_counter on copies of the model; the FGSM part is counted as a forward and a
    backward to the input with the weights frozen (what autograd.grad(loss, x) computes), because the
    counter's module hooks do not support autograd.grad itself.
    """
    def train_step() -> None:
        m = copy.deepcopy(model).train()
        F.cross_entropy(m(x), y).backward()

    def attack_step() -> None:
        m = copy.deepcopy(model).eval()
        for p in m.parameters():
            p.requires_grad_(False)
        xg = x.detach().clone().requires_grad_(True)
        F.cross_entropy(m(xg), y, reduction="sum").backward()

    flops = count_flops(train_step)
    if adversarial:
        flops += count_flops(attack_step)
    return flops / len(x)


def bench_training(folder: Path, train_set: ImageSet, arch: str, image_size: int, batch_size: int = 32,
                   repeats: int = 12, warmup: int = 1, device: torch.device | None = None,
                   peak_flops: float | None = None, reference: bool = True, eps: float = 0.05,
                   label: str = "", distinct_batches: int = 6) -> tuple[list[Row], nn.Module]:
    """busadv standard, busadv FGSM and the plain ImageFolder loop on the same images, interleaved batch by batch.

    Each timed call is one training step of one side (its data loading included), so a burst of load from
    other processes on this shared machine lands on all three sides alike; `repeats` steps are timed per side.
    """
    device = device or torch.device("cpu")
    k = max(1, min(distinct_batches, len(train_set) // batch_size))
    pool = [train_set.subset(torch.arange(i * batch_size, (i + 1) * batch_size)) for i in range(k)]
    chunk = train_set.subset(torch.arange(k * batch_size))
    torch.manual_seed(0)
    std_model, _ = busadv_trainer(arch, image_size, chunk, "standard", batch_size=batch_size, device=device)
    fgsm_model, _ = busadv_trainer(arch, image_size, chunk, "fgsm", eps, batch_size=batch_size, device=device)
    from busadv.training import TrainConfig, seed_everything, train_one_epoch

    def stepper(model: nn.Module, mode: str) -> Callable[[], Any]:
        config = TrainConfig(arch=arch, mode=mode, epsilon=eps if mode != "standard" else 0.0, batch_size=batch_size,
                             image_size=image_size, device=device.type)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        generator = seed_everything(0)
        count = iter(range(10 ** 9))
        return lambda: train_one_epoch(model, optimizer, pool[next(count) % k], config, generator, device)

    fns: dict[str, Callable[[], Any]] = {"busadv": stepper(std_model, "standard"), "fgsm": stepper(fgsm_model, "fgsm")}
    if reference:
        torch.manual_seed(0)
        ref_model = build_model(arch, image_size).to(device)
        ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-3)
        loader = reference_loader(folder, chunk.names, image_size, batch_size)
        state: dict[str, Any] = {"it": iter(loader)}

        def ref_step() -> None:
            try:
                batch = next(state["it"])
            except StopIteration:
                state["it"] = iter(loader)
                batch = next(state["it"])
            reference_train_epoch(ref_model, ref_opt, [batch], device)

        fns["reference"] = ref_step
    times = interleaved(fns, repeats, warmup, device)
    tag = f"{arch} {image_size}px, batch {batch_size}, {repeats} steps each{', ' + label if label else ''}"
    rate = {key: batch_size / median(v) for key, v in times.items()}
    rows = []
    if reference:
        ratio, noise = paired_ratio(times["reference"], times["busadv"])
        rows.append(Row("train", f"training throughput vs ImageFolder loop ({tag})", rate["busadv"], rate["reference"],
                        "img/s", ratio, ">= 1.3", note="ratio = busadv img/s / reference img/s",
                        extra={"noise": noise, "times": times}).judge(noise))
    ratio, noise = paired_ratio(times["fgsm"], times["busadv"])
    rows.append(Row("train", f"FGSM training / standard, time per epoch ({tag})", median(times["fgsm"]) * 1000,
                    median(times["busadv"]) * 1000, "ms/step", ratio, "<= 2.1",
                    extra={"noise": noise, "fgsm_img_per_s": rate["fgsm"]}).judge(noise))
    if peak_flops:
        xb = chunk.floats(slice(0, batch_size), device)
        yb = chunk.labels[:batch_size].to(device)
        f_std = training_flops_per_image(std_model, xb, yb, False)
        f_adv = training_flops_per_image(std_model, xb, yb, True)
        rows.append(Row("train", f"fraction of sgemm peak, standard training ({arch})", f_std * rate["busadv"] / peak_flops,
                        f_std * rate["reference"] / peak_flops if reference else None, "", None,
                        note=f"{f_std / 1e9:.3g} GFLOP/img fwd+bwd x img/s / {peak_flops / 1e9:.0f} GFLOP/s "
                             f"(reference column: the ImageFolder loop)",
                        extra={"flops_per_image": f_std, "peak_flops": peak_flops}))
        rows.append(Row("train", f"fraction of sgemm peak, FGSM training ({arch})", f_adv * rate["fgsm"] / peak_flops,
                        None, "", None, note=f"{f_adv / 1e9:.3g} GFLOP/img (FGSM fwd+input bwd, then fwd+bwd)",
                        extra={"flops_per_image": f_adv}))
    std_model.eval()
    return rows, std_model


# ============================================================================ 5. study grid

@dataclass
class EpochTiming:
    mode: str
    train_seconds: float      # the batches of one epoch
    monitor_seconds: float    # what train_model does after them (test accuracy; FGSM+PGD watch in adversarial modes)
    eval_seconds: float       # run_one's final evaluation (clean + FGSM at the study epsilons)
    n_train: int
    n_test: int


def measure_epoch(arch: str, image_size: int, train_set: ImageSet, test_set: ImageSet, mode: str,
                  eps: float = 0.05, device: str = "auto") -> EpochTiming:
    """One real epoch of busadv.training.train_model (progress events split batches from monitoring)."""
    from busadv.evaluation import evaluate
    from busadv.training import TrainConfig, train_model

    stamps: list[tuple[float, int | None, str]] = []
    config = TrainConfig(arch=arch, mode=mode, epsilon=eps if mode != "standard" else 0.0, epochs=1,
                         image_size=image_size, device=device)
    result = train_model(config, train_set, test_set,
                         progress=lambda e: stamps.append((time.perf_counter(), e.epoch, e.message)))
    batch_stamps = [t for t, _, m in stamps if "batch" in m]
    first, last_batch, end = stamps[0][0], batch_stamps[-1], stamps[-1][0]
    dev = next(result.model.parameters()).device
    start = time.perf_counter()
    evaluate(result.model, test_set, ["fgsm"], list(STUDY_EPSILONS), device=dev)
    _sync(dev)
    eval_seconds = time.perf_counter() - start
    return EpochTiming(mode, last_batch - first, end - last_batch, eval_seconds, len(train_set), len(test_set))


def extrapolate_study(config: Any, timings: dict[str, EpochTiming], n_train: int, n_test: int,
                      monitor_images: int = 128) -> float:
    """Seconds for the whole grid: per run, epochs x (batches + monitoring) + one final evaluation."""
    total = 0.0
    for run in config.runs():
        t = timings["standard" if run.mode == "standard" else "fgsm"]
        train = t.train_seconds * n_train / t.n_train
        if run.mode == "standard":
            monitor = t.monitor_seconds * n_test / t.n_test
        else:  # the FGSM/PGD watch covers min(monitor_images, n_test) images
            monitor = t.monitor_seconds * min(monitor_images, n_test) / min(monitor_images, t.n_test)
        total += run.epochs * (train + monitor) + t.eval_seconds * n_test / t.n_test
    return total


def bench_study(dataset: ImageSet, arch: str, device: str = "auto", train_images: int | None = None,
                test_images: int | None = None, limit_minutes: float | None = 30.0, label: str = "",
                epochs_each: int = 1) -> list[Row]:
    from busadv.experiments import estimate_seconds, study_preset

    train_set, test_set = split_dataset(dataset, 0.2, seed=0)
    n_train, n_test = len(train_set), len(test_set)
    measured_train = train_set.subset(torch.arange(min(n_train, train_images or n_train)))
    measured_test = test_set.subset(torch.arange(min(n_test, test_images or n_test)))
    order = ["standard", "fgsm", "fgsm", "standard"][:2 * epochs_each] if epochs_each > 1 else ["standard", "fgsm"]
    measured: dict[str, list[EpochTiming]] = {"standard": [], "fgsm": []}
    for m in order:  # interleaved (A B B A) so that a burst of load does not fall on one mode only
        measured[m].append(measure_epoch(arch, dataset.image_size, measured_train, measured_test, m, device=device))
    timings = {m: EpochTiming(m, *(median([getattr(t, f) for t in ts]) for f in
                                   ("train_seconds", "monitor_seconds", "eval_seconds")), ts[0].n_train, ts[0].n_test)
               for m, ts in measured.items()}
    config = study_preset(archs=[arch], image_sizes={arch: dataset.image_size})
    seconds = extrapolate_study(config, timings, n_train, n_test)
    std = timings["standard"]
    engine = estimate_seconds(config, {arch: std.n_train / std.train_seconds}, n_train)
    runs = config.runs()
    fg = timings["fgsm"]
    per_epoch = {m: t.train_seconds * n_train / t.n_train for m, t in timings.items()}
    note = (f"{len(runs)} runs x {config.epochs} epochs on {n_train} train / {n_test} test images; per epoch: "
            f"standard {per_epoch['standard']:.1f} s + {std.monitor_seconds * n_test / std.n_test:.1f} s test, "
            f"FGSM {per_epoch['fgsm']:.1f} s + {fg.monitor_seconds * min(128, n_test) / min(128, fg.n_test):.1f} s "
            f"FGSM/PGD watch; reference = experiments.estimate_seconds (no monitoring)")
    where = label or device
    row = Row("study", f"study grid {arch} ({where}), extrapolated", seconds / 60, engine / 60, "min",
              seconds / engine if engine > 0 else None, f"<= {limit_minutes:g}" if limit_minutes else "",
              target_on="busadv", note=note, extra={k: asdict(v) for k, v in timings.items()})
    return [row.judge()]


# ============================================================================ 6. memory (subprocesses)

# The parent is large by now, and Linux carries a process's RSS high-water mark over fork and exec: a child
# started straight from here reports at least the parent's peak as its own ru_maxrss. A small launcher
# process starts the child instead, so the child's ru_maxrss (read with os.wait4, for that child alone,
# as RUSAGE_CHILDREN would report it) is its own.
_LAUNCHER = (
    "import json, os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True)\n"
    "out = p.stdout.read()\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "sys.stdout.write(out)\n"
    "print(json.dumps({'exit': os.waitstatus_to_exitcode(status), 'ru_maxrss_kb': usage.ru_maxrss}))\n"
)


def run_child(args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 600) -> dict[str, Any]:
    """Run `python -m busadv.bench --child ...` through the launcher; its JSON plus its own peak RSS in MB."""
    cmd = [sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "busadv.bench", "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT, env={**os.environ, **(env or {})},
                          timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or len(lines) < 2:
        raise RuntimeError(f"child {' '.join(args)} failed: {proc.stderr.strip()[-400:]}")
    launcher = json.loads(lines[-1])
    if launcher["exit"] != 0:
        raise RuntimeError(f"child {' '.join(args)} exited {launcher['exit']}: {proc.stderr.strip()[-400:]}")
    result = json.loads(lines[-2])
    result["maxrss_mb"] = launcher["ru_maxrss_kb"] * 1024 / MB
    return result


def _vm_hwm_mb() -> float | None:
    """This process's own resident high-water mark (Linux), a cross-check of ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return None


def child_main(argv: Sequence[str]) -> None:
    """Entry point of the memory subprocesses; prints one JSON line."""
    import resource

    parser = argparse.ArgumentParser(prog="busadv.bench --child")
    parser.add_argument("what", choices=["baseline", "train", "app"])
    parser.add_argument("--data")
    parser.add_argument("--arch", default="simplecnn")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--mode", default="standard")
    parser.add_argument("--checkpoint")
    parser.add_argument("--threads", type=int)
    a = parser.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    info: dict[str, Any] = {"what": a.what}
    if a.what in ("baseline", "train"):
        data = load_busi(a.data, a.size)
        info["images"] = len(data)
    if a.what == "train":
        train_set = data.subset(torch.arange(min(len(data), a.batches * a.batch_size)))
        _, epoch = busadv_trainer(a.arch, a.size, train_set, a.mode, batch_size=a.batch_size)
        start = time.perf_counter()
        epoch()
        info["images_per_s"] = len(train_set) / (time.perf_counter() - start)
    if a.what == "app":
        import streamlit  # noqa: F401  the app's own import

        from busadv.checkpoints import load_checkpoint
        from busadv.explorer import PerturbationProbe

        ckpt = load_checkpoint(a.checkpoint)
        image = torch.rand(1, 1, ckpt.image_size, ckpt.image_size)
        probe = PerturbationProbe(ckpt.model, image, 0)
        probe.probabilities("fgsm", 8 / 255)
        probe.strip("fgsm", [0.0, 2 / 255, 8 / 255, 0.05])
    info["self_ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB
    info["vm_hwm_mb"] = _vm_hwm_mb()
    print(json.dumps(info))


def bench_memory(folder: Path, resnet_checkpoint: Path | None, quick: bool) -> list[Row]:
    rows = []
    base = run_child(["baseline", "--data", str(folder), "--size", "128"])
    rows.append(Row("memory", "peak RSS: import torch + busadv, load data (baseline)", base["maxrss_mb"], None, "MB"))
    plans = [("simplecnn", 128, 32, 3 if not quick else 2)] + ([] if quick else [("resnet50", 224, 32, 1)])
    for arch, size, batch, batches in plans:
        for mode in ("standard", "fgsm"):
            if mode == "fgsm" and (quick or arch == "resnet50"):  # ResNet50's FGSM child: +300 MB, 45 s; left out
                continue
            try:
                res = run_child(["train", "--data", str(folder), "--arch", arch, "--size", str(size),
                                 "--batches", str(batches), "--batch-size", str(batch), "--mode", mode])
                rows.append(Row("memory", f"peak RSS: {mode} training {arch} {size}px, batch {batch}",
                                res["maxrss_mb"], base["maxrss_mb"], "MB",
                                res["maxrss_mb"] / base["maxrss_mb"],
                                note=f"reference = baseline; {res['images_per_s']:.1f} img/s in that child",
                                extra=res))
            except Exception as exc:
                rows.append(Row("memory", f"peak RSS: {mode} training {arch}", status="error", note=str(exc)[:200]))
    if resnet_checkpoint is None:
        rows.append(Row("memory", "peak RSS: app (streamlit + ResNet50 checkpoint)", status="skipped"))
        return rows
    try:
        import streamlit  # noqa: F401
    except Exception:
        rows.append(Row("memory", "peak RSS: app (streamlit + ResNet50 checkpoint)", status="not installed"))
        return rows
    res = run_child(["app", "--checkpoint", str(resnet_checkpoint)])
    rows.append(Row("memory", "peak RSS: app (import streamlit, load ResNet50, one probe)", res["maxrss_mb"],
                    base["maxrss_mb"], "MB", res["maxrss_mb"] / base["maxrss_mb"],
                    note="reference = baseline", extra=res))
    return rows


# ============================================================================ 7. startup

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback only)
        return response.status, response.read()


def _browser() -> Any | None:
    """A headless Chromium through Playwright, where both are installed (None otherwise)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        return None
    try:
        from playwright.sync_api import sync_playwright
    except Exception:
        return None
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=exe, args=["--headless", "--no-sandbox", "--disable-gpu",
                                                            "--disable-background-networking"])
    browser._bench_pw = pw  # type: ignore[attr-defined]
    return browser


def time_startup(env: dict[str, str], browser: Any | None = None, timeout: float = 120) -> dict[str, float]:
    """Seconds from `streamlit run app.py` to a healthy server, to GET / and (with a browser) to a rendered page."""
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
           str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    out: dict[str, float] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited ({proc.returncode}): {proc.stderr.read()[-300:]}")  # type: ignore
            if time.perf_counter() - start > timeout:
                raise TimeoutError("no healthy server within the time limit")
            try:
                if _get(base + "/_stcore/health", 1.0)[0] == 200:
                    break
            except Exception:
                time.sleep(0.05)
        out["health"] = time.perf_counter() - start
        status, body = _get(base + "/", 10.0)
        if status != 200 or b"<html" not in body.lower():
            raise RuntimeError(f"GET / answered {status}")
        out["page"] = time.perf_counter() - start
        if browser is not None:
            page = browser.new_page()
            try:
                page.goto(base + "/", wait_until="domcontentloaded", timeout=timeout * 1000)
                page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                                       timeout=timeout * 1000, state="attached")
                out["rendered"] = time.perf_counter() - start
                exc = page.query_selector('[data-testid="stException"]')
                if exc is not None:
                    out["exception"] = 1.0
            finally:
                page.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return out


def bench_startup(folder: Path, checkpoints: Path, use_browser: bool = True) -> list[Row]:
    name = "startup: streamlit run app.py to first page"
    if not (PROJECT_ROOT / "app.py").exists():
        return [Row("startup", name, status="app not ready", note="no app.py yet")]
    try:
        import streamlit  # noqa: F401
    except Exception:
        return [Row("startup", name, status="not installed")]
    browser = _browser() if use_browser else None
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="busadv-bench-cache-") as cache, \
                tempfile.TemporaryDirectory(prefix="busadv-bench-home-") as home:
            env = {"BUSADV_CACHE": cache, "BUSADV_DATA": str(folder), "BUSADV_CHECKPOINTS": str(checkpoints),
                   "BUSADV_HOME": home}
            cold = time_startup(env, browser)
            # Warm: the decoded-image cache filled for both model sizes, as after any first use.
            saved = os.environ.get("BUSADV_CACHE")
            os.environ["BUSADV_CACHE"] = cache
            try:
                for size in (128, 224):
                    load_busi(folder, size)
            finally:
                if saved is None:
                    os.environ.pop("BUSADV_CACHE", None)
                else:
                    os.environ["BUSADV_CACHE"] = saved
            warm = time_startup(env, browser)
        rows.append(Row("startup", "startup to first page (GET / after /_stcore/health)", warm["page"], cold["page"],
                        "s", warm["page"] / cold["page"], note="busadv = data cache warm, reference = cold (fresh "
                                                               "BUSADV_CACHE)", extra={"cold": cold, "warm": warm}))
        if "rendered" in cold and "rendered" in warm:
            rows.append(Row("startup", "startup to first rendered page (headless Chromium, script finished)",
                            warm["rendered"], cold["rendered"], "s", warm["rendered"] / cold["rendered"],
                            note="busadv = data cache warm, reference = cold" +
                                 ("; the page showed an exception" if cold.get("exception") or warm.get("exception") else "")))
        else:
            rows.append(Row("startup", "startup to first rendered page", status="skipped",
                            note="needs Playwright and Chromium; not in --quick or with --no-browser"))
    except Exception as exc:
        rows.append(Row("startup", name, status="error", note=f"{type(exc).__name__}: {str(exc)[:200]}"))
    finally:
        if browser is not None:
            browser.close()
            browser._bench_pw.stop()
    return rows


# ============================================================================ levers (--sections levers)

def evaluate_variant(model: nn.Module, dataset: ImageSet, epsilons: Sequence[float], batch_size: int = 64,
                     batched: bool = True) -> list[float]:
    """A copy of evaluate()'s FGSM path with the levers applied: inference_mode, all epsilons in one forward."""
    from busadv.attacks import apply_sign, eval_mode

    device = next(model.parameters()).device
    eps_list = [e for e in epsilons if e > 0]
    correct = {e: 0 for e in epsilons}
    with eval_mode(model):
        for start in range(0, len(dataset), batch_size):
            x = dataset.floats(slice(start, start + batch_size), device)
            y = dataset.labels[start:start + batch_size].to(device)
            xg = x.clone().requires_grad_(True)
            logits = model(xg)
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), xg)
            sign = grad.sign()
            if 0.0 in correct:
                correct[0.0] += int((logits.detach().argmax(1) == y).sum())
            with torch.inference_mode():
                if batched:
                    batch = torch.cat([apply_sign(x, sign, e) for e in eps_list])
                    preds = model(batch).argmax(1).view(len(eps_list), -1)
                    for e, p in zip(eps_list, preds):
                        correct[e] += int((p == y).sum())
                else:
                    for e in eps_list:
                        correct[e] += int((model(apply_sign(x, sign, e)).argmax(1) == y).sum())
    return [correct[e] / len(dataset) for e in epsilons]


def _speedup_row(name: str, t: dict[str, list[float]], base: str, lever: str, unit_scale: float, unit: str,
                 per: float | None = None, note: str = "") -> Row:
    """A lever row: busadv column = with the lever, reference = without; ratio = speed-up."""
    r, noise = paired_ratio(t[base], t[lever])
    value = (lambda k: per / median(t[k])) if per else (lambda k: median(t[k]) * unit_scale)
    return Row("levers", name, value(lever), value(base), unit, r,
               note=f"ratio = speed-up (noise +-{noise:.2g}){'; ' + note if note else ''}")


def _with_threads(n: int, fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)
    return run


def fold_bn_for_inference(model: nn.Module) -> nn.Module:
    """An eval-only copy of a ResNet50Classifier with BatchNorm folded into the convolutions, channels_last."""
    from torch.fx.experimental.optimization import fuse

    folded = copy.deepcopy(model).eval()
    if hasattr(folded, "net"):
        folded.net = fuse(folded.net)
    return folded.to(memory_format=torch.channels_last)


def fgsm_lean(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, eps: float) -> torch.Tensor:
    """busadv's FGSM with a leaner epilogue: no input clone, sign in place, one fused add, clamp in place."""
    from busadv.attacks import eval_mode

    with eval_mode(model), torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        logits = model(xg)
        target = logits.argmax(1).detach() if y is None else y
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, target, reduction="sum"), xg)
    return torch.add(x.detach(), grad.sign_(), alpha=float(eps)).clamp_(0.0, 1.0)


def lever_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int) -> list[Row]:
    same = torch.equal(fgsm_lean(model, x, y, 8 / 255), fgsm(model, x, y, 8 / 255))
    t = interleaved({"fgsm": lambda: fgsm(model, x, y, 8 / 255), "lean": lambda: fgsm_lean(model, x, y, 8 / 255),
                     "floor": lambda: forward_backward_floor(model, x, y)}, repeats, warmup=1)
    r, noise = paired_ratio(t["lean"], t["floor"])
    return [_speedup_row(f"fgsm: no clone, in-place sign, fused add+clamp ({len(x)} images)", t, "fgsm", "lean",
                         1000, "ms", note=f"identical images: {same}; lean / floor = {r:.3f} (+-{noise:.2g})")]


def lever_training(folder: Path, train_set: ImageSet, n: int, repeats: int) -> list[Row]:
    chunk = train_set.subset(torch.arange(min(len(train_set), n)))
    _, cl_epoch = busadv_trainer("simplecnn", 128, chunk, channels_last=True)
    _, nchw_epoch = busadv_trainer("simplecnn", 128, chunk, channels_last=False)
    torch.manual_seed(0)
    ref_model = build_model("simplecnn", 128)
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-3)
    loader = reference_loader(folder, chunk.names, 128, 32)
    cached = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(chunk.floats(), chunk.labels),
                                         batch_size=32, shuffle=True)
    cpu = torch.device("cpu")
    fns = {"cl": cl_epoch, "nchw": nchw_epoch,
           "png": lambda: reference_train_epoch(ref_model, ref_opt, loader, cpu),
           "tensor": lambda: reference_train_epoch(ref_model, ref_opt, cached, cpu)}
    if torch.get_num_threads() > 1:
        fns["one_thread"] = _with_threads(1, cl_epoch)
    t = interleaved(fns, repeats)
    n = len(chunk)
    rows = [_speedup_row("training: channels_last (busadv, simplecnn 128px)", t, "nchw", "cl", 1, "img/s", n),
            _speedup_row("training: decoded-tensor cache (plain loop, PNG decode -> tensors)", t, "png", "tensor", 1,
                         "img/s", n)]
    if "one_thread" in t:
        rows.append(_speedup_row(f"training: 1 torch thread instead of {torch.get_num_threads()}", t, "cl",
                                 "one_thread", 1, "img/s", n))
    return rows


def pool_before_relu(model: nn.Module) -> nn.Module:
    """SimpleCNN with each block's MaxPool moved before its ReLU: the same function (max and ReLU commute), the
    same weights and checkpoints, but the ReLU and its backward touch a quarter of the values."""
    m = copy.deepcopy(model)
    layers = list(m.features)
    for i in range(0, len(layers) - 2, 3):
        if isinstance(layers[i + 1], nn.ReLU) and isinstance(layers[i + 2], nn.MaxPool2d):
            layers[i + 1], layers[i + 2] = layers[i + 2], layers[i + 1]
    m.features = nn.Sequential(*layers)
    return m


def lever_block_order(train_set: ImageSet, n: int, repeats: int) -> list[Row]:
    chunk = train_set.subset(torch.arange(min(len(train_set), n)))
    base_model, base_epoch = busadv_trainer("simplecnn", 128, chunk)
    swapped_model, swapped_epoch = busadv_trainer("simplecnn", 128, chunk)
    swapped_model.features = pool_before_relu(swapped_model).features
    x = chunk.floats(slice(0, 8)).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        same = torch.equal(base_model.eval()(x), pool_before_relu(base_model).eval()(x))
    t = interleaved({"relu_pool": base_epoch, "pool_relu": swapped_epoch}, repeats)
    return [_speedup_row("training: SimpleCNN blocks conv-pool-relu instead of conv-relu-pool", t, "relu_pool",
                         "pool_relu", 1, "img/s", len(chunk), note=f"identical logits: {same}")]


def lever_slider_under_load(folder: Path, model: nn.Module, image: torch.Tensor, repeats: int) -> list[Row]:
    """The explorer while a background training job runs on the same cores: 1 vs the default torch threads."""
    from busadv.explorer import PerturbationProbe

    threads = torch.get_num_threads()
    if threads < 2:
        return []
    rows = []
    cmd = [sys.executable, "-m", "busadv.bench", "--child", "train", "--data", str(folder), "--arch", "simplecnn",
           "--size", "128", "--batches", "400"]
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=PROJECT_ROOT)
    try:
        time.sleep(8)  # let it import and start training
        grid = [k / 255 for k in range(1, 33)]
        counter = iter(range(10 ** 9))
        for arch, m, img in _slider_subjects(model, image):
            probe = PerturbationProbe(m, img, 0)
            probe.probabilities("fgsm", 1 / 255)
            move = lambda: probe.probabilities("fgsm", grid[next(counter) % 32])  # noqa: E731
            t = interleaved({"default": move, "one": _with_threads(1, move)},
                            repeats * (5 if arch == "simplecnn" else 2), warmup=1)
            rows.append(_speedup_row(f"slider during a background training job: 1 thread vs {threads} ({arch})", t,
                                     "default", "one", 1000, "ms"))
    finally:
        job.kill()
        job.wait()
    return rows


def lever_processes(folder: Path, n_batches: int) -> list[Row]:
    """Two runs side by side with one thread each vs one run with every thread: the grid's runs are independent."""
    threads = torch.get_num_threads()
    if threads < 2:
        return []
    args = ["train", "--data", str(folder), "--arch", "simplecnn", "--size", "128", "--batches", str(n_batches)]
    one = run_child([*args, "--threads", str(threads)])
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "busadv.bench", "--child", *args, "--threads", "1"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT) for _ in range(threads)]
    outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    both = sum(o["images_per_s"] for o in outs)
    return [Row("levers", f"study grid: {threads} runs x 1 thread in parallel vs 1 run x {threads} threads",
                both, one["images_per_s"], "img/s", both / one["images_per_s"],
                note=f"aggregate training img/s (each child times its own epoch; {time.perf_counter() - start:.0f} s wall)")]


def lever_sweep(model: nn.Module, sweep_set: ImageSet, repeats: int) -> list[Row]:
    out: dict[str, list[float]] = {}
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    E = SWEEP_EPSILONS
    t = interleaved({
        "evaluate": lambda: out.__setitem__("evaluate", busadv_sweep(model, sweep_set, E)),
        "naive": lambda: out.__setitem__("naive", naive_sweep(model, sweep_set, E)),
        "batched": lambda: out.__setitem__("batched", evaluate_variant(model, sweep_set, E, batched=True)),
        "inference": lambda: out.__setitem__("inference", evaluate_variant(model, sweep_set, E, batched=False)),
        "channels_last": lambda: out.__setitem__("channels_last", busadv_sweep(model_cl, sweep_set, E)),
        "naive_cl": lambda: out.__setitem__("naive_cl", naive_sweep(model_cl, sweep_set, E)),
    }, repeats)
    rows = []
    for key, label in (("batched", "sweep: inference_mode + all epsilons in one batched forward"),
                       ("inference", "sweep: inference_mode for the epsilon forwards"),
                       ("channels_last", "sweep: channels_last model (as load_checkpoint could return it)")):
        rows.append(_speedup_row(label, t, "evaluate", key, 1, "s",
                                 note=f"vs evaluate(); accuracies identical: {out[key] == out['evaluate']}"))
    r, noise = paired_ratio(t["naive_cl"], t["channels_last"])
    rows.append(Row("levers", "sweep: evaluate() vs naive loop, both on a channels_last model",
                    median(t["channels_last"]), median(t["naive_cl"]), "s", r,
                    note=f"ratio = naive / busadv (noise +-{noise:.2g}); cf. the sweep row's NCHW checkpoint"))
    return rows


def _slider_subjects(model: nn.Module, image: torch.Tensor):
    """(name, model, image) for the slider levers: the trained SimpleCNN, and a fresh ResNet50 at 224 px."""
    yield "simplecnn", model, image
    torch.manual_seed(0)
    yield "resnet50", build_model("resnet50").eval(), F.interpolate(image, size=(224, 224), mode="bilinear")


def lever_slider(model: nn.Module, image: torch.Tensor, repeats: int) -> list[Row]:
    from busadv.explorer import PerturbationProbe

    rows = []
    grid = [k / 255 for k in range(1, 33)]
    for arch, m, img in _slider_subjects(model, image):
        probe = PerturbationProbe(m, img, 0)
        probe.probabilities("fgsm", 1 / 255)
        variants = {"nchw": probe}
        cl = PerturbationProbe(copy.deepcopy(m).to(memory_format=torch.channels_last), img, 0)
        cl._signs = dict(probe._signs)
        variants["cl"] = cl
        if arch == "resnet50":
            folded = PerturbationProbe(fold_bn_for_inference(m), img, 0)
            folded._signs = dict(probe._signs)  # the sign from the model itself; only the forwards are folded
            variants["folded"] = folded
        counter = iter(range(10 ** 9))
        fns: dict[str, Callable[[], Any]] = {
            k: (lambda p=p: p.probabilities("fgsm", grid[next(counter) % 32])) for k, p in variants.items()}
        fns["one_thread"] = _with_threads(1, lambda: probe.probabilities("fgsm", grid[next(counter) % 32]))
        fns["batched8"] = lambda: probe.probabilities_many("fgsm", grid[:8])
        reps = repeats * (4 if arch == "simplecnn" else 2)
        t = interleaved(fns, reps, warmup=1)
        t["batched8"] = [v / 8 for v in t["batched8"]]
        rows.append(_speedup_row(f"slider: channels_last model ({arch})", t, "nchw", "cl", 1000, "ms"))
        if "folded" in t:
            p_ref = probe.probabilities("fgsm", 4 / 255)
            p_fold = variants["folded"].probabilities("fgsm", 4 / 255)
            rows.append(_speedup_row(f"slider: BatchNorm folded + channels_last forward copy ({arch})", t, "nchw",
                                     "folded", 1000, "ms",
                                     note=f"max|prob diff| {float(np.abs(p_ref - p_fold).max()):.1e}"))
        rows.append(_speedup_row(f"slider: 1 torch thread ({arch})", t, "nchw", "one_thread", 1000, "ms"))
        rows.append(_speedup_row(f"slider: 8 positions in one batched forward, per position ({arch})", t, "nchw",
                                 "batched8", 1000, "ms"))
    return rows


def lever_image_size(folder: Path, sizes: Sequence[int], seeds: Sequence[int], epochs: int,
                     train_images: int | None) -> list[Row]:
    """SimpleCNN at smaller sizes: test accuracy after the study's epochs, and the study grid's extrapolated time."""
    from busadv.experiments import study_preset
    from busadv.training import TrainConfig, train_model

    rows = []
    # Throughput first, interleaved: the sizes' epochs alternate, so machine load hits them alike.
    epochs_by_size = {}
    for size in sizes:
        tr, _ = split_dataset(load_busi(folder, size), 0.2, seed=0)
        chunk = tr.subset(torch.arange(min(len(tr), 128)))
        epochs_by_size[f"{size}px"] = busadv_trainer("simplecnn", size, chunk)[1]
    t = interleaved(epochs_by_size, 3)
    base = f"{max(sizes)}px"
    for size in sizes:
        if f"{size}px" != base:
            rows.append(_speedup_row(f"training: SimpleCNN at {size}px instead of {max(sizes)}px", t, base,
                                     f"{size}px", 1, "img/s", 128))
    for size in sizes:
        data = load_busi(folder, size)
        accs, rates = [], []
        for seed in seeds:
            tr, te = split_dataset(data, 0.2, seed=seed)
            if train_images:
                tr = tr.subset(torch.arange(min(len(tr), train_images)))
            result = train_model(TrainConfig(epochs=epochs, image_size=size, seed=seed, monitor_images=0), tr, te)
            accs.append(result.history[-1].test_accuracy)
            rates.append(len(tr) * epochs / result.seconds)
        tr, te = split_dataset(data, 0.2, seed=0)
        sub = tr.subset(torch.arange(min(len(tr), train_images or len(tr))))
        timings = {m: measure_epoch("simplecnn", size, sub, te, m, device="cpu") for m in ("standard", "fgsm")}
        config = study_preset(archs=["simplecnn"], image_sizes={"simplecnn": size})
        full = extrapolate_study(config, timings, len(tr), len(te))
        quiet = {m: EpochTiming(**{**asdict(t), "monitor_seconds": 0.0 if m == "fgsm" else t.monitor_seconds})
                 for m, t in timings.items()}
        no_watch = extrapolate_study(config, quiet, len(tr), len(te))
        rows.append(Row("levers", f"SimpleCNN {size}px: test accuracy after {epochs} epochs (seeds {list(seeds)})",
                        statistics.fmean(accs), None, "", None,
                        note=f"per seed {[round(a, 3) for a in accs]}; {statistics.fmean(rates):.1f} img/s incl. test pass",
                        extra={"accuracies": accs}))
        rows.append(Row("levers", f"study grid at SimpleCNN {size}px: without / with the per-epoch FGSM+PGD watch",
                        no_watch / 60, full / 60, "min", no_watch / full,
                        note="busadv column = monitor_images=0 (or watch at the last epoch only), reference = as now",
                        extra={k: asdict(v) for k, v in timings.items()}))
    return rows


def bench_levers(folder: Path, data128: ImageSet, quick: bool, repeats: int) -> list[Row]:
    """Each lever's measured effect, both sides interleaved as everywhere else; one failing lever skips only itself."""
    from busadv.checkpoints import load_checkpoint, save_checkpoint
    from busadv.training import TrainConfig, train_model

    train_set, test_set = split_dataset(data128, 0.2, seed=0)
    rows: list[Row] = []

    def guarded(name: str, fn: Callable[[], list[Row]]) -> None:
        s = time.perf_counter()
        try:
            new = fn()
        except Exception as exc:
            new = [Row("levers", name, status="error", note=f"{type(exc).__name__}: {str(exc)[:200]}")]
        for r in new:
            print("    " + format_table([r]).splitlines()[-1 if not r.note else -2].strip(), flush=True)
        print(f"    ({name}: {time.perf_counter() - s:.0f} s)", flush=True)
        rows.extend(new)

    guarded("training", lambda: lever_training(folder, train_set, 64 if quick else 128, repeats))
    guarded("block order", lambda: lever_block_order(train_set, 64 if quick else 128, repeats))
    guarded("processes", lambda: lever_processes(folder, 2 if quick else 4))
    chunk = train_set.subset(torch.arange(min(len(train_set), 128)))
    trained = train_model(TrainConfig(epochs=1, image_size=128, monitor_images=0), chunk).model
    with tempfile.TemporaryDirectory() as tmp:
        model = load_checkpoint(save_checkpoint(trained, Path(tmp) / "lever.pt", arch="simplecnn",
                                                image_size=128)).model
    sweep_set = test_set.subset(torch.arange(min(len(test_set), 64 if quick else len(test_set))))
    guarded("fgsm", lambda: lever_fgsm(model, sweep_set.floats(slice(0, 64)), sweep_set.labels[:64], 5 * repeats))
    guarded("sweep", lambda: lever_sweep(model, sweep_set, repeats))
    guarded("slider", lambda: lever_slider(model, sweep_set.floats(slice(0, 1)), repeats))
    guarded("slider under load", lambda: lever_slider_under_load(folder, model, sweep_set.floats(slice(0, 1)), repeats))
    guarded("image size", lambda: lever_image_size(folder, (64, 128), (0,) if quick else (0, 1), 2 if quick else 10,
                                                   64 if quick else None))
    return rows


# ============================================================================ profiling (--profile)

def profile_training(data: ImageSet, arch: str = "simplecnn", batches: int = 4, adversarial: bool = False) -> str:
    from torch.profiler import ProfilerActivity, profile

    chunk = data.subset(torch.arange(min(len(data), batches * 32)))
    _, epoch = busadv_trainer(arch, data.image_size, chunk, "fgsm" if adversarial else "standard")
    epoch()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        epoch()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)


# ============================================================================ the run

@dataclass
class Plan:
    """How much each section measures: the full run (under 10 minutes on 2 cores) or --quick (about a minute)."""

    quick: bool
    repeats: int                      # FGSM timing repeats
    warmup: int
    fgsm_batch: int
    resnet_batch: int
    sweep_images: int | None          # None: the whole test split
    sweep_repeats: int
    slider_repeats: int
    resnet_slider_repeats: int
    train_repeats: int                # timed training steps per side
    resnet_train_batch: int
    study_train_images: int | None    # None: the whole train split
    study_test_images: int | None
    study_epochs_each: int            # measured epochs per mode, interleaved standard/FGSM/FGSM/standard

    @classmethod
    def make(cls, quick: bool) -> "Plan":
        if quick:
            return cls(True, 2, 1, 16, 2, 16, 2, 8, 3, 3, 4, 32, 16, 1)
        return cls(False, 4, 1, 64, 4, None, 2, 20, 4, 12, 4, None, None, 1)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    plan = Plan.make(args.quick)
    sections = [s.strip() for s in args.sections.split(",")] if args.sections else list(SECTIONS)
    info = machine_info()
    from busadv.settings import pick_device

    device = pick_device(args.device)
    info["device"] = str(device)
    print(f"busadv bench on {info['cpu_model']}, {info['logical_cpus']} logical CPUs, torch {info['torch']} "
          f"({info['torch_threads']} threads, {info['cpu_capability']}), device {device}"
          f"{' (quick)' if args.quick else ''}", flush=True)
    folder, simulated = resolve_data(args.data, args.phantoms)
    t0 = time.perf_counter()
    data128 = load_busi(folder, 128)
    info["data"] = {"folder": str(folder), "simulated": simulated, "images": len(data128),
                    "load_seconds_128": round(time.perf_counter() - t0, 2)}
    print(f"data: {len(data128)} images from {folder}{' (phantoms)' if simulated else ''}", flush=True)
    data224: ImageSet | None = None

    def need224() -> ImageSet:
        nonlocal data224
        if data224 is None:
            data224 = load_busi(folder, 224)
        return data224

    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="busadv-bench-"))
    ckpt_dir = work / "checkpoints"
    ckpt_dir.mkdir()
    train_set, test_set = split_dataset(data128, 0.2, seed=0)
    trained: nn.Module | None = None
    peak = None

    def section(name: str, fn: Callable[[], list[Row]]) -> None:
        if name not in sections:
            return
        s = time.perf_counter()
        print(f"[{time.perf_counter() - started:6.1f} s] {name} ...", flush=True)
        try:
            new = fn()
        except Exception as exc:  # one broken section must not hide the others
            new = [Row(name, f"{name} section", status="error", note=f"{type(exc).__name__}: {str(exc)[:300]}")]
        for r in new:
            print("    " + format_table([r]).splitlines()[-1 if not r.note else -2].strip(), flush=True)
        rows.extend(new)
        info.setdefault("section_seconds", {})[name] = round(time.perf_counter() - s, 1)

    def do_train() -> list[Row]:
        nonlocal trained, peak
        peak = sgemm_peak(device=device)
        out = [Row("train", "sgemm peak (2048x2048 float32 matmul, best of 5)", peak / 1e9, None, "GFLOP/s")]
        r, trained = bench_training(folder, train_set, "simplecnn", 128, 32, plan.train_repeats, plan.warmup, device,
                                    peak)
        out += r
        if not args.quick or device.type == "cuda":
            train224, _ = split_dataset(need224(), 0.2, seed=0)
            r, _ = bench_training(folder, train224, "resnet50", 224, plan.resnet_train_batch, 2, 1, device, peak,
                                  reference=False, distinct_batches=1)
            out += r
        return out

    section("train", do_train)
    if trained is None:
        trained = build_model("simplecnn", 128).to(device).eval()
    from busadv.checkpoints import load_checkpoint, save_checkpoint

    simple_ckpt = save_checkpoint(trained, ckpt_dir / "simplecnn-standard-bench-s0.pt", arch="simplecnn",
                                  image_size=128, train_config={"arch": "simplecnn", "mode": "standard"},
                                  data={"simulated": simulated})
    resnet_ckpt: Path | None = None

    def resnet_checkpoint() -> Path:
        nonlocal resnet_ckpt
        if resnet_ckpt is None:
            torch.manual_seed(0)
            resnet_ckpt = save_checkpoint(build_model("resnet50").eval(), work / "resnet50-bench.pt", arch="resnet50",
                                          image_size=224, train_config={"arch": "resnet50", "mode": "standard"})
        return resnet_ckpt

    def do_fgsm() -> list[Row]:
        model = load_checkpoint(simple_ckpt, device=device).model
        n = min(plan.fgsm_batch, len(test_set))
        x, y = test_set.floats(slice(0, n), device), test_set.labels[:n].to(device)
        out = bench_fgsm(model, x, y, f"simplecnn 128px, {n} images", repeats=plan.repeats, warmup=plan.warmup)
        resnet = load_checkpoint(resnet_checkpoint(), device=device).model
        _, t224 = split_dataset(need224(), 0.2, seed=0)
        n = min(plan.resnet_batch, len(t224))
        x, y = t224.floats(slice(0, n), device), t224.labels[:n].to(device)
        out += bench_fgsm(resnet, x, y, f"resnet50 224px, {n} images", repeats=max(3, plan.repeats - 2),
                          warmup=plan.warmup)
        return out

    def do_sweep() -> list[Row]:
        model = load_checkpoint(simple_ckpt, device=device).model
        subset = test_set if plan.sweep_images is None else test_set.subset(torch.arange(min(plan.sweep_images,
                                                                                              len(test_set))))
        return bench_sweep(model, subset, SWEEP_EPSILONS, repeats=plan.sweep_repeats, warmup=1,
                           label="simplecnn checkpoint")

    def do_slider() -> list[Row]:
        model = load_checkpoint(simple_ckpt, device=device).model
        image, label = test_set.floats(slice(0, 1), device), int(test_set.labels[0])
        out = bench_probe(model, image, label, "simplecnn 128px", 50, plan.slider_repeats)
        resnet = load_checkpoint(resnet_checkpoint(), device=device).model
        _, t224 = split_dataset(need224(), 0.2, seed=0)
        out += bench_probe(resnet, t224.floats(slice(0, 1), device), int(t224.labels[0]), "resnet50 224px", 300,
                           plan.resnet_slider_repeats, warmup=1)
        env = {"BUSADV_DATA": str(folder), "BUSADV_CHECKPOINTS": str(ckpt_dir), "BUSADV_HOME": str(work / "home")}
        out += bench_apptest(find_explorer_page(), env, repeats=3 if not args.quick else 2)
        return out

    def do_study() -> list[Row]:
        out = bench_study(data128, "simplecnn", "cpu" if device.type == "cpu" else "cuda",
                          plan.study_train_images, plan.study_test_images, 30.0, epochs_each=plan.study_epochs_each)
        if device.type == "cuda":
            out += bench_study(need224(), "resnet50", "cuda", plan.study_train_images, plan.study_test_images, None,
                               label=torch.cuda.get_device_name(0))
        elif not args.quick:
            out.append(Row("study", "study grid resnet50 on GPU", status="no CUDA here",
                           note="run `python -m busadv.bench --sections study` on a CUDA machine"))
        return out

    def do_memory() -> list[Row]:
        need224()
        return bench_memory(folder, resnet_checkpoint(), args.quick)

    def do_startup() -> list[Row]:
        return bench_startup(folder, ckpt_dir, use_browser=not (args.no_browser or args.quick))

    section("fgsm", do_fgsm)
    section("sweep", do_sweep)
    section("slider", do_slider)
    section("study", do_study)
    section("memory", do_memory)
    section("startup", do_startup)
    if "levers" in sections:
        section("levers", lambda: bench_levers(folder, data128, args.quick, 2 if args.quick else 3))
    if args.profile:
        print("\n== torch.profiler: busadv standard training (simplecnn) ==\n" + profile_training(train_set))
        print("\n== torch.profiler: busadv FGSM training (simplecnn) ==\n" + profile_training(train_set, adversarial=True))
    shutil.rmtree(work, ignore_errors=True)
    info["total_seconds"] = round(time.perf_counter() - started, 1)
    return {"machine": info, "quick": args.quick, "sections": sections,
            "rows": [asdict(r) for r in rows], "_rows": rows}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        child_main(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m busadv.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="BUSI folder (default: $BUSADV_DATA, else simulated phantoms)")
    parser.add_argument("--quick", action="store_true", help="a minute-long run: fewer repeats and images")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--sections", help=f"comma-separated subset of {','.join(SECTIONS)} (or 'levers')")
    parser.add_argument("--phantoms", type=int, default=240, help="phantom images when no data folder is given")
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler tables of training")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--no-browser", action="store_true", help="skip the headless-Chromium startup row")
    args = parser.parse_args(argv)
    report = run_benchmark(args)
    rows = report.pop("_rows")
    m = report["machine"]
    print()
    print(f"machine: {m['cpu_model']}, {m['logical_cpus']} logical CPUs, torch {m['torch']}, "
          f"{m['torch_threads']} torch threads (default), {m['cpu_capability']}, device {m['device']}; "
          f"data: {m['data']['images']} images{' (phantoms)' if m['data']['simulated'] else ''}; "
          f"{m['total_seconds']} s in all")
    print(format_table(rows))
    met = [r for r in rows if r.met is not None]
    print(f"\ntargets met: {sum(r.met for r in met)}/{len(met)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
