"""`python -m busadv report --preset study --out study.html`: the seed study answered, as one HTML file."""

from __future__ import annotations

import argparse
from typing import Any

from busadv.cli import arguments
from busadv.cli.output import ProgressPrinter


def cmd_report(args: argparse.Namespace) -> int:
    from busadv.report import report_job

    config: dict[str, Any] = {"preset": args.preset, "out": args.out, "archs": args.models, "seeds": args.seeds,
                              "epochs": args.epochs, "image_sizes": args.image_sizes, "data": args.data,
                              "device": args.device, "run": not args.no_run, "autoattack": args.autoattack}
    result = report_job({k: v for k, v in config.items() if v is not None}, progress=ProgressPrinter())
    for finding in result["findings"]:
        trap = f" ({finding['trap']})" if finding["trap"] else ""
        print(f"[{finding['verdict']:>9}] {finding['claim']}{trap}")
    print(f"runs reused {result['reused']}, evaluated from checkpoints {result['evaluated']}, trained "
          f"{result['trained']}" + (f"; NOT RUN: {len(result['missing'])}" if result["missing"] else ""))
    print(f"report: {result['html']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="the seed study, run or reused, its findings judged, as one HTML file")
    arguments.data_arg(p)
    p.add_argument("--preset", choices=["study"], default="study")
    p.add_argument("--out", type=arguments.output_file(".html", ".htm"),
                   help="the .html file (default: $BUSADV_HOME/reports/study-<time>.html)")
    p.add_argument("--models", type=arguments.model_list, help="default: every registered model")
    p.add_argument("--seeds", type=arguments.seed_list, help="default 0-4")
    p.add_argument("--epochs", type=int)
    p.add_argument("--image-sizes", type=arguments.image_sizes, help="per model, e.g. resnet50=64 (CPU budgets)")
    p.add_argument("--autoattack", type=arguments.epsilon_list,
                   help="epsilons to run AutoAttack at (default 8/255,0.05; empty to skip: '')")
    p.add_argument("--no-run", action="store_true", help="only reuse stored runs; list what is missing")
    p.set_defaults(func=cmd_report)
