"""Hostile results files (issue 19 F11 and weak cases): bounded parsing with a clear message naming the line, and a
large file read as a stream."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_app import result_row
from tests.test_hostile import _csv_line

pytestmark = pytest.mark.hostile
ROOT = Path(__file__).resolve().parent.parent


def _json_rows(**changes) -> list[dict]:
    row = result_row("standard", 0.0, "fgsm", 8 / 255, 0, 0.7).to_dict()
    row.update(changes)
    return [row]


@pytest.mark.parametrize("depth", [40, 1_000, 100_000])
def test_a_deeply_nested_json_file_is_refused_without_recursion(depth):
    from busadv.results import read_rows

    text = "[" * depth + "]" * depth
    with pytest.raises(ValueError) as info:
        read_rows(text.encode(), ".json")
    assert "nested" in str(info.value) and "RecursionError" not in str(info.value) and len(str(info.value)) < 300


def test_a_deeply_nested_value_inside_a_json_row_is_refused_by_line():
    from busadv.results import read_rows

    rows = _json_rows()
    text = json.dumps(rows).replace('"confusion": [', '"confusion": ' + "[" * 5000 + "[", 1)
    text = text.replace("]]", "]]" + "]" * 5000, 1)
    with pytest.raises(ValueError) as info:
        read_rows(text.encode(), ".json")
    assert "nested" in str(info.value)


def test_a_deeply_nested_csv_cell_is_refused_naming_line_and_cell():
    from busadv.results import read_rows

    with pytest.raises(ValueError) as info:
        read_rows(_csv_line(confusion="[" * 900 + "]" * 900).encode())
    message = str(info.value)
    assert message.startswith("line 2: confusion") and "nested" in message




@pytest.mark.parametrize("digits", [5_000, 100_000])
def test_a_number_with_thousands_of_digits_is_refused_in_busadvs_words(digits):
    from busadv.results import read_rows

    text = json.dumps(_json_rows()).replace('"seed": 0', '"seed": ' + "9" * digits, 1)
    with pytest.raises(ValueError) as info:
        read_rows(text.encode(), ".json")
    message = str(info.value)
    assert "digits" in message and "set_int_max_str_digits" not in message and len(message) < 300


def test_a_csv_with_cr_only_line_ends_is_read():
    from busadv.results import read_rows

    text = _csv_line().replace("\n", "\r")
    (row,) = read_rows(text.encode())
    assert row.attack == "fgsm" and row.accuracy == pytest.approx(0.7)


def test_a_duplicated_csv_column_is_refused_by_name():
    from busadv.results import read_rows

    lines = _csv_line().splitlines()
    header, values = next(csv.reader([lines[0]])), next(csv.reader([lines[1]]))
    at = header.index("accuracy")
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header + ["accuracy"], values + ["0.99"]])
    with pytest.raises(ValueError) as info:
        read_rows(out.getvalue().encode())
    assert "'accuracy'" in str(info.value) and "twice" in str(info.value)
    assert values[at] != "0.99"


STREAM_AND_MEASURE = """
import resource, sys
from busadv.results import read_rows, read_rows_file
data = open(sys.argv[1], "rb").read() if sys.argv[2] == "upload" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = read_rows(data) if data is not None else read_rows_file(sys.argv[1])
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, len(rows))
"""


@pytest.mark.parametrize("how", ["file", "upload"])
def test_a_20_mb_csv_is_imported_in_bounded_memory(tmp_path, how):
    from busadv.results import rows_to_csv

    line = rows_to_csv([result_row("standard", 0.0, "fgsm", 8 / 255, 0, 0.7)]).splitlines()
    header, body = line[0], line[1]
    path = tmp_path / "big.csv"
    copies, size = 0, len(header) + 1
    with open(path, "w") as out:
        out.write(header + "\n")
        while size < 20 * 1024**2:
            text = body.replace("standard-0.0-s0", f"run-{copies}", 1) + "\n"
            out.write(text)
            copies, size = copies + 1, size + len(text)
    assert path.stat().st_size >= 20 * 1024**2
    done = subprocess.run([sys.executable, "-c", STREAM_AND_MEASURE, str(path), how], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-2000:]
    grown, count = (int(v) for v in done.stdout.split())
    assert count == copies
    assert grown < 300, f"+{grown} MB to import a 20 MB CSV (581 MB before)"


@pytest.mark.parametrize("cell", ["[[" + "9" * 1900 + ", 1, 1], [1, 1, 1], [1, 1, 1]]", "1" + "0" * 400])
@pytest.mark.parametrize("column", ["confusion", "n"])
def test_a_csv_cell_with_a_huge_whole_number_is_refused_by_line(column, cell):
    from busadv.results import read_rows

    with pytest.raises(ValueError) as info:
        read_rows(_csv_line(**{column: cell}).encode())
    message = str(info.value)
    assert message.startswith(f"line 2: {column}") and "set_int_max_str_digits" not in message
