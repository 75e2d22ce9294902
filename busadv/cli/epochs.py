"""`python -m busadv epochs CHECKPOINT...`: the number of epochs validation chooses for a recipe, pooled over its
runs (busadv.training.epoch_count), and the command that refits the recipe on every training image for it.

Given the runs of several recipes that differ in training settings only (a lever's candidate values, each run on
the same seeds), it ranks them by the same pooled validation score, so a lever's value is chosen as the epoch
count is: on validation images of seeds that are then not tested."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _differing(recipes: list[dict[str, Any]]) -> list[str]:
    """The settings the runs differ in; refit aside (a refit run's history is its first pass, a plain run's)."""
    return sorted(k for k in recipes[0]
                  if k != "refit" and len({json.dumps(r.get(k), default=str) for r in recipes}) > 1)


def _option(name: str, value: Any) -> str:
    """A recipe setting as the train command's option: '--critical-weight 1.5'."""
    flag = f"--{name.replace('_', '-')}"
    if isinstance(value, bool):
        return flag if value else f"--no-{name.replace('_', '-')}"
    return f"{flag} {value}"


def cmd_epochs(args: argparse.Namespace) -> int:
    from busadv.models.checkpoints import read_checkpoint_info
    from busadv.training import TrainConfig, format_seed_list
    from busadv.training.config import chosen_among_text
    from busadv.training.epoch_count import SCORE_FIELDS, rank_recipes
    from busadv.training.optim import first_eligible_epoch

    runs = [(TrainConfig.recorded(info.train_config), info) for info in map(read_checkpoint_info, args.checkpoints)]
    runs.sort(key=lambda run: run[0].seed)
    configs = [config for config, _ in runs]
    differing = _differing([config.recipe() for config in configs])
    unrankable = [k for k in differing if k in SCORE_FIELDS]
    if unrankable:
        raise ValueError(f"the checkpoints were trained with different recipes ({', '.join(unrankable[:6])} differ): "
                         "their validation scores measure different things; pool the runs of one recipe, seeds "
                         "apart, or of recipes that differ in training settings only")
    groups: dict[str, list[tuple[TrainConfig, Any]]] = {}
    for config, info in runs:
        name = ", ".join(f"{k} {config.recipe()[k]}" for k in differing) or "the recipe"
        groups.setdefault(name, []).append((config, info))
    seeds = [config.seed for config, _ in next(iter(groups.values()))]
    for name, members in groups.items():
        mine = [config.seed for config, _ in members]
        if len(set(mine)) < len(mine):
            raise ValueError(f"seed {max(mine, key=mine.count)} is given more than once"
                             + (f" for {name}" if len(groups) > 1 else "") + ": pool each run once")
        if mine != seeds:
            raise ValueError(f"{name} was run on seeds {format_seed_list(mine)}, another recipe on "
                             f"{format_seed_list(seeds)}: rank recipes on the same seeds")
    ranked = rank_recipes({name: [info.history for _, info in members] for name, members in groups.items()},
                          {name: first_eligible_epoch(members[0][0]) for name, members in groups.items()})
    config = configs[0]
    what = f"{len(groups)} recipes" if len(groups) > 1 else f"{len(runs)} runs"
    print(f"{what} of {config.describe()}, {config.epochs} epochs, seeds {', '.join(map(str, seeds))}"
          + (f", differing in {', '.join(differing)} (each pooled over its runs, then ranked by that score)"
             if len(groups) > 1 else ""))
    for name, choice in ranked:
        lead = f"{name}: " if len(groups) > 1 else ""
        print(f"{lead}each run's own choice: epoch {', '.join(map(str, choice.per_run))}")
        print(f"{lead}pooled validation chooses {choice.epoch} epochs (mean score {choice.score:.3f}; epochs from "
              f"{choice.start} on can be chosen)")
        print(f"{lead}pooled score by epoch: " + ", ".join(f"{e} {s:.3f}" for e, s in enumerate(choice.curve, start=1)
                                                        if e >= choice.start))
    best_name, best = ranked[0]
    chosen = groups[best_name][0][0]
    levers = "".join(f" {_option(k, chosen.recipe()[k])}" for k in differing)
    if len(groups) > 1:  # recorded as a grid records it, so the refit reads as chosen, not set by hand
        among = chosen_among_text({k: sorted({c.recipe()[k] for c in configs}) for k in differing})
        levers += f' --levers-chosen-among "{among}"'
        print(f"validation prefers {best_name} (the highest pooled {config.select} score; the earliest given of "
              "equals)")
    print(f"to refit on every training image for that many epochs, train other seeds with: --epochs {best.epoch}"
          f"{levers} --val-fraction 0 --select last --epochs-chosen-on {format_seed_list(seeds)} "
          f"--epochs-chosen-by {config.select}")
    if len(groups) == 1:
        print(f"(or let a grid do both: experiment --seeds OTHERS --epochs-chosen-on {format_seed_list(seeds)})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("epochs", help="the number of epochs validation chooses for a recipe, pooled over its runs' "
                                      "checkpoints; given several recipes' runs, which of them validation prefers")
    p.add_argument("checkpoints", nargs="+", help="checkpoints of one recipe's runs (seeds apart), trained with a "
                                                  "validation split; or of several recipes that differ in training "
                                                  "settings only (e.g. --critical-weight), each on the same seeds")
    p.set_defaults(func=cmd_epochs)
