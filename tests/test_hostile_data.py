"""Hostile data folders and images (issue 19 F7, F14 and weak cases): one odd file is handled by name, never the
whole folder refused; costs stay bounded (near-duplicate grouping in O(N) memory, tall/wide images decoded small)."""

from __future__ import annotations

import json
import os
import struct
import tracemalloc
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_data import make_busi

pytestmark = pytest.mark.hostile
LATIN1 = b"benign (9) caf\xe9.png"  # "café" in Latin-1: not valid UTF-8


def _latin1_file(root: Path, name: bytes = LATIN1, folder: str = "benign") -> Path:
    path = os.path.join(os.fsencode(root / folder), name)
    Image.new("L", (40, 30), 120).save(open(path, "wb"), format="PNG")  # noqa: SIM115 - closed by PIL
    return Path(os.fsdecode(path))


def test_a_file_name_that_is_not_utf8_is_skipped_by_name_not_the_folder(tmp_path):
    from busadv.data import dataset_summary, load_busi

    root = make_busi(tmp_path / "busi", per_class=3)
    _latin1_file(root)
    with pytest.warns(UserWarning, match=r"caf\\xe9\.png: file name is not valid UTF-8") as caught:
        dataset = load_busi(root, image_size=16, use_cache=True)
    assert dataset.counts() == {"benign": 3, "malignant": 3, "normal": 3}
    assert dataset.skipped == ("benign/benign (9) caf\\xe9.png",)
    assert all(n.encode("utf-8") for n in dataset.names)
    json.dumps(dataset_summary(dataset), ensure_ascii=False).encode("utf-8")  # printable everywhere
    assert "rename" in str(caught[0].message)


