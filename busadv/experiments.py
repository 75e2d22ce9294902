"""A grid of runs (models x training modes x training epsilons x seeds) -> tidy rows and their summary.

`run` is the one entry point that the job runner, the CLI and any future distributed engine call.
Rows are one per run and test condition; the summary is mean and standard deviation per group.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

from busadv.attacks import STUDY_EPSILONS, Attack, format_epsilon
from busadv.checkpoints import checkpoint_filename, save_checkpoint
from busadv.data import ImageSet, dataset_summary, load_dataset, split_dataset
from busadv.evaluation import evaluate
from busadv.models import DEFAULT_IMAGE_SIZE, Arch
from busadv.progress import ProgressEvent, ProgressFn, ignore_progress
from busadv.settings import checkpoints_dir
from busadv.training import TrainConfig, TrainMode, train_model

GROUP_KEYS = ("arch", "train_mode", "train_epsilon", "attack", "test_epsilon")
SETTINGS = ("epochs", "image_size", "adv_labels")  # recipe details that a group's runs should share
METRICS = ("accuracy", "malignant_missed_rate", "recall_benign", "recall_malignant", "recall_normal", "dominant_share")


@dataclass
class ExperimentConfig:
    archs: list[str] = field(default_factory=lambda: ["simplecnn"])
    modes: list[str] = field(default_factory=lambda: ["standard", "fgsm"])
    train_epsilons: list[float] = field(default_factory=lambda: list(STUDY_EPSILONS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    test_attacks: list[str] = field(default_factory=lambda: ["fgsm"])
    test_epsilons: list[float] = field(default_factory=lambda: list(STUDY_EPSILONS))
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    image_sizes: dict[str, int] = field(default_factory=dict)
    data: str | None = None
    adv_labels: str = "true"
    random_start: bool = False
    clean_mix: float = 0.0
    pgd_steps: int = 10
    save_checkpoints: bool = False
    device: str = "auto"
    name: str = "experiment"

    def __post_init__(self) -> None:
        self.archs = [Arch.coerce(a).value for a in self.archs]
        self.modes = [TrainMode.coerce(m).value for m in self.modes]
        self.test_attacks = [Attack.coerce(a).value for a in self.test_attacks]
        self.train_epsilons = [float(e) for e in self.train_epsilons]
        self.test_epsilons = [float(e) for e in self.test_epsilons]
        self.seeds = [int(s) for s in self.seeds]
        if not self.archs or not self.modes or not self.seeds:
            raise ValueError("an experiment needs at least one model, one training mode and one seed")
        if any(m != "standard" for m in self.modes) and not self.train_epsilons:
            raise ValueError("adversarial training modes need at least one training epsilon")
        for e in self.train_epsilons + self.test_epsilons:
            if not 0.0 <= e <= 1.0:
                raise ValueError(f"epsilon {e} is outside the [0, 1] pixel scale (8/255 = 0.031)")
        self.runs()  # validates every run's settings up front, before hours are spent

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ExperimentConfig":
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown experiment setting(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def runs(self) -> list[TrainConfig]:
        """Standard training has no epsilon, so it runs once per seed, not once per epsilon."""
        out = []
        for arch in self.archs:
            for mode in self.modes:
                epsilons = [0.0] if mode == "standard" else self.train_epsilons
                for eps in epsilons:
                    for seed in self.seeds:
                        out.append(TrainConfig(
                            arch=arch, mode=mode, epsilon=eps, epochs=self.epochs, batch_size=self.batch_size,
                            lr=self.lr, seed=seed, image_size=self.image_sizes.get(arch, DEFAULT_IMAGE_SIZE[Arch(arch)]),
                            adv_labels=self.adv_labels, random_start=self.random_start, clean_mix=self.clean_mix,
                            device=self.device, data=self.data))
        return out


def study_preset(seeds: Sequence[int] = (0, 1, 2, 3, 4), archs: Sequence[str] = ("simplecnn", "resnet50"),
                 **overrides: Any) -> ExperimentConfig:
    """The seed study: standard and FGSM training at 0.5, 0.2 and 0.05, tested clean and under FGSM."""
    values: dict[str, Any] = dict(archs=list(archs), modes=["standard", "fgsm"], train_epsilons=list(STUDY_EPSILONS),
                                  seeds=list(seeds), test_attacks=["fgsm"], test_epsilons=list(STUDY_EPSILONS),
                                  epochs=10, batch_size=32, name="study")
    values.update(overrides)
    return ExperimentConfig(**values)


@dataclass
class RunOutcome:
    config: TrainConfig
    rows: list[dict[str, Any]]
    history: list[dict[str, Any]]
    checkpoint: Path | None
    seconds: float


def run_one(config: TrainConfig, dataset: ImageSet | None = None, test_attacks: Sequence[str] = ("fgsm",),
            test_epsilons: Sequence[float] = STUDY_EPSILONS, save: bool = False, pgd_steps: int = 10,
            run_id: str = "", checkpoint_folder: Path | None = None,
            progress: ProgressFn = ignore_progress) -> RunOutcome:
    """Split, train, evaluate on the held-out images and (optionally) save: one row per test condition."""
    dataset = dataset if dataset is not None else load_dataset(config.data, config.image_size)
    train_set, test_set = split_dataset(dataset, config.test_fraction, seed=config.seed)
    started = time.perf_counter()

    def train_progress(event: ProgressEvent) -> None:
        progress(ProgressEvent(event.fraction * 0.9, event.message, event.epoch, event.epochs, event.loss,
                               event.accuracy, event.eta_seconds))

    result = train_model(config, train_set, test_set, progress=train_progress)
    progress(ProgressEvent(0.9, "evaluating on the held-out test set", epochs=config.epochs, epoch=config.epochs))
    conditions = evaluate(result.model, test_set, test_attacks, test_epsilons, pgd_steps=pgd_steps, seed=config.seed,
                          progress=lambda e: progress(ProgressEvent(0.9 + 0.1 * e.fraction, e.message)))
    seconds = time.perf_counter() - started
    base = {"run": run_id or f"{config.arch}-{config.mode}-{config.epsilon:g}-s{config.seed}",
            "arch": config.arch, "train_mode": config.mode,
            "train_epsilon": config.epsilon if config.mode != "standard" else 0.0,
            "adv_labels": config.adv_labels, "seed": config.seed, "epochs": config.epochs,
            "image_size": config.image_size, "data_source": dataset.source, "simulated": dataset.simulated,
            "train_seconds": round(result.seconds, 2)}
    rows = []
    for c in conditions:
        row = dict(base)
        cond = c.as_row()
        row.update({"attack": cond.pop("attack"), "test_epsilon": cond.pop("epsilon")})
        row.update(cond)
        rows.append(row)
    history = [asdict(h) for h in result.history]
    checkpoint = None
    if save:
        clean = rows[0]
        metrics = {"clean_accuracy": clean["accuracy"], "conditions": [
            {k: r[k] for k in ("attack", "test_epsilon", "accuracy", "malignant_missed_rate")} for r in rows]}
        data_info = {k: v for k, v in dataset_summary(dataset).items() if k in ("source", "simulated", "fingerprint", "counts")}
        data_info.update(test_fraction=config.test_fraction, split_seed=config.seed, n_train=len(train_set), n_test=len(test_set))
        folder = checkpoint_folder or checkpoints_dir()
        checkpoint = save_checkpoint(result.model, folder / checkpoint_filename(config.to_dict(), dataset.simulated),
                                     arch=config.arch, image_size=config.image_size, train_config=config.to_dict(),
                                     metrics=metrics, data=data_info, history=history)
        for row in rows:
            row["checkpoint"] = str(checkpoint)
    return RunOutcome(config=config, rows=rows, history=history, checkpoint=checkpoint, seconds=seconds)


@dataclass
class ExperimentResult:
    config: ExperimentConfig
    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    warnings: list[str]
    seconds: float


def run(config: ExperimentConfig, progress: ProgressFn = ignore_progress) -> ExperimentResult:
    """Every run of the grid in turn; the data is decoded once per image size and shared by all runs."""
    runs = config.runs()
    datasets: dict[int, ImageSet] = {}
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"  # unique across experiments
    for i, train_config in enumerate(runs):
        size = int(train_config.image_size)
        if size not in datasets:
            datasets[size] = load_dataset(config.data, size)
        label = f"run {i + 1}/{len(runs)} ({train_config.describe()}, seed {train_config.seed})"

        def inner(event: ProgressEvent, i: int = i, label: str = label) -> None:
            fraction = (i + event.fraction) / len(runs)
            elapsed = time.perf_counter() - started
            eta = elapsed / fraction * (1 - fraction) if fraction > 0.01 else None
            progress(ProgressEvent(fraction, f"{label}: {event.message}", event.epoch, event.epochs,
                                   event.loss, event.accuracy, eta))

        outcome = run_one(train_config, datasets[size], config.test_attacks, config.test_epsilons,
                          save=config.save_checkpoints, pgd_steps=config.pgd_steps,
                          run_id=f"{config.name}-{stamp}-{i + 1:03d}", progress=inner)
        rows.extend(outcome.rows)
    summary = summarize(rows)
    progress(ProgressEvent(1.0, f"finished {len(runs)} runs"))
    return ExperimentResult(config=config, rows=rows, summary=summary, warnings=diagnose(summary),
                            seconds=time.perf_counter() - started)


def _std(values: list[float]) -> float:
    """Sample standard deviation (n-1); 0 for a single run, where spread is unknown rather than zero."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _sorted_values(values: Iterable[Any]) -> list[Any]:
    """Distinct non-empty values in natural order (3 before 10)."""
    return sorted({v for v in values if v is not None}, key=lambda v: (type(v).__name__, v))


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, sample std and count of each metric per (arch, mode, train eps, attack, test eps) group."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in GROUP_KEYS), []).append(row)
    out = []
    for key, members in groups.items():
        entry: dict[str, Any] = dict(zip(GROUP_KEYS, key))
        entry["n_runs"] = len(members)
        for metric in METRICS:
            values = [float(m[metric]) for m in members if metric in m]
            if values:
                entry[f"{metric}_mean"] = statistics.fmean(values)
                entry[f"{metric}_std"] = _std(values)
                entry[f"{metric}_values"] = values
        entry["seeds"] = [m["seed"] for m in members]
        for setting in SETTINGS:  # a group should be seeds of one recipe; mixed recipes are flagged by diagnose
            entry[f"{setting}_set"] = _sorted_values(m.get(setting) for m in members)
        dominant = [m["dominant_class"] for m in members if "dominant_class" in m]
        if dominant:
            entry["dominant_class"] = max(set(dominant), key=dominant.count)
        out.append(entry)
    return out


