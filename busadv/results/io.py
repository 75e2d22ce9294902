"""Result rows to and from CSV and JSON files.

Reading validates every cell (types, ranges, known names, the confusion matrix's shape) and says which
line is wrong; a results file is data from elsewhere and is never trusted. Writing neutralises cells
that a spreadsheet would run as a formula (a leading = + - @), and is atomic.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from busadv.data.cache import atomic_write_text
from busadv.data.split import LEGACY_POLICIES
from busadv.results.row import ROW_FIELDS, ResultRow, check_names

REQUIRED_COLUMNS = ("arch", "train_mode", "train_epsilon", "attack", "test_epsilon", "accuracy", "seed")
MAX_CELL = 2000            # characters: a longer cell is not something busadv wrote
MAX_ROWS = 200_000
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _neutralise(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _restore(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_START) else text


def _as_dicts(rows: Iterable[ResultRow | dict[str, Any]]) -> list[dict[str, Any]]:
    return [r.to_dict() if isinstance(r, ResultRow) else dict(r) for r in rows]


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def rows_to_csv(rows: Iterable[ResultRow | dict[str, Any]]) -> str:
    """CSV text; nested values (confusion matrices) become JSON cells; formula-like text is neutralised."""
    dicts = _as_dicts(rows)
    handle = io.StringIO()
    writer = csv.DictWriter(handle, fieldnames=_columns(dicts), lineterminator="\n")
    writer.writeheader()
    for row in dicts:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else _neutralise(v) for k, v in row.items()})
    return handle.getvalue()


def write_rows(rows: Iterable[ResultRow | dict[str, Any]], path: str | os.PathLike) -> Path:
    """CSV or JSON by the file's suffix, written atomically (concurrent writers never collide)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        text = json.dumps(_as_dicts(rows), indent=1, default=str)
    elif suffix == ".csv":
        text = rows_to_csv(rows)
    else:
        raise ValueError(f"{path}: results are written as .csv or .json")
    return atomic_write_text(text, path)


# ------------------------------------------------------------------------------------------ reading

def _text(value: Any) -> str:
    return _restore(str(value))


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("is not a whole number")
    try:
        number = float(value)
    except OverflowError:  # an int of hundreds of digits
        raise ValueError("is far larger than any busadv count") from None
    if not number.is_integer() or abs(number) > 2**53:
        raise ValueError("is not a whole number")
    return int(number)


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("is not a number")
    return float(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError("is not true or false")


def _between(low: float, high: float, nan: bool = False) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        number = _float(value)
        if math.isnan(number) and nan:
            return number
        if not low <= number <= high:
            raise ValueError(f"is not between {low:g} and {high:g}")
        return number
    return parse


def _non_negative_int(value: Any) -> int:
    number = _int(value)
    if number < 0:
        raise ValueError("is negative")
    return number


FRACTION = _between(0.0, 1.0, nan=True)
PARSERS: dict[str, Callable[[Any], Any]] = {
    "seed": _non_negative_int, "epochs": _non_negative_int, "batch_size": _non_negative_int,
    "image_size": _non_negative_int, "train_pgd_steps": _non_negative_int, "eval_pgd_steps": _non_negative_int,
    "n": _non_negative_int, "malignant_missed": _non_negative_int, "malignant_total": _non_negative_int,
    "changed": _non_negative_int, "overfit_epoch": _non_negative_int, "job": _non_negative_int,
    "warmup_epochs": _non_negative_int, "severity": _non_negative_int, "trades_beta": _between(0.0, 100.0),
    "train_epsilon": _between(0.0, 1.0), "test_epsilon": _between(0.0, 1.0), "lr": _between(0.0, 10.0),
    "test_fraction": _between(0.0, 1.0), "clean_mix": _between(0.0, 1.0), "train_seconds": _between(0.0, 1e9),
    "accuracy": FRACTION, "balanced_accuracy": FRACTION, "malignant_sensitivity": FRACTION,
    "majority_rate": FRACTION, "dominant_share": FRACTION,
    "random_start": _bool, "pretrained": _bool, "collapsed": _bool, "simulated": _bool,
    "weight_decay": _between(0.0, 1.0), "ema_decay": _between(0.0, 1.0), "val_fraction": _between(0.0, 1.0),
    "patience": _non_negative_int, "chosen_epoch": _non_negative_int, "refit": _bool,
    "critical_weight": _between(0.0, 10.0),
}
TEXT_FIELDS = {f.name for f in fields(ResultRow) if f.type in ("str", "str | None")}


MAX_DEPTH = 32   # JSON nesting: busadv writes 3 levels at most; json's own limit ends in a RecursionError
MAX_DIGITS = 30  # a whole number in JSON; Python's own limit (4300) ends in a message about sys settings


def _check_depth(text: str) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH before parsing it (linear; strings are left out of the count)."""
    brackets = re.sub(r"[^\[\]{}]", "", re.sub(r'"(?:[^"\\]|\\.)*"', "", text))
    steps = brackets.translate(_DEPTH_STEPS)
    if steps and max(itertools.accumulate(1 if c == "+" else -1 for c in steps)) > MAX_DEPTH:
        raise ValueError(f"is nested more than {MAX_DEPTH} levels deep, which no busadv file is")


_DEPTH_STEPS = str.maketrans({"[": "+", "{": "+", "]": "-", "}": "-"})


def _json_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_DIGITS:
        raise ValueError(f"holds a whole number of {len(digits.lstrip('-')):,} digits, which no busadv value has")
    return int(digits)


def parse_json(text: str) -> Any:
    """json.loads with bounded depth and number size: a ValueError in busadv's words, never a RecursionError."""
    _check_depth(text)
    try:
        return json.loads(text, parse_int=_json_int)
    except RecursionError:
        raise ValueError(f"is nested more than {MAX_DEPTH} levels deep, which no busadv file is") from None


def _confusion(value: Any, size: int) -> list[list[int]]:
    matrix = parse_json(value) if isinstance(value, str) else value
    if (not isinstance(matrix, list) or len(matrix) != size
            or not all(isinstance(r, list) and len(r) == size for r in matrix)):
        raise ValueError(f"is not a {size} x {size} matrix")
    return [[_non_negative_int(v) for v in r] for r in matrix]


def row_from_dict(values: dict[str, Any]) -> ResultRow:
    """A ResultRow from plain values (a CSV line, a JSON object, a stored job result), every field checked."""
    missing = [c for c in REQUIRED_COLUMNS if values.get(c) in (None, "")]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    kwargs: dict[str, Any] = {}
    recall: dict[str, float] = {}
    for key, value in values.items():
        if value is None or value == "":
            continue
        if isinstance(value, str) and len(value) > MAX_CELL:
            raise ValueError(f"{key}: a cell of {len(value)} characters is longer than any busadv value")
        try:
            if key.startswith("recall_"):
                recall[_text(key[len("recall_"):])[:40]] = FRACTION(value)
            elif key in PARSERS:
                kwargs[key] = PARSERS[key](value)
            elif key in TEXT_FIELDS:
                kwargs[key] = _text(value)
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{key} {str(value)[:40]!r} {exc}") from None
    if "confusion" in values and values["confusion"] not in (None, ""):
        try:
            kwargs["confusion"] = _confusion(values["confusion"], len(recall) or 3)
        except (ValueError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"confusion {str(values['confusion'])[:40]!r} {exc}") from None
    for name in ("arch", "train_mode", "attack", "split_policy", "adv_labels", "class_balance", "augment",
                 "optimizer", "schedule", "select"):
        if name in kwargs:
            kwargs[name] = kwargs[name].strip().lower()
    if "split_policy" in kwargs:
        kwargs["split_policy"] = LEGACY_POLICIES.get(kwargs["split_policy"], kwargs["split_policy"])
    row = ResultRow(run=kwargs.pop("run", ""), seed=kwargs.pop("seed"), arch=kwargs.pop("arch"),
                    train_mode=kwargs.pop("train_mode"), train_epsilon=kwargs.pop("train_epsilon"),
                    recall=recall, **kwargs)
    check_names(row)
    return row


def read_rows(data: bytes | str, suffix: str = ".csv") -> list[ResultRow]:
    """Rows of a results file (CSV written by busadv, or its JSON); ValueError naming the first bad line."""
    if isinstance(data, bytes):
        if b"\x00" in data[:8192]:
            raise ValueError("this is a binary file, not a results CSV or JSON")
        if suffix.lower() != ".json":  # decoded as it is read: no second copy of a large upload as text
            return _read_csv(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline=""))
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValueError("this file is not UTF-8 text, so it is not a busadv results file") from None
    if suffix.lower() == ".json":
        return _read_json(data)
    return _read_csv(io.StringIO(data, newline=""))