def test_a_mask_whose_name_is_not_utf8_does_not_break_the_folder(tmp_path):
    from busadv.data import load_busi

    root = make_busi(tmp_path / "busi", per_class=3)
    _latin1_file(root, b"benign (1)_mask_\xe9.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = load_busi(root, image_size=16)
    assert dataset.counts() == {"benign": 3, "malignant": 3, "normal": 3}


def test_the_cli_data_command_reads_a_folder_with_a_latin1_name(tmp_path, capsys):
    from busadv.cli import main

    root = make_busi(tmp_path / "busi", per_class=3)
    _latin1_file(root, folder="normal")
    assert main(["data", "--data", str(root), "--image-size", "16"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["images"] == 9 and "not valid UTF-8" in err and err.count("\n") == 1


@pytest.mark.parametrize("kind", ["fifo", "folder", "broken-link", "link-to-dev-zero"])
def test_an_image_name_that_is_no_regular_file_is_listed_as_skipped_without_blocking(tmp_path, capsys, kind):
    from busadv.cli import main
    from busadv.data import load_busi

    root = make_busi(tmp_path / "busi", per_class=3)
    odd = root / "malignant" / "malignant (9).png"
    if kind == "fifo":
        os.mkfifo(odd)  # opening it for reading would block for ever
    elif kind == "folder":
        odd.mkdir()
    else:
        odd.symlink_to(tmp_path / "gone.png" if kind == "broken-link" else "/dev/zero")
    for use_cache in (True, True, False):  # the second read comes from the cache: the list must not go stale
        with pytest.warns(UserWarning, match=r"malignant \(9\)\.png: not a regular file"):
            dataset = load_busi(root, image_size=16, use_cache=use_cache)
        assert dataset.counts() == {"benign": 3, "malignant": 3, "normal": 3}
        assert dataset.skipped == ("malignant/malignant (9).png (not a regular file)",)
    assert main(["data", "--data", str(root), "--image-size", "16"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["skipped"] == ["malignant/malignant (9).png (not a regular file)"]
    assert "not a regular file" in err


def test_a_nan_tiff_is_skipped_with_a_warning_naming_the_file(tmp_path):
    from busadv.data import load_busi

    root = make_busi(tmp_path / "busi", per_class=3)
    values = np.full((30, 40), np.nan, dtype=np.float32)
    values[:5] = 0.5
    Image.fromarray(values, mode="F").save(root / "malignant" / "malignant (7).tif")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = load_busi(root, image_size=16, use_cache=False)
    texts = [str(w.message) for w in caught]
    assert any("malignant (7).tif" in t and "NaN" in t for t in texts), texts
    assert not any("invalid value encountered" in t for t in texts), texts  # numpy's nameless RuntimeWarning
    assert dataset.counts()["malignant"] in (3, 4)


def _tall_png(path: Path, width: int, height: int) -> None:
    """A valid 8-bit grayscale PNG of width x height pixels (gray bands 1000 rows tall)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = np.zeros((height, width + 1), dtype=np.uint8)  # each row: filter byte 0, then its pixels
    raw[:, 1:] = ((np.arange(height) // 1000) % 256).astype(np.uint8)[:, None]
    data = zlib.compress(raw.tobytes(), 6)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))


DECODE_AND_MEASURE = """
import resource, sys
from busadv.data import ImageRejected, decode_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    outcome = str(decode_image(sys.argv[1], 64).shape)
except ImageRejected as exc:
    outcome = str(exc)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
print(outcome)
"""


@pytest.mark.parametrize(("width", "height"), [(1, 25_000_000), (25_000_000, 1), (400, 40_000)])
def test_a_sliver_of_an_image_is_refused_or_decoded_in_bounded_memory(tmp_path, width, height):
    """Pillow's own buffers are invisible to tracemalloc: the peak RSS of a process that only decodes it."""
    import subprocess
    import sys

    path = tmp_path / "sliver.png"
    _tall_png(path, width, height)
    done = subprocess.run([sys.executable, "-c", DECODE_AND_MEASURE, str(path)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parent.parent,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr
    grown, outcome = done.stdout.splitlines()
    assert int(grown) < 60, f"+{grown} MB to decode a {width} x {height} image (+562 MB before)"
    assert outcome == "(64, 64)" or (f"{width} x {height} pixels refused" in outcome and "fold" in outcome)


# ------------------------------------------------------------------------------------------- F14 near-duplicates

def _random_hashes(n: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 2**63, n, dtype=np.int64))


def _reference_groups(hashes: torch.Tensor, bits: int) -> list[int]:
    """The definition, pair by pair (small N only): union of every pair within `bits`."""
    h = [int(v) & (2**64 - 1) for v in hashes.tolist()]
    parent = list(range(len(h)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a in range(len(h)):
        for b in range(a + 1, len(h)):
            if bin(h[a] ^ h[b]).count("1") <= bits:
                ra, rb = root(a), root(b)
                parent[max(ra, rb)] = min(ra, rb)
    return [root(i) for i in range(len(h))]


def test_near_duplicate_groups_match_the_pairwise_definition():
    from busadv.data.duplicates import near_groups

    rng = np.random.default_rng(1)
    base = rng.integers(0, 2**63, 60, dtype=np.int64)
    copies = []
    for value in base[:40]:  # near copies at 0-14 flipped bits: some inside the threshold, some outside
        flips = rng.choice(64, size=int(rng.integers(0, 15)), replace=False)
        copies.append(int(value) ^ sum(1 << int(f) for f in flips))
    hashes = torch.from_numpy(np.array(list(base) + copies, dtype=np.uint64).view(np.int64))
    for bits in (0, 4, 10):
        assert near_groups(hashes, bits).tolist() == _reference_groups(hashes, bits)


def test_near_duplicate_grouping_memory_grows_linearly():
    """Ten times the images may cost about ten times the memory, not a hundred (N x N x 64 bytes before)."""
    from busadv.data.duplicates import near_groups

    peaks = []
    for n in (1_000, 10_000):
        hashes = _random_hashes(n)
        tracemalloc.start()
        near_groups(hashes)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 500 * 1024**2
    assert peaks[1] / peaks[0] < 25, f"{peaks[0] / 1024**2:.1f} MB -> {peaks[1] / 1024**2:.1f} MB: quadratic"


def test_a_groups_spread_is_measured_within_the_group_only(monkeypatch):
    """The Dataset page's 'hashes differ by at most' once built the N x N matrix for every image."""
    from busadv.data import duplicates

    hashes = torch.tensor([0b0, 0b1, 0b111, 0b1111111, -1], dtype=torch.int64)
    sizes = []
    real = duplicates.hash_distances
    monkeypatch.setattr(duplicates, "hash_distances", lambda h: sizes.append(len(h)) or real(h))
    assert duplicates.group_spread(hashes, [0, 1, 2]) == 3
    assert duplicates.group_spread(hashes, [0, 4]) == 64
    assert sizes == [3, 2]
