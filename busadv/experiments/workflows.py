"""The three things a user starts (train, evaluate, experiment) as dict-in, dict-out functions.

The job worker, the CLI and the pages all call these, so a job started in the browser and the same
command typed in a terminal do exactly the same work. Every setting is checked before any work
starts (a typo found after an hour of training loses the hour), and every result lands in the results
store, whoever started it.
"""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from busadv.attacks import ATTACKS, STUDY_EPSILONS, parse_epsilon_list
from busadv.data import ImageSet, load_dataset, split_dataset
from busadv.evaluation import evaluate
from busadv.experiments.config import ExperimentConfig
from busadv.experiments.runner import describe_epoch_choice, group_text, run, run_one, scaled
from busadv.models.checkpoints import Checkpoint, check_classes, check_writable_folder, load_checkpoint
from busadv.progress import ProgressFn, ignore_progress
from busadv.registry import parse_name_list
from busadv.results import ResultRow, diagnose, rows_for, save_rows
from busadv.results.store import discard_unsaved
from busadv.settings import checkpoints_dir, pick_device
from busadv.training import TrainConfig

DEFAULT_TEST_EPSILONS: tuple[float, ...] = (2 / 255, 8 / 255) + STUDY_EPSILONS
DEFAULT_TEST_ATTACKS: tuple[str, ...] = ("fgsm", "pgd")


def _epsilons(values: Any, option: str) -> list[float]:
    return list(DEFAULT_TEST_EPSILONS) if values is None else parse_epsilon_list(values, option)


def _steps(value: Any, option: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ValueError(f"{option} must be a whole number from 1 to 1000, got {value!r}")
    return value


def _outcome(rows: list[ResultRow], label: str, **extra: Any) -> dict[str, Any]:
    """What a workflow returns: its rows, the diagnoses of them, and where the store keeps them."""
    stored = save_rows(rows, label) if rows else None
    return {"rows": [r.to_dict() for r in rows], "diagnoses": [d.text() for d in diagnose(rows)],
            "results_file": str(stored or ""), **extra}


def train_job(config: dict[str, Any], progress: ProgressFn = ignore_progress) -> dict[str, Any]:
    """Train one model, evaluate it on its held-out split and save the checkpoint.

    `state_file` (set by the job worker, not by users): where training keeps its per-epoch state, so
    that a resumed job goes on after its last finished epoch.
    """
    config = dict(config)
    state_file = config.pop("state_file", None)
    test_epsilons = _epsilons(config.pop("test_epsilons", None), "test epsilons")
    test_attacks = parse_name_list(config.pop("test_attacks", list(DEFAULT_TEST_ATTACKS)), ATTACKS, "test attacks")
    eval_pgd_steps = _steps(config.pop("eval_pgd_steps", 10), "evaluation PGD steps")
    train_config = TrainConfig.from_dict(config)
    pick_device(train_config.device)
    check_writable_folder(checkpoints_dir())
    outcome = run_one(train_config, None, test_attacks, test_epsilons, save=True, eval_pgd_steps=eval_pgd_steps,
                      progress=progress, state_file=Path(state_file) if state_file else None)
    return _outcome(outcome.rows, f"train-{train_config.arch}-{train_config.mode}",
                    checkpoint=str(outcome.checkpoint), history=outcome.history, seconds=round(outcome.seconds, 2))


def train_config_of(checkpoint: Checkpoint) -> TrainConfig:
    """The checkpoint's training settings as a TrainConfig (settings unknown to this busadv are ignored)."""
    known = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in checkpoint.train_config.items() if k in known}
    values.update(arch=checkpoint.arch, image_size=checkpoint.image_size, device="cpu")
    try:
        return TrainConfig.recorded(values)
    except ValueError as exc:
        raise ValueError(f"{checkpoint.path}: its training settings are not valid ({exc})") from None


def _chosen_epoch(checkpoint: Checkpoint) -> int | None:
    epoch = checkpoint.metrics.get("chosen_epoch")
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 else None


def test_split_for(checkpoint: Checkpoint, dataset: ImageSet) -> tuple[ImageSet, str]:
    """The checkpoint's own held-out images when the data is the one it was trained on, else all images."""
    check_classes(checkpoint, dataset.classes)  # a renamed or reordered class would be scored against the wrong label
    if dataset.fingerprint == checkpoint.data.get("fingerprint"):
        _, test_set = split_dataset(dataset, float(checkpoint.data.get("test_fraction", 0.2)),
                                    seed=int(checkpoint.data.get("split_seed", 0)),
                                    policy=str(checkpoint.data.get("split_policy", "exact")))
        return test_set, "the checkpoint's own held-out test split"
    return dataset, "all images (this data set was not used to train the checkpoint)"


def _checked_settings(config: dict[str, Any], known: tuple[str, ...], what: str) -> dict[str, Any]:
    """A copy of a checkpoint job's settings, refused in one line when one is unknown or the checkpoint is missing."""
    config = dict(config)
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ValueError(f"unknown setting(s) for {what}: {', '.join(unknown)}; known: {', '.join(known)}")
    if not config.get("checkpoint"):
        raise ValueError(f"{what} needs a checkpoint path")
    return config


EVALUATE_SETTINGS = ("checkpoint", "attacks", "epsilons", "data", "pgd_steps", "seed", "device")


