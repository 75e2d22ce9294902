"""The correctness fixes review asked for, each pinned by a test that failed on the code before them."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from busadv.attacks import AttackContext, fgsm_random_start, pgd
from busadv.data import make_phantoms, split_dataset, stratified_subset
from busadv.experiments import run_one
from busadv.results import read_rows_file, write_rows
from busadv.training import MODES, TrainConfig, cudnn_settings, train_model


def test_the_per_epoch_watch_uses_a_stratified_seeded_subset(monkeypatch):
    """The split keeps class order, so 'the first 12 test images' were all benign."""
    data = make_phantoms(16, {"benign": 30, "malignant": 20, "normal": 20}, use_cache=False)
    train_set, test_set = split_dataset(data, 0.4, seed=0)
    assert test_set.labels[:12].unique().tolist() == [0], "precondition: the test set is ordered by class"
    seen = []
    import busadv.training.loop as loop

    original = loop.evaluate
    monkeypatch.setattr(loop, "evaluate", lambda model, dataset, *a, **k: seen.append(dataset) or
                        original(model, dataset, *a, **k))
    # The study's recipe has no validation split: it watches the test images for the record (never to choose).
    train_model(TrainConfig.study(mode="fgsm", epsilon=4 / 255, epochs=1, image_size=16, monitor_images=12,
                                  device="cpu"), train_set, test_set)
    watched = [d for d in seen if len(d) == 12]
    assert watched and sorted(watched[0].labels.unique().tolist()) == [0, 1, 2]
    again = stratified_subset(test_set, 12, seed=0)
    assert again.names == watched[0].names, "seeded: the same images every epoch and every run"


class ModeDependent(nn.Module):
    """Predicts class 0 in eval mode and class 2 in train mode: shows which mode labels were taken in."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(x.flatten(1))
        bias = torch.tensor([0.0, 0.0, 50.0]) if self.training else torch.tensor([50.0, 0.0, 0.0])
        return logits + bias


def test_fgsm_random_start_on_predicted_labels_takes_them_in_eval_mode():
    torch.manual_seed(0)
    model, x, y = ModeDependent(), torch.rand(4, 1, 4, 4), torch.tensor([1, 1, 1, 1])
    model.train()
    config = TrainConfig(mode="fgsm", epsilon=0.1, adv_labels="predicted", random_start=True, image_size=16)
    got = MODES.get("fgsm").perturb(model, x, y, config, 0.1, torch.Generator().manual_seed(3))
    expected = fgsm_random_start(model, x, torch.zeros(4, dtype=torch.long), 0.1,
                                 generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, expected)
    assert model.training


def test_pgd_training_honours_predicted_labels_and_random_start():
    torch.manual_seed(0)
    model, x, y = ModeDependent(), torch.rand(4, 1, 4, 4), torch.tensor([1, 1, 1, 1])
    config = TrainConfig(mode="pgd", epsilon=0.1, adv_labels="predicted", random_start=False, pgd_steps=3,
                         image_size=16)
    got = MODES.get("pgd").perturb(model, x, y, config, 0.1, torch.Generator().manual_seed(3))
    expected = pgd(model, x, AttackContext(model, x, None).clean_prediction, 0.1, steps=3, random_start=False)
    assert torch.equal(got, expected)
    assert TrainConfig(mode="pgd", epsilon=0.1, image_size=16).random_start is True, "PGD's default start is random"
    assert TrainConfig(mode="fgsm-study", epsilon=0.1, image_size=16).random_start is False


def test_two_identical_runs_in_the_same_second_keep_both_checkpoints(tmp_path, small_phantoms):
    config = TrainConfig(epochs=1, image_size=32, device="cpu")
    first = run_one(config, small_phantoms, ["fgsm"], [4 / 255], save=True, checkpoint_folder=tmp_path)
    second = run_one(config, small_phantoms, ["fgsm"], [4 / 255], save=True, checkpoint_folder=tmp_path)
    assert first.checkpoint != second.checkpoint
    assert first.checkpoint.exists() and second.checkpoint.exists()
    assert first.rows[0].run != second.rows[0].run


def test_concurrent_writers_of_one_results_file_never_collide(tmp_path):
    from busadv.evaluation import ConditionResult
    from busadv.results import rows_for

    rows = rows_for([ConditionResult("none", 0.0, [[3, 1, 0], [1, 3, 0], [0, 0, 2]])], run="r", seed=0,
                    train_config=TrainConfig(image_size=32), data_fingerprint="f", data_source="t", simulated=True,
                    eval_pgd_steps=10)
    target = tmp_path / "shared.csv"
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(20):
                write_rows(rows, target)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert read_rows_file(target) == rows
    assert [p.name for p in tmp_path.iterdir()] == ["shared.csv"], "no temporary file left behind"


def test_cudnn_autotuning_is_scoped_and_can_be_made_deterministic():
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    with cudnn_settings(torch.device("cuda"), deterministic=True):
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == saved
    with cudnn_settings(torch.device("cuda"), deterministic=False):
        assert torch.backends.cudnn.benchmark
    assert (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic) == saved
    assert TrainConfig(deterministic=True).deterministic
    assert "deterministic" not in TrainConfig().recipe(), "where it runs does not change what it learns"


@pytest.mark.parametrize("policy", ["near", "exact", "random"])
def test_split_policies_are_stratified_and_recorded(policy, small_phantoms):
    train, test = split_dataset(small_phantoms, 0.25, seed=1, policy=policy)
    assert len(train) + len(test) == len(small_phantoms)
    assert sorted(test.labels.unique().tolist()) == [0, 1, 2]
    assert TrainConfig(split_policy=policy, image_size=32).recipe()["split_policy"] == policy
