"""`--sections precision`: bf16 autocast against fp32, for speed and for accuracy (busadv.training.precision).

On a CPU without AMX-BF16 or AVX512-BF16 the bf16 side is emulated: it is measured anyway, so the table
shows what the guard in busadv.training.precision saves. Accuracy parity is judged against seed noise:
the bf16 mean may differ from the fp32 mean by at most two standard deviations of the fp32 seeds.
The CUDA rows run where a GPU is present and say "no CUDA here" elsewhere.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
from collections.abc import Callable, Sequence

import torch

from busadv.bench.common import Row, guarded, interleaved, not_measured, speedup_row
from busadv.bench.context import RESNET, SIMPLE, Bench
from busadv.bench.training import engine_steps, train_config
from busadv.data import ImageSet, split_dataset, stratified_subset
from busadv.evaluation import evaluate
from busadv.training import TrainConfig, train_model
from busadv.training.precision import NATIVE_CPU_FLAGS, bf16_support, cpu_flags, forced_autocast

SECTION = "precision"


def _sides(device: torch.device) -> dict[str, Callable[[], contextlib.AbstractContextManager]]:
    return {"fp32": contextlib.nullcontext, "bf16": lambda: forced_autocast(device)}


def _in(context: Callable[[], contextlib.AbstractContextManager], step: Callable[[], object]) -> None:
    with context():
        step()


def training_speed(arch: str, size: int, data: ImageSet, batch: int, repeats: int, device: torch.device) -> Row:
    """Training img/s of one model, fp32 against bf16 autocast, on the same images (interleaved steps)."""
    chunk = stratified_subset(data, batch, seed=0)
    config = train_config(arch, size, batch_size=batch, device=device)
    steps: dict[str, Callable[[], object]] = {}
    for name, context in _sides(device).items():
        steps[name] = functools.partial(_in, context, engine_steps(config, [chunk], device)[1])
    times = interleaved(steps, repeats, warmup=1, device=device)
    native, reason = bf16_support(device)
    return speedup_row(SECTION, f"training {arch} {size}px on {device.type}: bf16 autocast vs fp32", times, "fp32",
                       "bf16", unit="img/s", per=len(chunk),
                       note=f"batch {len(chunk)}; {'native' if native else 'EMULATED'}: {reason}")


def accuracies(data: ImageSet, seeds: Sequence[int], epochs: int, device: torch.device) -> dict[str, list[float]]:
    """Clean and FGSM (2/255) test accuracy per seed, trained and attacked in fp32 and under bf16 autocast."""
    out: dict[str, list[float]] = {f"{side} {what}": [] for side in ("fp32", "bf16") for what in ("clean", "fgsm")}
    for seed in seeds:
        train, test = split_dataset(data, 0.2, seed=seed)
        for side, context in _sides(device).items():
            config = TrainConfig.study(arch=SIMPLE, epochs=epochs, image_size=data.image_size, seed=seed, lr=2e-3,
                                 batch_size=16, device=device.type, monitor_images=0)
            with context():
                model = train_model(config, train).model
                clean, fgsm = evaluate(model, test, ["fgsm"], [2 / 255], device=device)
            out[f"{side} clean"].append(clean.accuracy)
            out[f"{side} fgsm"].append(fgsm.accuracy)
    return out


def parity_rows(data: ImageSet, seeds: Sequence[int], epochs: int, device: torch.device) -> list[Row]:
    found = accuracies(data, seeds, epochs, device)
    rows = []
    for what in ("clean", "fgsm"):
        fp32, bf16 = found[f"fp32 {what}"], found[f"bf16 {what}"]
        one_image = 1 / max(1, round(0.2 * len(data)))  # a single test image's worth: the floor of any noise
        noise = max(2 * statistics.stdev(fp32) if len(fp32) > 1 else 0.0, one_image)
        diff = statistics.mean(bf16) - statistics.mean(fp32)
        label = "clean" if what == "clean" else "FGSM 2/255"
        rows.append(Row(SECTION, f"SimpleCNN {data.image_size}px {label} test accuracy on {device.type}: bf16 vs fp32",
                        statistics.mean(bf16), statistics.mean(fp32), "", abs(diff), target=f"<= {noise:.3f}",
                        note=f"ratio = |bf16 mean - fp32 mean| over seeds {list(seeds)} ({epochs} epochs); target = 2 "
                             f"std of the fp32 seeds (seed noise; at least one test image); fp32 "
                             f"{[round(a, 3) for a in fp32]}, bf16 {[round(a, 3) for a in bf16]}", extra=found).judge())
    return rows


def section(bench: Bench) -> list[Row]:
    quick = bench.plan.quick
    native, reason = bf16_support("cpu")
    flags = ", ".join(f for f in (*NATIVE_CPU_FLAGS, "avx512f", "avx2", "fma", "f16c") if f in cpu_flags())
    rows = [Row(SECTION, "bf16 autocast on this CPU", status="native" if native else "unavailable here",
                note=f"{reason}; CPU flags that matter: {flags or 'none'}; busadv.training.precision.autocast keeps "
                     "fp32 here")]
    cpu = torch.device("cpu")
    parity_data = stratified_subset(bench.data(32 if quick else 64), 120 if quick else 240, seed=0)
    rows += guarded(SECTION, "SimpleCNN speed", lambda: [training_speed(SIMPLE, 128, bench.data(128), 32,
                                                                         2 if quick else 4, cpu)])
    rows += guarded(SECTION, "ResNet50 speed", lambda: [training_speed(RESNET, 224, bench.data(224), 2 if quick else 8,
                                                                        2 if quick else 3, cpu)])
    rows += guarded(SECTION, "accuracy parity", lambda: parity_rows(parity_data, (0, 1) if quick else (0, 1, 2),
                                                                    2 if quick else 4, cpu))
    if bench.device.type == "cuda":
        gpu = bench.device
        rows += guarded(SECTION, "CUDA speed", lambda: [training_speed(SIMPLE, 128, bench.data(128), 64, 5, gpu),
                                                        training_speed(RESNET, 224, bench.data(224), 32, 5, gpu)])
        rows += guarded(SECTION, "CUDA parity", lambda: parity_rows(parity_data, (0, 1, 2), 4, gpu))
    else:
        rows += [not_measured(SECTION, f"{what} on CUDA: bf16 vs fp32", "no CUDA here",
                              "run `python -m busadv bench --sections precision` on a CUDA machine")
                 for what in ("training SimpleCNN and ResNet50", "accuracy parity")]
    return rows
