"""Plotly figures from busadv's data (probabilities, result summaries, confusion matrices, histories).

Pure functions, no Streamlit: the pages, the study report, notebooks and tests draw the same figures.
"""

from busadv.plots.explorer import probability_bars, probability_sweep
from busadv.plots.results import (
                                  accuracy_bars,
                                  accuracy_curve,
                                  confusion_heatmap,
                                  critical_missed,
                                  reference_line,
                                  sum_confusions,
)
from busadv.plots.style import METRIC_NAMES, metric_name, short_epsilon
from busadv.plots.training import history_from_progress, training_curves

__all__ = ["METRIC_NAMES", "accuracy_bars", "accuracy_curve", "confusion_heatmap", "critical_missed",
           "history_from_progress", "metric_name", "probability_bars", "probability_sweep", "reference_line",
           "short_epsilon", "sum_confusions", "training_curves"]
