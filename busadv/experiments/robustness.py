"""Robustness beyond white-box attacks, as dict-in, dict-out workflows: scanner corruptions and transfer attacks.

Like busadv.experiments.workflows (whose helpers these reuse): the job worker, the CLI and the pages
call the same functions, every setting is checked before any work starts, and results land where the
Results page reads them: corruption rows in the results store, transfer matrices as JSON files beside it
(a transfer cell is one model tested on another's attack; as a result row it would be mistaken for
that model's own white-box result).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

from busadv.attacks import ADVERSARIAL, ATTACKS, parse_epsilon, parse_epsilon_list
from busadv.attacks.scanner import parse_corruptions, parse_severities
from busadv.data import ImageSet, atomic_write_text, load_dataset
from busadv.evaluation import evaluate
from busadv.evaluation.corruption import evaluate_corruptions
from busadv.evaluation.transfer import TransferMatrix, transfer_matrix
from busadv.experiments.runner import scaled
from busadv.experiments.workflows import _outcome, _steps, test_split_for, train_config_of
from busadv.models.checkpoints import Checkpoint, CheckpointError, load_checkpoint
from busadv.progress import ProgressFn, ignore_progress
from busadv.registry import parse_name_list
from busadv.results import results_dir, rows_for
from busadv.settings import pick_device
from busadv.training import MODES

CORRUPTION_SETTINGS = ("checkpoint", "corruptions", "severities", "epsilons", "compare_attacks", "data",
                       "pgd_steps", "seed", "device")
TRANSFER_SETTINGS = ("checkpoints", "attack", "epsilon", "data", "pgd_steps", "seed", "device")
EQUAL_SIZE_EPSILONS: tuple[float, ...] = (2 / 255, 8 / 255)
EQUAL_SIZE_ATTACKS: tuple[str, ...] = ("fgsm", "pgd", "noise")


def _check_settings(config: dict[str, Any], known: Sequence[str], what: str) -> None:
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} setting(s): {', '.join(unknown)}; known: {', '.join(known)}")


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {value!r}")
    return value


def _load(path: Any, option: str, device: str) -> Checkpoint:
    """A checkpoint, or an error that names the option it came from."""
    if not path:
        raise ValueError(f"{option}: give a checkpoint file")
    try:
        return load_checkpoint(path, device=pick_device(device))
    except CheckpointError as exc:
        raise CheckpointError(f"{option}: {exc}") from None


# ------------------------------------------------------------------------------------------ corruptions

def corruption_job(config: dict[str, Any], progress: ProgressFn = ignore_progress) -> dict[str, Any]:
    """A checkpoint under every scanner corruption and severity, and at equal L-inf size beside FGSM and PGD."""
    config = dict(config)
    _check_settings(config, CORRUPTION_SETTINGS, "corruption evaluation")
    corruptions = parse_corruptions(config.get("corruptions"))
    severities = parse_severities(config.get("severities"))
    epsilons = parse_epsilon_list(config.get("epsilons", list(EQUAL_SIZE_EPSILONS)), "epsilons")
    compare = parse_name_list(config.get("compare_attacks", list(EQUAL_SIZE_ATTACKS)), ATTACKS, "compare attacks")
    pgd_steps = _steps(config.get("pgd_steps", 10), "PGD steps")
    seed = _seed(config.get("seed", 0))
    checkpoint = _load(config.get("checkpoint"), "checkpoint", config.get("device", "auto"))
    train_config = train_config_of(checkpoint)
    dataset = load_dataset(config.get("data", checkpoint.train_config.get("data")), checkpoint.image_size)
    test_set, which = test_split_for(checkpoint, dataset)
    model = checkpoint.require_model()
    started = time.perf_counter()
    report = evaluate_corruptions(model, test_set, corruptions, severities, seed=seed,
                                  progress=scaled(progress, 0.0, 0.5 if epsilons else 1.0))
    equal_size = evaluate(model, test_set, [*compare, *corruptions], epsilons, pgd_steps=pgd_steps, seed=seed,
                          progress=scaled(progress, 0.5, 0.5))[1:] if epsilons else []
    rows_of = partial(rows_for, run=checkpoint.run_id or checkpoint.name, seed=train_config.seed,
                      train_config=train_config, data_fingerprint=str(checkpoint.data.get("fingerprint", "")),
                      data_source=dataset.source, simulated=dataset.simulated, eval_pgd_steps=pgd_steps,
                      checkpoint=str(checkpoint.path), test_images=which, history=checkpoint.history)
    rows = rows_of(report.results(), severities=report.severities()) + rows_of(equal_size)
    sizes = [{"corruption": c.corruption, "severity": c.severity, "setting": c.setting, "linf": c.linf,
              "l2": c.l2} for c in report.conditions]
    return _outcome(rows, f"corruptions-{Path(str(checkpoint.path)).stem[:30]}", test_images=which,
                    summary=report.summary(), sizes=sizes, seconds=round(time.perf_counter() - started, 2))


# ------------------------------------------------------------------------------------------ transfer

def model_names(checkpoints: Sequence[Checkpoint]) -> list[str]:
    """'simplecnn, fgsm ε=0.031, seed 0' per checkpoint; the file name added where two would read the same."""
    names = []
    for checkpoint in checkpoints:
        tc = checkpoint.train_config
        mode = str(tc.get("mode", "standard"))
        how = mode + (f" ε={float(tc.get('epsilon', 0)):.3g}" if mode in MODES and MODES.get(mode).adversarial else "")
        names.append(f"{checkpoint.arch} {checkpoint.image_size}px, {how}, seed {tc.get('seed', 0)}")
    return [f"{n} ({Path(str(c.path)).stem[-12:]})" if names.count(n) > 1 else n
            for n, c in zip(names, checkpoints, strict=True)]


def shared_test_sets(checkpoints: Sequence[Checkpoint], data: str | None) -> tuple[list[ImageSet], str]:
    """The images held out by every checkpoint, at each checkpoint's size and in one order; and what they are."""
    loaded: dict[int, ImageSet] = {}
    splits, kinds = [], set()
    for checkpoint in checkpoints:
        if checkpoint.image_size not in loaded:
            loaded[checkpoint.image_size] = load_dataset(data, checkpoint.image_size)
        test_set, which = test_split_for(checkpoint, loaded[checkpoint.image_size])
        splits.append(test_set)
        kinds.add(which)
    common = set(splits[0].names).intersection(*(s.names for s in splits[1:]))
    if not common:
        raise ValueError("checkpoints: their held-out test images have no image in common (different splits of "
                         "the data); transfer needs images that no model trained on")
    order = [n for n in splits[0].names if n in common]
    shared = [s.subset([s.names.index(n) for n in order]) for s in splits]
    if kinds == {"the checkpoint's own held-out test split"}:
        whole = all(len(s) == len(order) for s in splits)
        which = ("the checkpoints' shared held-out test split" if whole else
                 "the test images every checkpoint held out (their splits differ)")
    else:
        which = "; ".join(sorted(kinds))
    return shared, which