def _read_json(text: str) -> list[ResultRow]:
    try:
        items = parse_json(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:
        raise ValueError(f"this JSON file {exc}") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ValueError("a results JSON file holds a list of rows")
    if len(items) > MAX_ROWS:
        raise ValueError(f"{len(items)} rows; at most {MAX_ROWS} are read")
    rows = []
    for line, values in enumerate(items, start=1):
        try:
            rows.append(row_from_dict(values))
        except ValueError as exc:
            raise ValueError(f"line {line}: {exc}") from None
    return rows


def _read_csv(handle: io.TextIOBase) -> list[ResultRow]:
    """Line by line: only the rows read so far are held, never the file's lines as dicts (20 MB took 1 GB).

    newline="" on the handle lets the csv module see every line end (\\n, \\r\\n, and a lone \\r from old Macs).
    """
    csv.field_size_limit(MAX_CELL * 4)
    reader = csv.DictReader(handle)
    try:
        columns = reader.fieldnames or []
    except csv.Error as exc:
        raise ValueError(f"not a readable CSV file ({exc})") from None
    except UnicodeDecodeError:
        raise ValueError("this file is not UTF-8 text, so it is not a busadv results file") from None
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise ValueError(f"line 1: column {twice[0][:40]!r} appears twice; a results file names each column once "
                         f"(which one to believe?)")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"not a busadv results file: missing column(s) {', '.join(missing)}")
    rows: list[ResultRow] = []
    line = 1
    try:
        for line, values in enumerate(reader, start=2):
            if len(rows) >= MAX_ROWS:
                raise ValueError(f"more than {MAX_ROWS} rows; at most {MAX_ROWS} are read")
            try:
                rows.append(row_from_dict({k: v for k, v in values.items() if k is not None}))
            except ValueError as exc:
                raise ValueError(f"line {line}: {exc}") from None
    except csv.Error as exc:
        raise ValueError(f"line {reader.reader.line_num}: {exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"line {line + 1}: not UTF-8 text, so this is not a busadv results file") from None
    return rows


def read_rows_file(path: str | os.PathLike) -> list[ResultRow]:
    """A results file from disk; a CSV is read as a stream (bounded memory, whatever its size)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return read_rows(path.read_bytes(), path.suffix)
    with open(path, "rb") as raw:
        if b"\x00" in raw.read(8192):
            raise ValueError("this is a binary file, not a results CSV or JSON")
        raw.seek(0)
        with io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle:
            return _read_csv(handle)


__all__ = ["REQUIRED_COLUMNS", "ROW_FIELDS", "read_rows", "read_rows_file", "row_from_dict", "rows_to_csv",
           "write_rows"]
