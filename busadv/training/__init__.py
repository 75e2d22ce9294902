"""Standard and adversarial training: configs, the registry of training modes, the loop."""

from busadv.training.config import (
    CLASS_BALANCE,
    LABEL_SOURCES,
    NOT_RECIPE,
    TrainConfig,
    format_seed_list,
    parse_seed_list,
)
from busadv.training.loop import EpochStats, TrainResult, cudnn_settings, seed_everything, train_model, train_one_epoch
from busadv.training.modes import MODES, TrainMode, register_mode

__all__ = [
    "CLASS_BALANCE", "LABEL_SOURCES", "MODES", "NOT_RECIPE", "EpochStats", "TrainConfig", "TrainMode", "TrainResult",
    "cudnn_settings", "format_seed_list", "parse_seed_list", "register_mode", "seed_everything", "train_model",
    "train_one_epoch",
]