def _eps_list(values: Sequence[float]) -> str:
    return ", ".join(format_epsilon(v) for v in sorted(values))


def diagnose(summary: Sequence[dict[str, Any]]) -> list[str]:
    """The traps the design notes name, spotted in a summary: one note per model and kind of trap."""
    by_model: dict[tuple, dict[tuple, dict[str, Any]]] = {}
    for s in summary:
        by_model.setdefault((s["arch"], s["train_mode"], s["train_epsilon"]), {})[(s["attack"], s["test_epsilon"])] = s
    notes = []
    for (arch, mode, train_eps), conds in by_model.items():
        who = f"{arch} {mode}-trained" + (f" at eps={format_epsilon(train_eps)}" if mode != "standard" else "")
        mixed = {k: v for k, v in ((k, _sorted_values(x for s in conds.values() for x in s.get(f"{k}_set", [])))
                                   for k in SETTINGS) if len(v) > 1}
        if mixed:
            notes.append(f"{who}: runs with different settings ({'; '.join(f'{k} {vs}' for k, vs in mixed.items())}) "
                         f"are averaged together as if they were seeds; compare them separately.")
        clean = conds.get(("none", 0.0))
        if clean is None:
            continue
        above, masked, collapsed = [], [], {}
        for (attack, eps), s in sorted(conds.items()):
            if attack in ("fgsm", "pgd") and s["accuracy_mean"] > clean["accuracy_mean"] + 0.02:
                above.append((attack, eps))
            fgsm_s = conds.get(("fgsm", eps))
            if attack == "pgd" and fgsm_s and s["accuracy_mean"] > fgsm_s["accuracy_mean"] + 0.02:
                masked.append(eps)
            if attack != "none" and s.get("dominant_share_mean", 0) >= 0.95:
                collapsed.setdefault(s.get("dominant_class"), []).append(eps)
        if above:
            where = "; ".join(f"{a.upper()} at eps={format_epsilon(e)}" for a, e in above)
            notes.append(f"{who}: accuracy under attack is above its clean accuracy ({clean['accuracy_mean']:.2f}) "
                         f"for {where}: label leaking or gradient masking, not robustness. "
                         f"Try FGSM on predicted labels and check PGD.")
        if masked:
            notes.append(f"{who}: PGD accuracy is above FGSM accuracy at eps={_eps_list(masked)}: the gradients are "
                         f"masked and FGSM figures overstate robustness.")
        for cls, eps_values in collapsed.items():
            notes.append(f"{who}: under attack at eps={_eps_list(set(eps_values))} it answers '{cls}' for almost every "
                         f"image, so its accuracy there is the share of {cls} images in the test set, not robustness.")
    return notes


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def rows_to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text; nested values (confusion matrices, per-seed lists) become JSON cells."""
    handle = io.StringIO()
    writer = csv.DictWriter(handle, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})
    return handle.getvalue()


def _cell(text: str) -> Any:
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    if text[0] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


REQUIRED_COLUMNS = ("arch", "train_mode", "train_epsilon", "attack", "test_epsilon", "accuracy", "seed")


def read_rows_csv(text: str) -> list[dict[str, Any]]:
    """Rows written by rows_to_csv (or an exported results file) back as typed dicts."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"not a busadv results file: missing column(s) {', '.join(missing)}")
    rows = [{k: _cell(v or "") for k, v in row.items() if k is not None} for row in reader]
    for n, row in enumerate(rows, start=2):
        if not isinstance(row["accuracy"], (int, float)) or not 0 <= row["accuracy"] <= 1:
            raise ValueError(f"line {n}: accuracy {row['accuracy']!r} is not a number between 0 and 1")
    return rows


