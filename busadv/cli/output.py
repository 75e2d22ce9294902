"""What the command line prints: a progress bar, tables of conditions and summaries, diagnoses."""

from __future__ import annotations

import contextlib
import math
import re
import sys
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any

from busadv.attacks import attack_label, format_epsilon
from busadv.progress import ProgressEvent
from busadv.results import GroupSummary, ResultRow, recipe_labels

# The one terminal control busadv writes itself (clear to the end of the line, after a redrawn progress bar).
CLEAR_LINE = "\033[K"
# C0 controls but tab, newline and carriage return; DEL and the C1 controls. ESC among them: a result file, a
# file name or a checkpoint's recorded text holding "\x1b]0;...\x07" would otherwise retitle, recolour or
# rewrite the user's terminal.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def terminal_text(text: str) -> str:
    """Text as a terminal shows it plainly: every control character written out ("\\x1b"), CLEAR_LINE kept."""
    return CLEAR_LINE.join(_CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", part)
                           for part in text.split(CLEAR_LINE))


class PlainTerminal:
    """A text stream whose writes pass through terminal_text; everything else is the wrapped stream's."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(terminal_text(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def plain_output() -> Iterator[None]:
    """stdout and stderr as PlainTerminal for the duration: whatever a command prints from outside is plain text."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = PlainTerminal(sys.stdout), PlainTerminal(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class ProgressPrinter:
    """A bar that redraws in place on a terminal, and plain epoch lines in logs."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.last_draw = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        in_batch = "batch" in event.message or "evaluated" in event.message
        eta_seconds = event.eta_seconds
        if eta_seconds is None and event.fraction > 0.01:
            eta_seconds = (time.monotonic() - self.started) * (1 - event.fraction) / event.fraction
        eta = f" | {duration(eta_seconds)} left" if eta_seconds else ""
        if in_batch:
            if self.tty and time.monotonic() - self.last_draw > 0.1:
                filled = int(30 * event.fraction)
                self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {event.fraction:5.1%} "
                                  f"{event.message[-70:]}{eta}{CLEAR_LINE}")
                self.stream.flush()
                self.last_draw = time.monotonic()
            return
        if self.tty:
            self.stream.write(f"\r{CLEAR_LINE}")
        self.stream.write(f"[{event.fraction:5.1%}] {event.message}{eta}\n")
        self.stream.flush()


def condition_name(attack: str, eps: float) -> str:
    return "clean" if attack == "none" else f"{attack_label(attack)} ε={format_epsilon(eps)}"


def print_rows(rows: Sequence[ResultRow], stream: IO[str] | None = None) -> None:
    """One line per test condition: balanced accuracy first, accuracy beside the majority rate, cancers missed."""
    out = stream or sys.stdout
    if rows:
        out.write(f"majority-class rate of this test set: {rows[0].majority_rate:.3f} "
                  f"(accuracy a model gets by always answering '{_majority(rows[0])}'); chance balanced accuracy: "
                  f"{1 / max(len(rows[0].recall), 1):.3f}\n")
    out.write(f"{'condition':<42} {'balanced acc':>12} {'accuracy':>9} {'malignant found':>16}  note\n")
    for r in rows:
        found = f"{r.malignant_total - r.malignant_missed}/{r.malignant_total}"
        note = f"COLLAPSED: '{r.dominant_class}' for {r.dominant_share:.0%}" if r.collapsed else ""
        out.write(f"{condition_name(r.attack, r.test_epsilon):<42} {r.balanced_accuracy:>12.3f} {r.accuracy:>9.3f} "
                  f"{found:>16}  {note}\n")


def _majority(row: ResultRow) -> str:
    if not row.confusion:
        return "the most common class"
    totals = [sum(r) for r in row.confusion]
    classes = list(row.recall) or [str(i) for i in range(len(totals))]
    return classes[totals.index(max(totals))]


def print_summary(summary: Sequence[GroupSummary], stream: IO[str] | None = None) -> None:
    """Mean ± std over seeds per model and condition, with how many runs collapsed; recipes of one model that
    differ (a grid choosing among values, say) are named by what tells them apart."""
    out = stream or sys.stdout
    labels = recipe_labels(summary)
    width = min(max([52, *(len(label) for label in labels.values())]), 100)
    out.write(f"{'model':<{width}} {'condition':<30} {'balanced acc':>15} {'accuracy':>15} {'sensitivity':>15} "
              f"{'runs':>5} {'collapsed':>9}\n")
    for s in summary:
        out.write(f"{labels[s.recipe][:width]:<{width}} {condition_name(s.attack, s.test_epsilon)[:30]:<30} "
                  f"{s.stat('balanced_accuracy').text():>15} {s.stat('accuracy').text():>15} "
                  f"{s.stat('malignant_sensitivity').text():>15} {s.n_runs:>5} "
                  f"{f'{s.collapsed_runs} of {s.n_runs}':>9}\n")


def print_diagnosis_texts(texts: Sequence[str], stream: IO[str] | None = None) -> None:
    """Diagnoses as workflows return them (Diagnosis.text()), or the all-clear."""
    out = stream or sys.stdout
    if not texts:
        out.write("checks: no collapse, label leaking, gradient masking or catastrophic overfitting found\n")
    for text in texts:
        out.write(f"WARNING: {text}\n")
