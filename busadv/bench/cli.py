"""`python -m busadv bench`: how fast busadv is, measured against its floors and plain reference code.

Every comparison runs both sides in this one process, interleaved (A B, B A, A B, ...: noise and slow
drift on this shared machine hit both), after warm-up runs, and reports medians; a ratio is the median
of the per-pair ratios. No figure is judged as an absolute time: this table of ratios is how speed is judged.

Sections (--sections, comma-separated; all but levers by default):
  fgsm      FGSM against one forward+input-backward pass (its floor), the written-out formula, torchattacks
  sweep     evaluate() at 11 epsilons against a loop that runs FGSM from scratch per epsilon
  slider    a slider move against one forward pass (SimpleCNN, ResNet50); an AppTest rerun of the explorer
  train     training throughput against an ImageFolder + DataLoader loop; FGSM over standard; FLOPs vs sgemm
  study     the SimpleCNN study grid's time from one measured run_one epoch per mode (ResNet50 too on CUDA)
  memory    peak resident memory of training each model and of the app with ResNet50 loaded (subprocesses)
  startup   time to the first page of `streamlit run app.py`, with the data cache warm against cold
  scale     a small grid on the local pool, on Ray and one run at a time (same rows?); a cheaper watch;
            the study grid (20 runs x 10 epochs) measured end to end against 5 minutes (tens of minutes
            on a loaded 2-core machine; not in --quick)
  precision bf16 autocast against fp32: training img/s (SimpleCNN, ResNet50) and accuracy parity over seeds
  firststart  a fresh install's first page load to a flipping explorer, nothing clicked (headless Chromium)
  bounds    how memory and time grow for 10x the input: near-duplicate grouping, seed lists, CSV import
  levers    the measured effect of the speed choices not made: processes vs threads, image size,
            BatchNorm folding, batched sweep forwards (busadv/bench/levers.py says why these)

Data: --data, else $BUSADV_DATA, else the simulated phantoms written once as a BUSI-shaped folder.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from busadv.bench import (
    bounds,
    fgsm,
    first_start,
    levers,
    memory,
    precision,
    scale,
    slider,
    startup,
    study,
    sweep,
    training,
)
from busadv.bench.common import Row, format_table, guarded, machine_info
from busadv.bench.context import SIMPLE, Bench, Plan, resolve_data
from busadv.data import DatasetError, ImageSet
from busadv.settings import pick_device

SECTIONS: dict[str, Callable[[Bench], list[Row]]] = {
    "fgsm": fgsm.section, "sweep": sweep.section, "slider": slider.section, "train": training.section,
    "study": study.section, "memory": memory.section, "startup": startup.section,
    "scale": scale.section, "precision": precision.section, "firststart": first_start.section,
    "bounds": bounds.section,
}
ON_REQUEST: dict[str, Callable[[Bench], list[Row]]] = {"levers": levers.section}


def parse_sections(text: str | None) -> list[str]:
    if not text:
        return list(SECTIONS)
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [n for n in names if n not in SECTIONS and n not in ON_REQUEST]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown section(s) {', '.join(unknown) or '(none given)'}; "
                                         f"choose from {', '.join([*SECTIONS, *ON_REQUEST])}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m busadv bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="BUSI folder (default: $BUSADV_DATA, else simulated phantoms)")
    parser.add_argument("--quick", action="store_true", help="a run of a minute or two: fewer repeats and images")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--sections", type=parse_sections, default=list(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (or levers)")
    parser.add_argument("--phantoms", type=int, default=240, help="phantom images when no data folder is given")
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler tables of training")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--no-browser", action="store_true", help="skip the headless-Chromium startup row")
    return parser


def profile_training(data: ImageSet, adversarial: bool = False) -> str:
    from torch.profiler import ProfilerActivity, profile

    chunk = data.subset(torch.arange(min(len(data), 128)))
    config = training.train_config(SIMPLE, data.image_size, "fgsm" if adversarial else "standard")
    _, epoch = training.engine_steps(config, [chunk], torch.device("cpu"))
    epoch()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        epoch()
    return str(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def run_benchmark(args: argparse.Namespace) -> tuple[dict[str, Any], list[Row]]:
    started = time.perf_counter()
    info = machine_info()
    device = pick_device(args.device)
    info["device"] = str(device)
    print(f"busadv bench on {info['cpu_model']}, {info['logical_cpus']} logical CPUs, torch {info['torch']} "
          f"({info['torch_threads']} threads, {info['cpu_capability']}), device {device}"
          f"{' (quick)' if args.quick else ''}", flush=True)
    folder, simulated = resolve_data(args.data, args.phantoms)
    work = Path(tempfile.mkdtemp(prefix="busadv-bench-"))
    bench = Bench(Plan.make(args.quick), device, folder, simulated, work,
                  browser=not (args.no_browser or args.quick))
    rows: list[Row] = []
    try:
        t0 = time.perf_counter()
        data = bench.data(128)
        info["data"] = {"folder": str(folder), "simulated": simulated, "images": len(data),
                        "load_seconds_128": round(time.perf_counter() - t0, 2)}
        print(f"data: {len(data)} images from {folder}{' (phantoms)' if simulated else ''}", flush=True)
        for name in args.sections:
            print(f"[{time.perf_counter() - started:6.1f} s] {name} ...", flush=True)
            s = time.perf_counter()
            rows += guarded(name, f"{name} section", functools.partial({**SECTIONS, **ON_REQUEST}[name], bench),
                            log=functools.partial(print, flush=True))
            info.setdefault("section_seconds", {})[name] = round(time.perf_counter() - s, 1)
        if args.profile:
            train, _ = bench.split(128)
            for title, adversarial in (("standard", False), ("FGSM", True)):
                print(f"\n== torch.profiler: busadv {title} training ({SIMPLE}) ==\n"
                      + profile_training(train, adversarial))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info["total_seconds"] = round(time.perf_counter() - started, 1)
    return {"machine": info, "quick": args.quick, "sections": args.sections, "rows": [asdict(r) for r in rows]}, rows


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        memory.child_main(argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    try:
        report, rows = run_benchmark(args)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = report["machine"]
    print(f"\nmachine: {m['cpu_model']}, {m['logical_cpus']} logical CPUs, torch {m['torch']}, "
          f"{m['torch_threads']} torch threads (default), {m['cpu_capability']}, device {m['device']}; "
          f"data: {m['data']['images']} images{' (phantoms)' if m['data']['simulated'] else ''}; "
          f"{m['total_seconds']} s in all")
    print(format_table(rows))
    met = [r.met for r in rows if r.met is not None]
    print(f"\ntargets met: {sum(met)}/{len(met)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
        print(f"figures written to {args.json}")
    return 0
