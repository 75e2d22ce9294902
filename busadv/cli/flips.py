"""`python -m busadv flips CHECKPOINT`: how little each held-out image needs to flip, class by class."""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from typing import Any

from busadv.cli import arguments
from busadv.cli.output import ProgressPrinter


def cmd_flips(args: argparse.Namespace) -> int:
    from busadv.attacks import attack_label, format_epsilon
    from busadv.experiments.workflows import flips_job

    config: dict[str, Any] = {"checkpoint": args.checkpoint, "attacks": args.attacks,
                              "max_epsilon": args.max_epsilon, "pgd_steps": args.pgd_steps, "device": args.device}
    if args.data:
        config["data"] = args.data
    result = flips_job(config, progress=ProgressPrinter())
    flips = result["flips"]
    print(f"test images: {result['test_images']}")
    by: dict[tuple[str, str], list[float | None]] = defaultdict(list)
    for f in flips:
        by[(f["attack"], f["label"])].append(f["flip_epsilon"])
    print(f"{'attack':<24} {'true class':<11} {'images':>6} {'median flip ε':>16} {'never flip':>11}")
    for (attack, label), values in sorted(by.items()):
        found = [v for v in values if v is not None]
        median = format_epsilon(statistics.median(found)) if found else "-"
        print(f"{attack_label(attack):<24} {label:<11} {len(values):>6} {median:>16} {len(values) - len(found):>11}")
    first = sorted((f for f in flips if f["flip_epsilon"] is not None and f["label"] == f["clean_prediction"]),
                   key=lambda f: f["flip_epsilon"])[: args.top]
    print(f"\nthe {len(first)} correctly diagnosed images that flip first:")
    for f in first:
        print(f"  {f['name']:<36} {f['label']:<10} -> {f['flipped_to']:<10} at ε={format_epsilon(f['flip_epsilon'])} "
              f"({attack_label(f['attack'])})")
    print(f"results store: {result['results_file']}")
    arguments.write_files(flips, args.csv)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = arguments.checkpoint_command(sub, "flips", "the smallest epsilon that flips each held-out image (FGSM, PGD)")
    p.add_argument("--attacks", type=arguments.attack_list, default="fgsm,pgd",
                   help="fgsm, fgsm-pred, noise (scanned exactly) and pgd (bisection)")
    p.add_argument("--max-epsilon", type=arguments.epsilon, default="0.5", help="search up to this epsilon")
    p.add_argument("--pgd-steps", type=int, default=10)
    p.add_argument("--top", type=int, default=10, help="list this many images that flip first")
    p.add_argument("--csv", type=arguments.rows_file, help="write every image's flip epsilon (.csv or .json)")
    p.set_defaults(func=cmd_flips)