def transfer_job(config: dict[str, Any], progress: ProgressFn = ignore_progress) -> dict[str, Any]:
    """Each checkpoint's adversarial test images shown to every other: the transfer matrix, saved for Results."""
    config = dict(config)
    _check_settings(config, TRANSFER_SETTINGS, "transfer")
    paths = config.get("checkpoints") or []
    if isinstance(paths, str) or not isinstance(paths, (list, tuple)):
        raise ValueError("checkpoints: give a list of checkpoint files")
    if len(paths) < 2:
        raise ValueError(f"checkpoints: transfer needs at least two checkpoints (a source and a target), "
                         f"got {len(paths)}")
    twice = next((p for p in paths if paths.count(p) > 1), None)
    if twice is not None:
        raise ValueError(f"checkpoints: {Path(str(twice)).name} is listed twice")
    attack = str(config.get("attack", "pgd")).strip().lower()
    if attack not in ATTACKS or ATTACKS.get(attack).family != ADVERSARIAL:
        _unknown_attack(attack)
    epsilon = parse_epsilon(config.get("epsilon", 8 / 255))
    pgd_steps = _steps(config.get("pgd_steps", 10), "PGD steps")
    seed = _seed(config.get("seed", 0))
    checkpoints = [_load(p, "checkpoints", config.get("device", "auto")) for p in paths]
    test_sets, which = shared_test_sets(checkpoints, config.get("data", checkpoints[0].train_config.get("data")))
    started = time.perf_counter()
    names = model_names(checkpoints)
    matrix = transfer_matrix([c.require_model() for c in checkpoints], test_sets, names, attack, epsilon,
                             pgd_steps=pgd_steps, seed=seed, progress=progress)
    saved = {"matrix": matrix.to_dict(), "checkpoints": [str(c.path) for c in checkpoints], "test_images": which,
             "n": matrix.n, "data_source": test_sets[0].source, "simulated": test_sets[0].simulated,
             "pgd_steps": pgd_steps, "seed": seed, "created": time.time()}
    path = save_transfer(saved)
    return {**saved, "transfer_file": str(path), "seconds": round(time.perf_counter() - started, 2)}


def _unknown_attack(name: str) -> NoReturn:
    offered = ", ".join(a.name for a in ATTACKS if a.family == ADVERSARIAL)
    raise ValueError(f"attack: {str(name)[:40]!r} is not an adversarial attack that can be transferred; "
                     f"choose one of: {offered}")


def transfer_dir() -> Path:
    path = results_dir() / "transfer"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_transfer(saved: dict[str, Any]) -> Path:
    """One JSON file per transfer run, written atomically beside the results store."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return atomic_write_text(json.dumps(saved, indent=1), transfer_dir() / f"{stamp}-{time.time_ns() % 10**9}.json")


def load_transfers(limit: int = 20) -> tuple[list[tuple[dict[str, Any], TransferMatrix]], list[str]]:
    """(saved transfer runs with their matrices, newest first; files that could not be read)."""
    found, problems = [], []
    files = sorted(transfer_dir().glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    for path in files[:limit]:
        try:
            saved = json.loads(path.read_text())
            found.append(({**saved, "file": path.name}, TransferMatrix.from_dict(saved["matrix"])))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path.name}: {exc}")
    return found, problems
