"""busadv.data: BUSI folders as users download them, the cache, bad folders and the split."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from busadv import data
from busadv.data import BUSI, DatasetError, load_busi, load_dataset, split_dataset, split_indices

CLASSES = BUSI.classes


def _save(path: Path, mode: str = "L", size: tuple[int, int] = (60, 50), value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    if mode == "I;16":
        arr = (rng.integers(0, 65535, size[::-1])).astype(np.uint16)
        Image.fromarray(arr).save(path)
        return
    arr = rng.integers(0, 255, size[::-1]).astype(np.uint8)
    gray = Image.fromarray(arr)
    gray.convert(mode).save(path)


def make_busi(root: Path, per_class: int = 6) -> Path:
    """A BUSI-shaped folder with the original download's quirks: masks, mixed modes and sizes."""
    modes = ["L", "RGB", "RGBA", "I;16", "P", "RGB"]
    for label in CLASSES:
        for i in range(per_class):
            name = f"{label} ({i + 1})"
            _save(root / label / f"{name}.png", modes[i % len(modes)], (40 + 7 * i, 30 + 5 * i))
            _save(root / label / f"{name}_mask.png", "L")
        _save(root / label / f"{label} (1)_mask_1.png", "L")
        (root / label / ".DS_Store").write_bytes(b"\x00\x01junk")
        _save(root / label / ".hidden.png", "L")
    return root


def test_loads_busi_skipping_masks_and_hidden_files(tmp_path):
    dataset = load_busi(make_busi(tmp_path / "busi"), image_size=32)
    assert dataset.counts() == {"benign": 6, "malignant": 6, "normal": 6}
    assert not any("mask" in n or "/." in n or n.startswith(".") for n in dataset.names)
    assert dataset.images.shape == (18, 1, 32, 32) and dataset.images.dtype == torch.uint8
    assert not dataset.simulated and "BUSI at" in dataset.source


def test_class_counts_read_file_names_only_and_refuse_what_is_not_busi(tmp_path, monkeypatch):
    from busadv.data import DEFAULT_COUNTS, DatasetError, class_counts

    root = make_busi(tmp_path / "busi", per_class=4)
    (root / "normal" / "normal (1).png").write_bytes(b"not a png")  # counted: nothing is decoded
    assert class_counts(root) == {"benign": 4, "malignant": 4, "normal": 4}
    monkeypatch.setenv("BUSADV_DATA", str(root))
    assert class_counts(None) == {"benign": 4, "malignant": 4, "normal": 4}  # what load_dataset would read
    monkeypatch.delenv("BUSADV_DATA")
    assert class_counts(None) == dict(DEFAULT_COUNTS)
    with pytest.raises(DatasetError, match="no such folder"):
        class_counts(tmp_path / "missing")


def test_nested_download_folder_is_found(tmp_path):
    make_busi(tmp_path / "archive" / "Dataset_BUSI_with_GT", per_class=3)
    assert len(load_busi(tmp_path / "archive", image_size=16)) == 9


def test_sixteen_bit_and_rgba_images_decode_to_full_range_gray(tmp_path):
    arr = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    gray = data.decode_image(tmp_path / "deep.png", 64)
    assert gray.dtype == np.uint8 and gray.min() == 0 and gray.max() >= 250
    rgba = Image.new("RGBA", (20, 20), (200, 200, 200, 255))
    rgba.save(tmp_path / "rgba.png")
    assert abs(int(data.decode_image(tmp_path / "rgba.png", 8).mean()) - 200) <= 1


def test_second_load_comes_from_the_cache_without_decoding(tmp_path, monkeypatch):
    root = make_busi(tmp_path / "busi", per_class=3)
    first = load_busi(root, image_size=24)
    monkeypatch.setattr(data.busi, "decode_image", lambda *a, **k: pytest.fail("decoded again despite the cache"))
    second = load_busi(root, image_size=24)
    assert torch.equal(first.images, second.images) and first.fingerprint == second.fingerprint


def test_cache_notices_a_changed_folder(tmp_path):
    root = make_busi(tmp_path / "busi", per_class=3)
    assert len(load_busi(root, image_size=16)) == 9
    _save(root / "benign" / "benign (99).png")
    assert len(load_busi(root, image_size=16)) == 10


@pytest.mark.parametrize("breakage, expected", [
    (lambda r: None, "no such folder"),
    (lambda r: (r.parent.mkdir(parents=True, exist_ok=True), r.write_text("x")), "is a file"),
    (lambda r: (make_busi(r, 2), __import__("shutil").rmtree(r / "normal")), "missing class folder(s) normal/"),
    (lambda r: (make_busi(r, 2), [p.unlink() for p in (r / "malignant").glob("malignant (*).png")]), "no images found"),
])
def test_bad_folders_name_the_path_and_the_problem(tmp_path, breakage, expected):
    root = tmp_path / "data"
    breakage(root)
    with pytest.raises(DatasetError) as err:
        load_busi(root, image_size=16)
    assert expected in str(err.value) and str(tmp_path) in str(err.value)


