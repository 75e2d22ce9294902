"""Grids of runs -> result rows: configs, the runner, the user-facing workflows, time estimates."""

from busadv.experiments.config import PRESETS, ExperimentConfig, study_preset
from busadv.experiments.estimates import (
    estimate_seconds,
    estimate_words,
    grid_estimate,
    grid_seconds,
    measured_rates,
    rate_at,
)
from busadv.experiments.runner import ExperimentResult, RunOutcome, new_run_id, run, run_one, scaled
from busadv.experiments.workflows import (
    DEFAULT_TEST_ATTACKS,
    DEFAULT_TEST_EPSILONS,
    evaluate_job,
    experiment_job,
    test_split_for,
    train_config_of,
    train_job,
)

__all__ = ["DEFAULT_TEST_ATTACKS", "DEFAULT_TEST_EPSILONS", "ExperimentConfig", "ExperimentResult", "PRESETS",
           "RunOutcome", "estimate_seconds", "estimate_words", "evaluate_job", "experiment_job", "grid_estimate",
           "grid_seconds", "measured_rates", "new_run_id", "rate_at", "run", "run_one", "scaled", "study_preset",
           "test_split_for", "train_config_of", "train_job"]
