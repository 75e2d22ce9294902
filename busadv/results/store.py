"""Where every result lands: one CSV file per train, evaluate or experiment, from the CLI and jobs alike.

Why files in a folder: writers never share a file (each run writes its own, atomically), so concurrent
jobs cannot collide, and the Results page shows everything without a manual import.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from busadv.results.io import read_rows_file, write_rows
from busadv.results.row import ResultRow
from busadv.settings import home


def results_dir() -> Path:
    path = home() / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_rows(rows: Sequence[ResultRow], label: str, folder: str | os.PathLike | None = None) -> Path:
    """Write rows to a new file of the store; its name says when and what."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in label)[:60] or "results"
    path = Path(folder) if folder else results_dir()
    return write_rows(rows, path / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{uuid.uuid4().hex[:6]}.csv")


def store_files(folder: str | os.PathLike | None = None) -> list[Path]:
    """The store's files, newest first; with the rows of grids still running or cut short (UNSAVED)."""
    path = Path(folder) if folder else results_dir()
    found = [*path.glob("*.csv"), *path.glob(f"{UNSAVED}/*/*.csv")]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


# ------------------------------------------------------------------------------------------ a grid's rows, run by run
# Why: a grid's rows used to reach the store only once the whole grid ended, so a SIGTERM, a Ctrl-C or a
# crash (even after the last run finished) lost every finished run. Each run now writes its rows here the
# moment it ends; the grid's one file replaces them when the grid ends, and an interrupted grid turns them
# into a file of its own. The store reads this folder too, so nothing finished is ever out of sight.
UNSAVED = ".unsaved"


def unsaved_folder(grid_id: str, folder: str | os.PathLike | None = None) -> Path:
    """Where the runs of one grid keep their rows until the grid's own file holds them."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in grid_id)[:80] or "grid"
    return (Path(folder) if folder else results_dir()) / UNSAVED / safe


def keep_unsaved(unsaved: Path, label: str, folder: str | os.PathLike | None = None) -> Path | None:
    """The rows of a grid cut short, as one file of the store (None when no run had finished); the runs' files go."""
    rows: list[ResultRow] = []
    for path in sorted(unsaved.glob("*.csv")) if unsaved.is_dir() else []:
        try:
            rows.extend(read_rows_file(path))
        except (OSError, ValueError):
            continue
    if not rows:
        discard_unsaved(unsaved)
        return None
    stored = save_rows(rows, label, folder)
    discard_unsaved(unsaved)
    return stored


def discard_unsaved(unsaved: Path | None) -> None:
    """Once the grid's file holds its rows: the runs' own files are not needed any more."""
    if unsaved is not None:
        shutil.rmtree(unsaved, ignore_errors=True)


def load_store(folder: str | os.PathLike | None = None) -> tuple[list[ResultRow], list[str]]:
    """(every stored row, newest file first, each model and condition once; problems with unreadable files)."""
    rows: list[ResultRow] = []
    problems: list[str] = []
    for path in store_files(folder):
        try:
            rows.extend(read_rows_file(path))
        except (OSError, ValueError) as exc:
            problems.append(f"{path.name}: {exc}")
    return unique_rows(rows), problems


def unique_rows(rows: Sequence[ResultRow]) -> list[ResultRow]:
    """Each (model, condition) once, the first (newest) occurrence kept.

    A checkpoint evaluated by its training run and again by an evaluation would otherwise count as two
    runs and shrink the error bars.
    """
    seen: set[tuple] = set()
    out = []
    for row in rows:
        key = row.identity()
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out
