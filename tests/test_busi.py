"""The real BUSI images (run when BUSADV_DATA points at them, as .ci/run does)."""

from __future__ import annotations

import pytest

import busadv.data as data
from busadv.data import load_busi, split_dataset, split_indices
from busadv.evaluation import evaluate
from busadv.training import TrainConfig, train_model


@pytest.fixture(scope="module")
def busi64(busi_path):
    return load_busi(busi_path, image_size=64)


def test_busi_counts_match_the_paper(busi64):
    assert busi64.counts() == {"benign": 437, "malignant": 210, "normal": 133}
    assert busi64.skipped == () and not busi64.simulated


def test_the_known_cross_class_duplicate_is_found_and_kept_on_one_side(busi64):
    pair = ("benign/benign (433).png", "malignant/malignant (145).png")
    assert pair in busi64.conflicts
    where = [busi64.names.index(n) for n in pair]
    for seed in range(5):
        train_idx, _ = split_indices(busi64, 0.2, seed)
        train = set(train_idx.tolist())
        assert (where[0] in train) == (where[1] in train)


def test_the_second_load_reads_the_tensor_cache(busi_path, monkeypatch):
    load_busi(busi_path, image_size=48)
    monkeypatch.setattr(data.busi, "decode_image", lambda *a, **k: pytest.fail("decoded again"))
    assert len(load_busi(busi_path, image_size=48)) == 780


def test_a_short_training_beats_the_majority_class_and_fgsm_breaks_it(busi64):
    """Judged by balanced accuracy: the recipe's class-weighted loss trades plain accuracy (0.60-0.62 here, the
    majority share 0.58) for the minority classes (balanced accuracy 0.575 against 0.518 unweighted)."""
    train_set, test_set = split_dataset(busi64, 0.2, seed=0)
    result = train_model(TrainConfig(epochs=8, image_size=64, device="cpu"), train_set, test_set)
    rows = evaluate(result.model, test_set, ["fgsm"], [2 / 255, 8 / 255])
    clean, small, large = (r.balanced_accuracy for r in rows)
    assert clean > 1 / 3 + 0.12, f"clean balanced accuracy {clean:.3f}: answering benign for all scores 1/3"
    assert large < small < clean and large < clean - 0.2


def test_near_duplicate_groups_on_busi_hold_the_known_pair_and_stay_on_one_side(busi64):
    from busadv.data.duplicates import members

    groups = members(busi64.near_groups)
    assert 150 <= sum(len(g) for g in groups) <= 450, "BUSI has many near-duplicates (README: about 350 images)"
    assert max(len(g) for g in groups) <= 12, "a chain of near-duplicates must not swallow unrelated scans"
    pair = [busi64.names.index(n) for n in ("benign/benign (433).png", "malignant/malignant (145).png")]
    assert busi64.near_groups[pair[0]] == busi64.near_groups[pair[1]]
    for seed in range(5):
        train_idx, test_idx = split_indices(busi64, 0.2, seed, policy="near")
        train = set(train_idx.tolist())
        for group in groups:
            assert len({m in train for m in group}) == 1, f"group {group} straddles the split (seed {seed})"
