"""`python -m busadv frontier RESULTS...`: the study's question answered from result files on the command line.

The same answer the Results page and the study report give (busadv.results.tradeoff): which training epsilon
buys how much robustness at what clean cost, paired over seeds, and whether a small epsilon raises clean
accuracy. Files from several grids may be given together (e.g. one per training epsilon).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from busadv.cli import arguments

if TYPE_CHECKING:
    from busadv.results import ResultRow
    from busadv.results.tradeoff import TradeoffAnswer


def print_tradeoffs(answers: Sequence[TradeoffAnswer], stream: IO[str] | None = None) -> None:
    """Each frontier as a table, its rule and its two answers in words."""
    out = stream or sys.stdout
    for answer in answers:
        out.write(f"\n{answer.arch}, {answer.mode} against standard training, under {answer.condition} "
                  f"(paired over seeds; Δ = minus standard training):\n")
        table = answer.table()
        widths = {k: max(len(k), *(len(row[k]) for row in table)) for k in table[0]}
        out.write("  ".join(k.ljust(w) for k, w in widths.items()).rstrip() + "\n")
        for row in table:
            out.write("  ".join(row[k].ljust(w) for k, w in widths.items()).rstrip() + "\n")
        out.write(f"rule: {answer.rule}\n(a) {answer.best_text}\n(b) {answer.clean_text}\n")


def read_result_files(paths: Sequence[str]) -> list[ResultRow]:
    """The rows of result files named on the command line; ValueError naming the file that is missing or bad."""
    from busadv.results import read_rows_file

    rows: list[ResultRow] = []
    for text in paths:
        path = Path(text).expanduser()
        shown = text[:200]
        if not path.is_file():
            raise ValueError(f"{shown}: no such results file" if not path.exists() else
                             f"{shown} is not a regular file; give a results .csv or .json")
        try:
            rows += read_rows_file(path)
        except ValueError as exc:
            raise ValueError(f"{shown}: {exc}") from None
    return rows


def cmd_frontier(args: argparse.Namespace) -> int:
    from busadv import plots
    from busadv.results.tradeoff import epsilon_tradeoffs, unpaired_runs

    if len(args.attack) != 1:
        raise ValueError(f"--attack takes one attack, got {len(args.attack)}")
    rows = read_result_files(args.results)
    answers = epsilon_tradeoffs(rows, attack=args.attack[0], epsilon=args.epsilon)
    left_out = unpaired_runs(rows, attack=args.attack[0], epsilon=args.epsilon)
    for line in left_out:
        print(f"note: {line}", file=sys.stderr if not answers else sys.stdout)
    if not answers:
        print(f"error: no frontier in {len(rows)} rows: it needs standard training and an adversarial mode with "
              "the same recipe, each tested clean and under the chosen attack at the chosen ε "
              "(e.g. the rows of `experiment --preset frontier`)", file=sys.stderr)
        return 1
    print_tradeoffs(answers)
    if args.html:
        figure = plots.epsilon_tradeoff(answers[0])
        figure.write_html(args.html, include_plotlyjs=True, full_html=True)  # self-contained: no download
        print(f"wrote {args.html}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("frontier", help="which training epsilon buys how much robustness at what clean cost, "
                                        "from result files")
    p.add_argument("results", nargs="+", help="result files (.csv or .json) written by experiment or the app")
    p.add_argument("--attack", type=arguments.attack_list, default="autoattack",
                   help="the attack that measures robustness (default: autoattack)")
    p.add_argument("--epsilon", type=arguments.epsilon, default="4/255", help="its test epsilon (default: 4/255)")
    p.add_argument("--html", type=arguments.output_file(".html"), help="write the first frontier's picture")
    p.set_defaults(func=cmd_frontier)
