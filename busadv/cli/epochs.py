"""`python -m busadv epochs CHECKPOINT...`: the number of epochs validation chooses for a recipe, pooled over its
runs (busadv.training.epoch_count), and the command that refits the recipe on every training image for it."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _differing(recipes: list[dict[str, Any]]) -> list[str]:
    """The settings the runs differ in; refit aside (a refit run's history is its first pass, a plain run's)."""
    return sorted(k for k in recipes[0]
                  if k != "refit" and len({json.dumps(r.get(k), default=str) for r in recipes}) > 1)


def cmd_epochs(args: argparse.Namespace) -> int:
    from busadv.models.checkpoints import read_checkpoint_info
    from busadv.training import TrainConfig
    from busadv.training.epoch_count import pooled_epoch_count
    from busadv.training.optim import first_eligible_epoch

    runs = [(TrainConfig.recorded(info.train_config), info) for info in map(read_checkpoint_info, args.checkpoints)]
    runs.sort(key=lambda run: run[0].seed)
    configs, infos = [config for config, _ in runs], [info for _, info in runs]
    differing = _differing([config.recipe() for config in configs])
    if differing:
        raise ValueError(f"the checkpoints were trained with different recipes ({', '.join(differing[:6])} differ): "
                         "pool the runs of one recipe, seeds apart")
    seeds = [config.seed for config in configs]
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"seed {max(seeds, key=seeds.count)} is given more than once: pool each run once")
    choice = pooled_epoch_count([info.history for info in infos], first_eligible_epoch(configs[0]),
                                names=[f"the checkpoint of seed {s}" for s in seeds])
    config = configs[0]
    print(f"{len(infos)} runs of {config.describe()}, {config.epochs} epochs, seeds {', '.join(map(str, seeds))}")
    print(f"each run's own choice: epoch {', '.join(map(str, choice.per_run))}")
    print(f"pooled validation chooses {choice.epoch} epochs (mean score {choice.score:.3f}; epochs from "
          f"{choice.start} on can be chosen)")
    print("pooled score by epoch: " + ", ".join(f"{e} {s:.3f}" for e, s in enumerate(choice.curve, start=1)
                                              if e >= choice.start))
    from busadv.training import format_seed_list

    print(f"to refit on every training image for that many epochs, train other seeds with: --epochs {choice.epoch} "
          f"--val-fraction 0 --select last --epochs-chosen-on {format_seed_list(seeds)} "
          f"--epochs-chosen-by {config.select}")
    print(f"(or let a grid do both: experiment --seeds OTHERS --epochs-chosen-on {format_seed_list(seeds)})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("epochs", help="the number of epochs validation chooses for a recipe, pooled over its runs' "
                                      "checkpoints")
    p.add_argument("checkpoints", nargs="+", help="checkpoints of one recipe's runs (seeds apart), trained with a "
                                                  "validation split")
    p.set_defaults(func=cmd_epochs)
