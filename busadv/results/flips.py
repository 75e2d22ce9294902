"""Per-image flip epsilons in files and in the results store (a folder of its own beside the result rows)."""

from __future__ import annotations

import csv
import io
import math
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from busadv.attacks import ATTACKS
from busadv.data.cache import atomic_write_text
from busadv.evaluation.robustness import ImageFlip
from busadv.results.io import MAX_CELL, rows_to_csv
from busadv.results.store import results_dir

FLIP_FIELDS = tuple(f.name for f in fields(ImageFlip))


def flips_dir(folder: str | os.PathLike | None = None) -> Path:
    path = Path(folder) if folder else results_dir() / "flips"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_flips(flips: Sequence[ImageFlip], label: str, folder: str | os.PathLike | None = None) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)[:60] or "flips"
    path = flips_dir(folder) / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{uuid.uuid4().hex[:6]}.csv"
    return atomic_write_text(rows_to_csv([f.to_dict() for f in flips]), path)


def _flip(values: dict[str, str]) -> ImageFlip:
    def epsilon(text: str) -> float | None:
        if text in ("", "None"):
            return None
        value = float(text)
        if not 0 <= value <= 1 or math.isnan(value):
            raise ValueError(f"epsilon {text[:20]!r} is outside [0, 1]")
        return value

    if any(len(v or "") > MAX_CELL for v in values.values()):
        raise ValueError("a cell is longer than any busadv value")
    attack = (values.get("attack") or "").strip().lower()
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack[:40]!r}")
    max_epsilon = epsilon(values.get("max_epsilon", ""))
    return ImageFlip(name=values.get("name", ""), label=values.get("label", ""),
                     clean_prediction=values.get("clean_prediction", ""), attack=attack,
                     flip_epsilon=epsilon(values.get("flip_epsilon", "")),
                     flipped_to=values.get("flipped_to") or None, max_epsilon=max_epsilon or 0.0,
                     checkpoint=values.get("checkpoint", ""), run=values.get("run", ""),
                     model=values.get("model", ""), data_source=values.get("data_source", ""),
                     simulated=values.get("simulated") == "True")


def read_flips(text: str) -> list[ImageFlip]:
    reader = csv.DictReader(io.StringIO(text))
    out = []
    for line, values in enumerate(reader, start=2):
        try:
            out.append(_flip({k: v for k, v in values.items() if k is not None}))
        except ValueError as exc:
            raise ValueError(f"line {line}: {exc}") from None
    return out


def load_flips(folder: str | os.PathLike | None = None) -> tuple[list[ImageFlip], list[str]]:
    """Every stored flip record, newest file first, each (model, image, attack) once; problems by file."""
    out: list[ImageFlip] = []
    problems: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for path in sorted(flips_dir(folder).glob("*.csv"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True):
        try:
            records = read_flips(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        for record in records:
            key = (record.checkpoint or record.run, record.name, record.attack)
            if key not in seen:
                seen.add(key)
                out.append(record)
    return out, problems