def write_rows(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """CSV or JSON by the file's suffix, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        text = json.dumps(list(rows), indent=1, default=str)
    elif path.suffix.lower() == ".csv":
        text = rows_to_csv(rows)
    else:
        raise ValueError(f"{path}: results are written as .csv or .json")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


FALLBACK_RATES: dict[str, float] = {"simplecnn": 51.0, "resnet50": 3.0}  # images/s, 2 CPU cores (design notes)


def measured_rates(folder: str | os.PathLike | None = None) -> dict[str, float]:
    """Standard-training images/second per model at its default image size, from this machine's newest
    checkpoints (else design-note figures)."""
    from busadv.checkpoints import list_checkpoints

    rates = dict(FALLBACK_RATES)
    found: set[str] = set()
    for info in list_checkpoints(folder):  # newest first
        n_train = info.data.get("n_train")
        seconds = info.train_seconds
        if info.arch in found or info.train_config.get("mode") != "standard" or not n_train or not seconds:
            continue
        # Convolution cost grows with the pixel count: report the rate at the model's default size.
        scale = (info.image_size / DEFAULT_IMAGE_SIZE[Arch(info.arch)]) ** 2
        rates[info.arch] = n_train * int(info.train_config.get("epochs", 1)) / seconds * scale
        found.add(info.arch)
    return rates


def estimate_seconds(config: ExperimentConfig, images_per_second: dict[str, float], n_train: int) -> float:
    """Rough wall time of a grid from measured training throughput (adversarial epochs cost about 2x)."""
    total = 0.0
    for run in config.runs():
        rate = images_per_second.get(run.arch, math.nan)
        factor = 1.0 if run.mode == "standard" else (2.0 if run.mode == "fgsm" else 1.0 + run.pgd_steps)
        total += n_train * run.epochs * factor / rate
    return total
