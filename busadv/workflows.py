"""The three things a user starts (train, evaluate, experiment) as dict-in, dict-out functions.

The job worker, the CLI and the pages all call these, so a job started from the browser and the same
command typed in a terminal do exactly the same work. Configs are plain dicts (JSON in the job store).
"""

from __future__ import annotations

import os
import time
from typing import Any

from busadv.attacks import STUDY_EPSILONS, parse_epsilon, parse_epsilon_list
from busadv.checkpoints import Checkpoint, load_checkpoint
from busadv.data import ImageSet, load_dataset, split_dataset
from busadv.evaluation import evaluate
from busadv.experiments import ExperimentConfig, diagnose, run, run_one, summarize, write_rows
from busadv.progress import ProgressFn, ignore_progress
from busadv.settings import home
from busadv.training import TrainConfig

DEFAULT_TEST_EPSILONS: tuple[float, ...] = (2 / 255, 8 / 255) + STUDY_EPSILONS


def _epsilons(values: Any) -> list[float]:
    if values is None:
        return list(DEFAULT_TEST_EPSILONS)
    if isinstance(values, (str, float, int)):
        return parse_epsilon_list(str(values))
    return [parse_epsilon(v) for v in values]


def train_job(config: dict[str, Any], progress: ProgressFn = ignore_progress) -> dict[str, Any]:
    """Train one model, evaluate it on its held-out split and save the checkpoint."""
    config = dict(config)
    test_epsilons = _epsilons(config.pop("test_epsilons", None))
    test_attacks = config.pop("test_attacks", ["fgsm"])
    train_config = TrainConfig.from_dict(config)
    outcome = run_one(train_config, None, test_attacks, test_epsilons, save=True, progress=progress)
    return {"checkpoint": str(outcome.checkpoint), "rows": outcome.rows, "history": outcome.history,
            "warnings": diagnose(summarize(outcome.rows)), "seconds": round(outcome.seconds, 2)}


def test_split_for(checkpoint: Checkpoint, dataset: ImageSet) -> tuple[ImageSet, str]:
    """The checkpoint's own held-out images when the data is the one it was trained on, else all images."""
    if dataset.fingerprint == checkpoint.data.get("fingerprint"):
        _, test_set = split_dataset(dataset, checkpoint.data.get("test_fraction", 0.2),
                                    seed=checkpoint.data.get("split_seed", 0))
        return test_set, "the checkpoint's own held-out test split"
    return dataset, "all images (this data set was not used to train the checkpoint)"


def evaluate_job(config: dict[str, Any], progress: ProgressFn = ignore_progress) -> dict[str, Any]:
    """Evaluate a saved checkpoint under attacks at a list of epsilons."""
    config = dict(config)
    unknown = sorted(set(config) - {"checkpoint", "attacks", "epsilons", "data", "pgd_steps", "seed", "device"})
    if unknown:
        raise ValueError(f"unknown evaluation setting(s): {', '.join(unknown)}")
    if not config.get("checkpoint"):
        raise ValueError("evaluation needs a checkpoint path")
    from busadv.settings import pick_device

    checkpoint = load_checkpoint(config["checkpoint"], device=pick_device(config.get("device", "auto")))
    data = config.get("data", checkpoint.train_config.get("data"))
    dataset = load_dataset(data, checkpoint.image_size)
    test_set, which = test_split_for(checkpoint, dataset)
    started = time.perf_counter()
    conditions = evaluate(checkpoint.model, test_set, config.get("attacks", ["fgsm"]),
                          _epsilons(config.get("epsilons")), pgd_steps=int(config.get("pgd_steps", 10)),
                          seed=int(config.get("seed", 0)), progress=progress)
    tc = checkpoint.train_config
    base = {"run": checkpoint.name, "arch": checkpoint.arch, "train_mode": tc.get("mode", "standard"),
            "train_epsilon": float(tc.get("epsilon", 0.0)), "adv_labels": tc.get("adv_labels", "true"),
            "seed": tc.get("seed", 0), "epochs": tc.get("epochs"), "data_source": dataset.source,
            "simulated": dataset.simulated, "checkpoint": str(checkpoint.path), "test_images": which,
            "image_size": checkpoint.image_size}
    rows = []
    for c in conditions:
        cond = c.as_row()
        row = dict(base, attack=cond.pop("attack"), test_epsilon=cond.pop("epsilon"))
        row.update(cond)
        rows.append(row)
    return {"rows": rows, "test_images": which, "warnings": diagnose(summarize(rows)),
            "seconds": round(time.perf_counter() - started, 2)}


def experiment_job(config: dict[str, Any], progress: ProgressFn = ignore_progress) -> dict[str, Any]:
    """Run a grid and keep its rows as CSV under $BUSADV_HOME/results for later export."""
    experiment = ExperimentConfig.from_dict(dict(config))
    result = run(experiment, progress=progress)
    folder = home() / "results"
    stem = f"{experiment.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    csv_path = write_rows(result.rows, folder / f"{stem}.csv")
    return {"rows": result.rows, "summary": result.summary, "warnings": result.warnings,
            "csv": str(csv_path), "seconds": round(result.seconds, 2)}


def result_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All result rows of finished jobs, newest first, each (model, condition) once.

    A checkpoint evaluated by its training job and again by an evaluation job would otherwise count as
    two runs and shrink the error bars; the first (newest) occurrence wins.
    """
    rows: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for result in results:
        for row in (result or {}).get("rows", []):
            key = (row.get("checkpoint") or row.get("run"), row.get("attack"), row.get("test_epsilon"))
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return rows