def evaluate_job(config: dict[str, Any], progress: ProgressFn = ignore_progress) -> dict[str, Any]:
    """Evaluate a saved checkpoint under attacks at a list of epsilons."""
    config = _checked_settings(config, EVALUATE_SETTINGS, "evaluation")
    attacks = parse_name_list(config.get("attacks", list(DEFAULT_TEST_ATTACKS)), ATTACKS, "attacks")
    epsilons = _epsilons(config.get("epsilons"), "epsilons")
    pgd_steps = _steps(config.get("pgd_steps", 10), "PGD steps")
    seed = config.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    checkpoint = load_checkpoint(config["checkpoint"], device=pick_device(config.get("device", "auto")))
    train_config = train_config_of(checkpoint)
    dataset = load_dataset(config.get("data", checkpoint.train_config.get("data")), checkpoint.image_size)
    test_set, which = test_split_for(checkpoint, dataset)
    started = time.perf_counter()
    conditions = evaluate(checkpoint.require_model(), test_set, attacks, epsilons, pgd_steps=pgd_steps, seed=seed,
                          progress=progress)
    rows = rows_for(conditions, run=checkpoint.run_id or checkpoint.name, seed=train_config.seed,
                    train_config=train_config, data_fingerprint=str(checkpoint.data.get("fingerprint", "")),
                    data_source=dataset.source, simulated=dataset.simulated, eval_pgd_steps=pgd_steps,
                    checkpoint=str(checkpoint.path), test_images=which, history=checkpoint.history,
                    chosen_epoch=_chosen_epoch(checkpoint))
    return _outcome(rows, f"evaluate-{Path(str(checkpoint.path)).stem[:30]}", test_images=which,
                    seconds=round(time.perf_counter() - started, 2))


def experiment_job(config: dict[str, Any], progress: ProgressFn = ignore_progress) -> dict[str, Any]:
    """Run a grid; its rows land in the results store."""
    experiment = ExperimentConfig.from_dict(dict(config))
    pick_device(experiment.device)
    if experiment.save_checkpoints:
        check_writable_folder(checkpoints_dir())
    result = run(experiment, progress=progress)
    outcome = _outcome(result.rows, experiment.name, summary=[s.to_dict() for s in result.summary],
                       seconds=round(result.seconds, 2))
    if result.epoch_choices:
        outcome["epoch_choices"] = [
            {"model": arch, "mode": mode, "epsilon": eps, "epochs": c.epoch, "score": c.score,
             "per_run": list(c.per_run), "chosen_on": experiment.epochs_chosen_on,
             "text": describe_epoch_choice((arch, mode, eps), c),
             **({"levers": result.lever_choices[(arch, mode, eps)].values,
                 "levers_text": f"{group_text((arch, mode, eps))}: {result.lever_choices[(arch, mode, eps)].text()}"}
                if (arch, mode, eps) in result.lever_choices else {})}
            for (arch, mode, eps), c in result.epoch_choices.items()]
    discard_unsaved(result.unsaved)  # the grid's file holds every row now
    return outcome


FLIPS_SETTINGS = ("checkpoint", "attacks", "max_epsilon", "data", "pgd_steps", "seed", "device")


def flips_job(config: dict[str, Any], progress: ProgressFn = ignore_progress) -> dict[str, Any]:
    """The smallest flipping epsilon of every held-out image of a checkpoint, per attack, into the store."""
    import dataclasses

    from busadv.evaluation import flip_epsilons
    from busadv.results import save_flips
    from busadv.results.diagnosis import recipe_text

    config = _checked_settings(config, FLIPS_SETTINGS, "the per-image search")
    attacks = parse_name_list(config.get("attacks", ["fgsm", "pgd"]), ATTACKS, "attacks")
    for attack in attacks:
        if not (ATTACKS.get(attack).single_step or attack == "pgd"):
            raise ValueError(f"attacks: the per-image search supports fgsm, fgsm-pred, noise and pgd, not {attack}")
    max_eps = parse_epsilon_list([config.get("max_epsilon", 0.5)], "max epsilon")[0]
    if max_eps < 1 / 255:
        raise ValueError("max epsilon must be at least 1/255")
    pgd_steps = _steps(config.get("pgd_steps", 10), "PGD steps")
    checkpoint = load_checkpoint(config["checkpoint"], device=pick_device(config.get("device", "auto")))
    train_config = train_config_of(checkpoint)
    dataset = load_dataset(config.get("data", checkpoint.train_config.get("data")), checkpoint.image_size)
    test_set, which = test_split_for(checkpoint, dataset)
    label = recipe_text(train_config.arch, train_config.mode, train_config.epsilon, train_config.adv_labels)
    flips = []
    for i, attack in enumerate(attacks):
        found = flip_epsilons(checkpoint.require_model(), test_set, attack, max_eps=max_eps, pgd_steps=pgd_steps,
                              seed=int(config.get("seed", 0)),
                              progress=scaled(progress, i / len(attacks), 1 / len(attacks)))
        flips += [dataclasses.replace(f, checkpoint=str(checkpoint.path), run=checkpoint.run_id or checkpoint.name,
                                      model=label, data_source=dataset.source, simulated=dataset.simulated)
                  for f in found]
    stored = save_flips(flips, f"flips-{Path(str(checkpoint.path)).stem[:30]}")
    return {"flips": [f.to_dict() for f in flips], "test_images": which, "results_file": str(stored)}
