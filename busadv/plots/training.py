"""Training curves: loss and test measures per epoch, from a checkpoint's history or a running job's progress."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from busadv.plots.style import layout


def history_from_progress(progress_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Epoch ends of a running job's progress rows (busadv.jobs.JobStore.history), as training_curves reads them.

    A row with accuracy set closes an epoch: its loss is the epoch's mean training loss and its accuracy
    the clean test accuracy. An experiment trains one run after another, so only the rows since the
    epoch count last went back are kept: the curves of the run in progress.
    """
    out: list[dict[str, Any]] = []
    last_epoch = 0
    for row in progress_rows:
        epoch = row.get("epoch")
        if epoch is None:
            continue
        if int(epoch) < last_epoch:
            out = []  # the next run of an experiment began
        last_epoch = int(epoch)
        if row.get("accuracy") is None or int(epoch) < 1:
            continue
        out = [h for h in out if h["epoch"] != int(epoch)]
        out.append({"epoch": int(epoch), "train_loss": row.get("loss"), "test_accuracy": row.get("accuracy")})
    return out


def training_curves(history: Sequence[dict[str, Any]], title: str | None = None,
                    epochs: int | None = None) -> go.Figure:
    """Loss (right axis) and accuracies (left axis) per epoch from a checkpoint's or job's history.

    `epochs`: the run's planned number of epochs, so a running job's axis shows how far it has come.

    Adversarial runs also show FGSM and PGD accuracy at the training epsilon: FGSM accuracy rising
    while PGD accuracy falls is catastrophic overfitting. Runs with a validation split show what chose their
    epoch: validation balanced accuracy, clean and under PGD-5, and the share of cancers found.
    """
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    epochs_seen = [h.get("epoch") for h in history]
    series: tuple[tuple[str, str, str, str], ...] = (("train_accuracy", "train accuracy", "#9ECAE9", "dot"),
              ("test_accuracy", "test accuracy (clean)", "#1F5A96", "solid"),
              ("test_balanced_accuracy", "test balanced accuracy (clean)", "#1F5A96", "dash"),
              ("test_fgsm_accuracy", "watch accuracy under FGSM", "#C4560C", "solid"),
              ("test_pgd_accuracy", "watch accuracy under PGD", "#2E7D32", "solid"),
              ("test_pgd_balanced_accuracy", "watch balanced accuracy under PGD", "#2E7D32", "dash"),
              # The validation split (busadv's best recipe) is what chooses the epoch: its curves say why.
              ("val_balanced_accuracy", "validation balanced accuracy (clean)", "#6A3D9A", "solid"),
              ("val_pgd_balanced_accuracy", "validation balanced accuracy under PGD-5", "#6A3D9A", "dash"),
              ("val_pgd_sensitivity", "validation: cancers found under PGD-5", "#B2182B", "dot"))
    if not any(h.get("val_pgd_sensitivity") is not None for h in history):
        series += (("val_sensitivity", "validation: cancers found", "#B2182B", "dot"),)
    for key, name, color, dash in series:
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            fig.add_scatter(x=epochs_seen, y=values, name=name, mode="lines+markers",
                            line=dict(color=color, dash=dash), secondary_y=False)
    loss_key = "train_loss" if any("train_loss" in h for h in history) else "loss"
    losses = [h.get(loss_key) for h in history]
    if any(v is not None for v in losses):
        fig.add_scatter(x=epochs_seen, y=losses, name="training loss", mode="lines+markers",
                        line=dict(color="#777777", dash="dash"), secondary_y=True)
    layout(fig, title or "Training curves", legend="right", height=360)
    fig.update_layout(legend_x=1.1)  # beyond the loss axis on the right
    fig.update_yaxes(title_text="accuracy / balanced accuracy", range=[0, 1.05], tickformat=".0%", secondary_y=False)
    fig.update_yaxes(title_text="loss", secondary_y=True, rangemode="tozero", showgrid=False, tickmode="auto",
                     nticks=6)
    last = max([int(epochs or 0)] + [int(e) for e in epochs_seen if e is not None])
    fig.update_xaxes(title_text="epoch", dtick=1 if last <= 20 else None,
                     range=[0.5, last + 0.5] if epochs else None)
    return fig
