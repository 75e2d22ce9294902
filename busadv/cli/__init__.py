"""`python -m busadv ...`: one command line for everything the dashboard does, plus jobs and the benchmark.

Every choice (models, training modes, attacks) is read from the registries, so a newly registered
entry appears here with no edit. Settings are checked before any work starts; errors users can fix
come out as one line naming the option, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any


def _typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type whose ValueError message reaches the user, prefixed by the option's name."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def build_parser() -> argparse.ArgumentParser:
    from busadv.attacks import ATTACKS, explorer_attacks, parse_epsilon, parse_epsilon_list
    from busadv.data.split import SPLIT_POLICIES
    from busadv.models import MODELS
    from busadv.registry import parse_name_list
    from busadv.training import CLASS_BALANCE, LABEL_SOURCES, MODES, parse_seed_list

    attack_names = ", ".join(ATTACKS.names())
    attacks = _typed(lambda t: parse_name_list(t, ATTACKS, "attacks"))
    epsilons = _typed(lambda t: parse_epsilon_list(t, "epsilons"))
    epsilon = _typed(parse_epsilon)
    seeds = _typed(parse_seed_list)
    models = _typed(lambda t: parse_name_list(t, MODELS, "models"))
    modes = _typed(lambda t: parse_name_list(t, MODES, "modes"))

    parser = argparse.ArgumentParser(prog="python -m busadv", description=(
        "Train, attack and evaluate breast-ultrasound classifiers under adversarial perturbations. "
        "Epsilons are in [0, 1] pixel scale and may be written as fractions: 8/255 = 0.031."))
    sub = parser.add_subparsers(dest="command", required=True)

    def data_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", help="BUSI folder (with benign/ malignant/ normal/, or one level up); "
                                      "default: $BUSADV_DATA, else simulated phantoms")
        p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")

    def recipe_args(p: argparse.ArgumentParser) -> None:
        """Recipe settings; left out, each takes the training mode's default (see the modes' descriptions)."""
        p.add_argument("--adv-labels", choices=LABEL_SOURCES,
                       help="labels adversarial training attacks; 'predicted' avoids label leaking")
        p.add_argument("--random-start", action=argparse.BooleanOptionalAction, default=None,
                       help="adversarial examples from a random start (Wong et al. 2020)")
        p.add_argument("--clean-mix", type=float, help="weight of the clean loss beside the adversarial loss, [0, 1)")
        p.add_argument("--warmup-epochs", type=int, help="ramp the training epsilon up from 0 over this many epochs")
        p.add_argument("--class-balance", choices=list(CLASS_BALANCE),
                       help="; ".join(f"{k}: {v}" for k, v in CLASS_BALANCE.items()))
        p.add_argument("--trades-beta", type=float, help="weight of TRADES' robustness term (trades mode)")
        p.add_argument("--split-policy", choices=list(SPLIT_POLICIES),
                       help="grouped: copies of an image stay on one side (default); random: the study's split")

    t = sub.add_parser("train", help="train one model, evaluate it and save a checkpoint")
    data_arg(t)
    t.add_argument("--model", default="simplecnn", choices=MODELS.names())
    t.add_argument("--mode", default="standard", choices=MODES.names(),
                   help="; ".join(f"{m.name}: {m.description}" for m in MODES))
    t.add_argument("--epsilon", type=epsilon, default=0.0, help="training epsilon (adversarial modes), e.g. 8/255")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--image-size", type=int, default=None,
                   help="default: " + ", ".join(f"{m.name} {m.default_image_size}" for m in MODELS))
    recipe_args(t)
    t.add_argument("--pgd-steps", type=int, default=7, help="PGD steps of PGD training and of the per-epoch watch")
    t.add_argument("--pretrained", action="store_true", help="ImageNet weights from torchvision's cache (resnet50)")
    t.add_argument("--test-epsilons", type=epsilons, default="2/255,8/255,0.05,0.2,0.5")
    t.add_argument("--test-attacks", type=attacks, default="fgsm,pgd", help=f"comma list of {attack_names}")
    t.add_argument("--csv"), t.add_argument("--json")
    t.set_defaults(func="train")

    e = sub.add_parser("evaluate", help="evaluate a checkpoint under attacks at several epsilons")
    data_arg(e)
    e.add_argument("checkpoint")
    e.add_argument("--attacks", type=attacks, default="fgsm,pgd,noise", help=f"comma list of {attack_names}")
    e.add_argument("--epsilons", type=epsilons, default="1/255,2/255,4/255,8/255,16/255,0.05,0.2,0.5")
    e.add_argument("--pgd-steps", type=int, default=10)
    e.add_argument("--csv"), e.add_argument("--json")
    e.set_defaults(func="evaluate")

    x = sub.add_parser("experiment", help="a grid of runs over models, modes, epsilons and seeds")
    data_arg(x)
    x.add_argument("--preset", choices=["study"], help="the seed study: simplecnn+resnet50, standard+fgsm at "
                                                       "0.5/0.2/0.05, 5 seeds, 10 epochs")
    x.add_argument("--models", type=models, help=f"comma list of {', '.join(MODELS.names())}")
    x.add_argument("--modes", type=modes, help=f"comma list of {', '.join(MODES.names())} (see train --help)")
    x.add_argument("--train-epsilons", type=epsilons)
    x.add_argument("--seeds", type=seeds, help="comma list or range, e.g. 0,1,2 or 0-4")
    x.add_argument("--test-epsilons", type=epsilons)
    x.add_argument("--test-attacks", type=attacks, help=f"comma list of {attack_names}")
    x.add_argument("--epochs", type=int), x.add_argument("--batch-size", type=int)
    recipe_args(x)
    x.add_argument("--save-checkpoints", action="store_true")
    x.add_argument("--out", help="rows as .csv or .json (a -summary file is written beside it)")
    x.set_defaults(func="experiment")

    a = sub.add_parser("attack", help="attack one image with a checkpoint and show the probabilities")
    data_arg(a)
    a.add_argument("checkpoint")
    a.add_argument("--image", help="an ultrasound image file; default: a test image by --index")
    a.add_argument("--index", type=int, default=0)
    a.add_argument("--attack", default="fgsm", choices=[s.name for s in explorer_attacks()])
    a.add_argument("--epsilon", type=epsilon, default="8/255")
    a.add_argument("--out", help="write original|perturbed side by side as PNG")
    a.set_defaults(func="attack")

    d = sub.add_parser("data", help="check a dataset folder: counts, duplicates, label conflicts, skipped files")
    data_arg(d)
    d.add_argument("--image-size", type=int, default=128)
    d.set_defaults(func="data")

    sub.add_parser("jobs", help="background jobs: list, run, cancel, logs (see: python -m busadv jobs --help)")
    sub.add_parser("bench", help="the benchmark (see: python -m busadv bench --help)")
    return parser


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Warnings for users: the message, without module paths and line numbers."""
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["jobs"]:
        from busadv.cli import jobs

        return jobs.main(argv[1:])
    if argv[:1] == ["bench"]:
        from busadv.bench import main as bench_main

        return bench_main(argv[1:])
    from busadv.cli import commands
    from busadv.data import DatasetError
    from busadv.models import PretrainedWeightsUnavailable
    from busadv.models.checkpoints import CheckpointError

    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.simplefilter("ignore", ResourceWarning)
        warnings.showwarning = _show_warning
        try:
            return int(getattr(commands, f"cmd_{args.func}")(args))
        except (DatasetError, CheckpointError, PretrainedWeightsUnavailable, ValueError, FileNotFoundError,
                PermissionError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
