"""`python -m busadv compare CANDIDATE REFERENCE`: did a change to training help, paired seed by seed?

The same pairing the frontier uses (busadv.results.comparison), for any two recipes: a lever, a selection rule,
a training mode, each run of one against the run of the other on the same seed, split and data.
"""

from __future__ import annotations

import argparse

from busadv.cli import arguments
from busadv.cli.frontier import read_result_files


def cmd_compare(args: argparse.Namespace) -> int:
    from busadv.results.comparison import compare_recipes

    if len(args.attack) != 1:
        raise ValueError(f"--attack takes one attack, got {len(args.attack)}")
    comparisons = compare_recipes(read_result_files([args.candidate]), read_result_files(args.reference),
                                  attack=args.attack[0], epsilon=args.epsilon)
    for comparison in comparisons:
        print("\n".join(comparison.lines()) + "\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="two recipes' result files, paired seed by seed: clean and robust balanced "
                                       "accuracy and malignant sensitivity, with 95%% intervals")
    p.add_argument("candidate", help="result file (.csv or .json) of the recipe being tried")
    p.add_argument("reference", nargs="+", help="result file(s) of the recipe it is compared with")
    p.add_argument("--attack", type=arguments.attack_list, default="autoattack",
                   help="the attack that measures robustness (default: autoattack)")
    p.add_argument("--epsilon", type=arguments.epsilon, default="4/255", help="its test epsilon (default: 4/255)")
    p.set_defaults(func=cmd_compare)