def test_corrupt_image_is_skipped_by_name_with_a_warning(tmp_path):
    root = make_busi(tmp_path / "busi", per_class=3)
    (root / "benign" / "benign (2).png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.warns(UserWarning, match=r"benign \(2\)\.png"):
        dataset = load_busi(root, image_size=16)
    assert dataset.counts()["benign"] == 2 and dataset.skipped == ("benign/benign (2).png",)


def test_a_class_with_only_corrupt_images_is_refused(tmp_path):
    root = make_busi(tmp_path / "busi", per_class=2)
    for p in (root / "normal").glob("normal (*).png"):
        p.write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DatasetError, match="none of its images could be read"):
            load_busi(root, image_size=16)


def test_split_is_stratified_seeded_and_disjoint(small_phantoms):
    train_idx, test_idx = split_indices(small_phantoms, 0.2, seed=3)
    assert set(train_idx.tolist()).isdisjoint(test_idx.tolist())
    assert len(train_idx) + len(test_idx) == len(small_phantoms)
    assert len(test_idx) == round(0.2 * len(small_phantoms))
    test_labels = small_phantoms.labels[test_idx]
    for label, total in enumerate(small_phantoms.counts().values()):
        assert abs(int((test_labels == label).sum()) - 0.2 * total) <= 1
    again, _ = split_indices(small_phantoms, 0.2, seed=3)
    other, _ = split_indices(small_phantoms, 0.2, seed=4)
    assert torch.equal(again, train_idx) and not torch.equal(other, train_idx)


def test_identical_images_never_straddle_the_split(tmp_path):
    root = make_busi(tmp_path / "busi", per_class=10)
    copy = (root / "benign" / "benign (3).png").read_bytes()
    (root / "malignant" / "malignant (4).png").write_bytes(copy)  # the BUSI duplicate, filed under two classes
    dataset = load_busi(root, image_size=16)
    assert len(dataset.conflicts) == 1
    pair = [dataset.names.index(n) for n in dataset.conflicts[0]]
    for seed in range(10):
        train_idx, _ = split_indices(dataset, 0.2, seed)
        sides = {p in set(train_idx.tolist()) for p in pair}
        assert len(sides) == 1, f"seed {seed} split a duplicate pair"


def test_without_a_path_the_simulated_phantoms_are_used(monkeypatch):
    dataset = load_dataset(None, image_size=32)
    assert dataset.simulated and "Simulated" in dataset.source and "not clinical" in dataset.source
    assert set(dataset.counts()) == set(CLASSES) and min(dataset.counts().values()) > 0


def test_busadv_data_environment_variable_picks_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("BUSADV_DATA", str(make_busi(tmp_path / "busi", per_class=2)))
    assert not load_dataset(None, image_size=16).simulated


def test_phantoms_are_deterministic_per_seed():
    from busadv.data import make_phantoms

    counts = {"benign": 2, "malignant": 2, "normal": 2}
    a = make_phantoms(32, counts, seed=1, use_cache=False)
    b = make_phantoms(32, counts, seed=1, use_cache=False)
    c = make_phantoms(32, counts, seed=2, use_cache=False)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_split_dataset_returns_subsets_with_their_names(small_phantoms):
    train, test = split_dataset(small_phantoms, 0.25, seed=0)
    assert len(train) + len(test) == len(small_phantoms)
    assert set(train.names).isdisjoint(test.names)


# ------------------------------------------------------------------------------------------ near-duplicates

def _scan(seed: int, size: int = 64) -> np.ndarray:
    """A smooth random 'scan' (pHash looks at low frequencies, as real scans have)."""
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(np.random.default_rng(seed).uniform(0, 1, (size, size)), 4)
    return ((smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255).astype(np.uint8)


def test_near_duplicates_with_calipers_or_text_join_one_group_and_other_scans_do_not():
    from busadv.data.duplicates import near_groups, perceptual_hashes

    base = _scan(1)
    caliper = base.copy()
    caliper[30:32, 10:50] = 255  # a measurement line drawn over the same scan
    text = base.copy()
    text[2:6, 2:14] = 255  # an annotation in the corner
    images = torch.from_numpy(np.stack([base, caliper, text, _scan(2), _scan(3)])).unsqueeze(1)
    groups = near_groups(perceptual_hashes(images))
    assert groups[0] == groups[1] == groups[2]
    assert len({int(groups[0]), int(groups[3]), int(groups[4])}) == 3


def test_the_near_split_keeps_each_near_duplicate_group_on_one_side(tmp_path):
    root = make_busi(tmp_path / "busi", per_class=6)
    scan = _scan(7, 60)
    Image.fromarray(scan).save(root / "benign" / "benign (50).png")
    marked = scan.copy()
    marked[20:22, 5:55] = 255
    Image.fromarray(marked).save(root / "malignant" / "malignant (50).png")
    dataset = load_busi(root, image_size=32)
    a, b = dataset.names.index("benign/benign (50).png"), dataset.names.index("malignant/malignant (50).png")
    assert dataset.near_groups[a] == dataset.near_groups[b] and dataset.groups[a] != dataset.groups[b]
    assert ("benign/benign (50).png", "malignant/malignant (50).png") in dataset.conflicts
    for seed in range(6):
        train_idx, _ = split_indices(dataset, 0.3, seed, policy="near")
        assert (a in set(train_idx.tolist())) == (b in set(train_idx.tolist()))


def test_old_split_policy_names_still_mean_what_they_meant():
    from busadv.data.split import check_split_policy

    assert check_split_policy("grouped") == "exact"
    with pytest.raises(ValueError, match="choose one of: near, exact, random"):
        check_split_policy("stratified")
