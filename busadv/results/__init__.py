"""Result rows with their full recipe, files in and out, summaries over seeds, and diagnoses per run."""

from busadv.results.diagnosis import KINDS, Diagnosis, diagnose, model_name, recipe_text
from busadv.results.flips import load_flips, read_flips, save_flips
from busadv.results.io import read_rows, read_rows_file, row_from_dict, rows_to_csv, write_rows
from busadv.results.row import RECIPE_FIELDS, ROW_FIELDS, ResultRow, kept_weights, overfit_epoch, rows_for
from busadv.results.store import load_store, results_dir, save_rows, store_files, unique_rows
from busadv.results.summary import HEADLINE, METRICS, GroupSummary, Stat, collapsed_runs, recipe_labels, summarize

__all__ = [
    "HEADLINE", "KINDS", "METRICS", "RECIPE_FIELDS", "ROW_FIELDS", "Diagnosis", "GroupSummary", "ResultRow", "Stat",
    "collapsed_runs", "diagnose", "kept_weights", "load_flips", "load_store", "model_name", "overfit_epoch",
    "read_flips", "read_rows", "read_rows_file", "recipe_labels", "recipe_text", "results_dir", "row_from_dict",
    "rows_for", "rows_to_csv", "save_flips", "save_rows", "store_files", "summarize", "unique_rows", "write_rows",
]
