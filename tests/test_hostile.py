"""Hostile and unlucky input (issue 9): every case is refused by name, in busadv's words, with nothing lost.

`pytest -m hostile` runs these with tests/test_hostile_app.py, tests/test_resume.py and
tests/test_browser_hostile.py. Where the input space is wide (epsilon and seed lists, CSV cells,
checkpoint fields) hypothesis tries many inputs; every answer must be a result or one clear error,
never a traceback of another kind.
"""

from __future__ import annotations

import csv
import gc
import io
import os
import struct
import subprocess
import sys
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.test_app import result_row
from tests.test_data import make_busi

pytestmark = pytest.mark.hostile
ROOT = Path(__file__).resolve().parent.parent
HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def png_header(width: int, height: int, bit_depth: int = 16) -> bytes:
    """A PNG that claims width x height pixels (grayscale) but holds almost no data: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


# ------------------------------------------------------------------------------------------- images

def test_a_huge_16bit_upload_is_refused_from_its_header_without_decoding():
    from busadv.app.dataset import decode_upload

    content = png_header(13_000, 13_000)  # the 328 KB file decodes to 169 million 16-bit pixels
    tracemalloc.start()
    started = time.perf_counter()
    image, message = decode_upload(content, 128)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert image is None and "169,000,000 pixels" in message and "25 million" in message
    assert seconds < 1.0 and peak < 5 * 1024**2


@pytest.mark.parametrize("side", [6_000, 30_000])  # above Pillow's warning limit; above its error limit
def test_a_bomb_is_refused_in_busadvs_words_not_pillows(tmp_path, side):
    from busadv.data import ImageRejected, decode_image

    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(side, side))
    for source in (path, path.read_bytes()):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # neither Pillow's bomb warning nor an unclosed file may escape
            with pytest.raises(ImageRejected) as info:
                decode_image(source, 64)
        message = str(info.value)
        assert f"{side * side:,} pixels refused" in message and "25 million" in message
        assert "DOS attack" not in message and "DecompressionBomb" not in message


def test_a_bomb_in_a_data_folder_is_skipped_by_name(tmp_path):
    from busadv.data import load_busi

    root = make_busi(tmp_path / "busi", per_class=3)
    (root / "benign" / "benign (9).png").write_bytes(png_header(30_000, 30_000))
    with pytest.warns(UserWarning, match=r"benign \(9\)\.png: unreadable image skipped \(ImageRejected"):
        dataset = load_busi(root, image_size=16, use_cache=False)
    assert dataset.skipped == ("benign/benign (9).png",)
    assert dataset.counts() == {"benign": 3, "malignant": 3, "normal": 3}


def test_a_large_16bit_scan_is_shrunk_before_any_float_copy(tmp_path):
    from busadv.data import decode_image

    deep = np.tile(np.linspace(0, 65535, 3000, dtype=np.float64), (2000, 1)).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    del deep
    tracemalloc.start()
    gray = decode_image(tmp_path / "deep.png", 128)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert gray.shape == (128, 128) and gray.dtype == np.uint8 and 120 < gray.mean() < 135
    assert peak < 6 * 1024**2, f"{peak / 1024**2:.0f} MB of arrays: a full-resolution float copy (48 MB) was made"


def test_decoding_leaves_no_file_open(tmp_path):
    from busadv.data import decode_image
    from busadv.data.decode import READ_ERRORS

    (tmp_path / "bomb.png").write_bytes(png_header(30_000, 30_000))
    (tmp_path / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    Image.new("L", (40, 30), 90).save(tmp_path / "good.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("bomb.png", "junk.png", "good.png"):
            try:
                decode_image(tmp_path / name, 16)
            except READ_ERRORS:
                pass
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_junk_and_empty_uploads_get_a_plain_message():
    from busadv.app.dataset import decode_upload

    assert decode_upload(b"", 64) == (None, "The file is empty.")
    image, message = decode_upload(b"%PDF-1.4 not an image", 64)
    assert image is None and "not a readable PNG or JPEG image" in message


# ------------------------------------------------------------------------------------------- settings

def test_image_size_has_an_upper_bound_checked_before_any_work(capsys, monkeypatch):
    from busadv.cli import main
    from busadv.training import TrainConfig

    monkeypatch.setattr("busadv.data.load_dataset", lambda *a, **k: pytest.fail("data loaded before the check"))
    assert main(["train", "--image-size", "4096"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: image size") and "between 8 and 512" in err and "4096" in err
    with pytest.raises(ValueError, match="between 8 and 512"):
        TrainConfig(image_size=4096)


def test_an_unknown_test_attack_is_refused_before_training(monkeypatch):
    from busadv.experiments import workflows

    monkeypatch.setattr(workflows, "run_one", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ValueError, match=r"test attacks: unknown attack 'bogus'; choose one of: fgsm"):
        workflows.train_job({"epochs": 1, "image_size": 32, "test_attacks": "fgsm,bogus"})
    assert not list(Path(os.environ["BUSADV_CHECKPOINTS"]).glob("*.pt"))


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes into read-only folders; /proc refuses everyone
        return Path("/proc/busadv-checkpoints")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("problem", ["a file", "read-only"])
def test_an_unusable_checkpoints_folder_is_refused_before_training(tmp_path, monkeypatch, problem):
    from busadv.experiments import workflows

    if problem == "a file":
        folder = tmp_path / "checkpoints"
        folder.write_text("not a folder")
    else:
        folder = _unwritable_folder(tmp_path)
    monkeypatch.setenv("BUSADV_CHECKPOINTS", str(folder))
    monkeypatch.setattr(workflows, "run_one", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ValueError, match=r"checkpoints folder .* (is a file|is not writable)") as info:
        workflows.train_job({"epochs": 1, "image_size": 32})
    assert "BUSADV_CHECKPOINTS" in str(info.value)


def test_a_job_with_a_bad_setting_fails_at_once_naming_it(tmp_path, monkeypatch):
    from busadv.experiments import workflows
    from busadv.jobs import JobStore, run_job

    monkeypatch.setattr(workflows, "run_one", lambda *a, **k: pytest.fail("training started"))
    store = JobStore(tmp_path / "jobs.sqlite")
    job_id = store.submit("train", {"epochs": 1, "image_size": 32, "test_epsilons": [0.1, 7]}, start=False)
    run_job(job_id, store)
    job = store.get(job_id)
    assert job.status == "failed" and job.progress == 0.0
    assert job.error.startswith("ValueError: test epsilons: epsilon must lie in [0, 1]") and "got 7" in job.error


def parsed_or_refused(parse, parts: list[str], option: str) -> list | None:
    """parse(the parts as a comma list, option), or None once its refusal is checked to name the option first."""
    try:
        return parse(",".join(parts), option)
    except ValueError as exc:
        assert str(exc).startswith(f"{option}: ")
        return None


EPSILON_PART = st.one_of(st.floats(-2, 2).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                         st.integers(-300, 300).map(lambda k: f"{k}/255"), st.text(max_size=8))
SEED_PART = st.one_of(st.integers(-5, 2**33).map(str), st.text(max_size=8),
                      st.tuples(st.integers(-3, 50), st.integers(-3, 50)).map(lambda r: f"{r[0]}-{r[1]}"))


@HYPOTHESIS
@given(st.lists(EPSILON_PART, max_size=12))
def test_any_epsilon_list_parses_or_names_the_option(parts):
    from busadv.attacks import parse_epsilon_list

    values = parsed_or_refused(parse_epsilon_list, parts, "test epsilons")
    assert values is None or all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values)


@HYPOTHESIS
@given(st.lists(SEED_PART, max_size=10))
def test_any_seed_list_parses_or_names_the_option(parts):
    from busadv.training import parse_seed_list
    from busadv.training.config import MAX_SEED

    seeds = parsed_or_refused(parse_seed_list, parts, "seeds")
    assert seeds is None or (all(isinstance(s, int) and 0 <= s <= MAX_SEED for s in seeds)
                             and len(set(seeds)) == len(seeds))


def test_a_bad_seed_on_the_command_line_names_the_option(capsys):
    from busadv.cli import main

    with pytest.raises(SystemExit) as info:
        main(["experiment", "--seeds", "0,a"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --seeds: seeds: 'a' is not a whole number or a range like 0-4" in err
    assert "invalid literal" not in err


def test_too_few_images_per_class_is_said_in_busadvs_words():
    from busadv.data import make_phantoms, split_dataset

    few = make_phantoms(image_size=16, counts={"benign": 1, "malignant": 4, "normal": 4}, use_cache=False)
    with pytest.raises(ValueError) as info:
        split_dataset(few, 0.2, seed=0)
    assert "'benign' has 1" in str(info.value) and "at least 2 per class" in str(info.value)
    assert "least populated class" not in str(info.value)  # scikit-learn's wording


# ------------------------------------------------------------------------------------------- messages

def test_cli_warnings_are_one_line_without_module_paths(tmp_path):
    root = make_busi(tmp_path / "busi", per_class=3)
    (root / "benign" / "benign (2).png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="default")
    done = subprocess.run([sys.executable, "-m", "busadv", "data", "--data", str(root), "--image-size", "16"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: ")
    assert "benign (2).png: unreadable image skipped" in lines[0]
    assert "UserWarning" not in done.stderr and "ResourceWarning" not in done.stderr and ".py:" not in done.stderr
    assert '"skipped": [\n  "benign/benign (2).png"' in done.stdout


# ------------------------------------------------------------------------------------------- results CSV

def _csv_line(**changes: str) -> str:
    """A one-row results CSV as busadv writes it, with some cells replaced."""
    from busadv.results import rows_to_csv

    reader = csv.DictReader(io.StringIO(rows_to_csv([result_row("standard", 0.0, "fgsm", 8 / 255, 0, 0.7)])))
    row = next(reader)
    row.update(changes)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(reader.fieldnames or []), lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    return out.getvalue()


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("attack", "=evil", "unknown attack '=evil'"),
    ("test_epsilon", "a lot", "test_epsilon 'a lot'"),
    ("confusion", "[[1, 2], [3, 4]]", "is not a 3 x 3 matrix"),
    ("arch", "vgg99", "unknown model 'vgg99'"),
    ("train_mode", "magic", "unknown training mode 'magic'"),
    ("run", "x" * 200_000, "larger than"),
])
def test_a_results_csv_with_a_bad_cell_is_refused_naming_line_and_cell(column, value, reason):
    from busadv.results import read_rows

    with pytest.raises(ValueError) as info:
        read_rows(_csv_line(**{column: value}).encode())
    message = str(info.value)
    # An over-long cell is refused by the csv reader itself, whose line count may lag by one.
    assert message.startswith("line 2: ") or (column == "run" and message.startswith("line ")), message
    assert reason in message
    assert len(message) < 400


@HYPOTHESIS
@given(st.sampled_from(["run", "seed", "arch", "train_mode", "train_epsilon", "attack", "test_epsilon", "accuracy",
                        "balanced_accuracy", "confusion", "collapsed", "n", "data_source", "recall_benign", "epochs"]),
       st.one_of(st.text(max_size=30), st.floats(allow_nan=True, allow_infinity=True).map(str),
                 st.integers().map(str), st.sampled_from(["=1+1", "@SUM(A1)", "[]", "[[1]]", "nan", "-0", "1e400"])))
def test_any_edited_csv_cell_is_read_or_refused_by_line(column, value):
    from busadv.attacks import ATTACKS
    from busadv.models import MODELS
    from busadv.results import read_rows
    from busadv.training import MODES

    try:
        rows = read_rows(_csv_line(**{column: value}).encode())
    except ValueError as exc:  # a NUL byte makes the file binary, whatever the line
        # A lone CR left unquoted by a writer ending lines with \n is a line end to the reader (old Mac files):
        # the row then ends early and the next line is the one found wanting.
        lines = ("line 2: ", "line 3: ") if "\r" in value else ("line 2: ",)
        assert str(exc).startswith(lines) or str(exc) == "this is a binary file, not a results CSV or JSON"
        return
    (row,) = rows
    assert row.arch in MODELS and row.train_mode in MODES and (row.attack == "none" or row.attack in ATTACKS)
    assert 0 <= row.test_epsilon <= 1 and (np.isnan(row.accuracy) or 0 <= row.accuracy <= 1)


def test_binary_junk_is_refused_without_codec_jargon():
    from busadv.results import read_rows

    for junk, expected in ((bytes(range(256)) * 4, "binary file"), (b"\xff\xfe\xfa\xfb" * 300, "not UTF-8 text")):
        with pytest.raises(ValueError) as info:
            read_rows(junk)
        assert expected in str(info.value) and "codec" not in str(info.value)


def test_csv_export_neutralises_formula_cells_and_import_restores_them():
    from busadv.results import read_rows, rows_to_csv

    hostile = {"run": '=HYPERLINK("http://evil.invalid","x")', "data_source": "+1+1", "checkpoint": "-2+3",
               "dominant_class": "@SUM(A1)"}
    text = rows_to_csv([result_row("standard", 0.0, "none", 0.0, 0, 0.7, **hostile)])
    cells = next(csv.DictReader(io.StringIO(text)))
    for column, value in hostile.items():
        assert cells[column] == "'" + value
    (row,) = read_rows(text.encode())
    assert {column: getattr(row, column) for column in hostile} == hostile
