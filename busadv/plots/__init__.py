"""Plotly figures from busadv's data (probabilities, result summaries, confusion matrices, histories).

Pure functions, no Streamlit: the pages, the study report, notebooks and tests draw the same figures.
"""

from busadv.plots.explorer import probability_bars, probability_sweep
from busadv.plots.flips import flip_distribution
from busadv.plots.frontier import epsilon_tradeoff, robustness_frontier
from busadv.plots.results import (
    accuracy_bars,
    accuracy_curve,
    confusion_heatmap,
    critical_missed,
    distinct_epsilons,
    reference_line,
    short_labels,
    sum_confusions,
)
from busadv.plots.robustness import corruption_curves, equal_size_bars, transfer_heatmap
from busadv.plots.style import METRIC_NAMES, metric_name, short_epsilon
from busadv.plots.training import history_from_progress, training_curves

__all__ = [
    "METRIC_NAMES", "accuracy_bars", "accuracy_curve", "confusion_heatmap", "critical_missed", "flip_distribution",
    "history_from_progress", "metric_name", "probability_bars", "probability_sweep", "reference_line",
    "epsilon_tradeoff", "robustness_frontier", "short_epsilon", "sum_confusions", "training_curves",
    "corruption_curves", "equal_size_bars", "transfer_heatmap", "distinct_epsilons", "short_labels",
]
