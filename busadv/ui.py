"""Small Streamlit helpers shared by the pages: cached loaders, the dataset banner, epsilon widgets, job cards.

Why here and not in the pages: every page needs the same cached model, the same dataset label and the
same way of saying an epsilon, and a page should read like a description of its UI. Logic that is
not about Streamlit lives in the engine modules; this file only wires them to widgets and caches.

Caches are keyed by everything that changes their answer (file path and modification time, the
data folder, the image size), never by the environment alone, so that tests and users who move
BUSADV_DATA or BUSADV_CHECKPOINTS never see a stale model or dataset.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import streamlit as st

from busadv.attacks import STUDY_EPSILONS, Attack, format_epsilon, parse_epsilon, parse_epsilon_list
from busadv.data import CLASSES, DATA_ENV, DatasetError, ImageSet, find_busi_root, list_busi_files
from busadv.jobs import Job, JobStore
from busadv.phantoms import DEFAULT_COUNTS, SIMULATED_SOURCE

if TYPE_CHECKING:
    from busadv.checkpoints import Checkpoint, CheckpointInfo
    from busadv.explorer import PerturbationProbe, StripItem

SIMULATED_LABEL = SIMULATED_SOURCE  # "Simulated phantoms (not clinical images)"

# The slider's stops: every k/255 up to 16, then coarser steps up to the study's 0.5.
EPSILON_CHOICES: tuple[float, ...] = tuple(sorted(
    {k / 255 for k in range(0, 17)} | {20 / 255, 24 / 255, 32 / 255, 0.1, 64 / 255, 96 / 255} | set(STUDY_EPSILONS)))

# Explorer attacks in the order they are offered, with a line that says what each one means.
EXPLORER_ATTACKS: dict[str, str] = {
    Attack.FGSM.value: "FGSM: one gradient-sign step that raises the loss of the true diagnosis",
    Attack.FGSM_PRED.value: "FGSM on the predicted label: the same step, aimed at the model's own answer",
    Attack.NOISE.value: "Random noise of the same size (±ε per pixel): the baseline an attack must beat",
}

# The explorer's "train a quick model" job: the study's recipe on the active data, about a minute
# on two CPU cores with the simulated phantoms (about 83% clean test accuracy there).
QUICK_TRAIN_CONFIG: dict[str, Any] = {"arch": "simplecnn", "mode": "standard", "epochs": 10,
                                      "batch_size": 32, "seed": 0}


# --------------------------------------------------------------------------- the active dataset

def data_setting() -> str | None:
    """$BUSADV_DATA, or None when the simulated phantoms are active."""
    return os.environ.get(DATA_ENV) or None


@st.cache_data(ttl=60, show_spinner=False)
def dataset_facts(data: str | None) -> dict[str, Any]:
    """Name, kind and per-class counts of the active data, read without decoding an image."""
    if not data:
        counts = dict(DEFAULT_COUNTS)
        return {"simulated": True, "source": SIMULATED_LABEL, "counts": counts, "images": sum(counts.values()),
                "error": None}
    try:
        root = find_busi_root(data)
        files = list_busi_files(root)
    except DatasetError as exc:
        return {"simulated": False, "source": data, "counts": {}, "images": 0, "error": str(exc)}
    counts = {c: sum(1 for _, label in files if label == i) for i, c in enumerate(CLASSES)}
    return {"simulated": False, "source": f"BUSI at {root}", "counts": counts, "images": len(files), "error": None}


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {c}" for c, n in counts.items())


def dataset_banner(compact: bool = False) -> dict[str, Any]:
    """Say which images are active; phantoms are always called simulated and not clinical."""
    facts = dataset_facts(data_setting())
    if facts["error"]:
        st.error(f"**The data folder in ${DATA_ENV} cannot be used.** {facts['error']} "
                 f"Unset {DATA_ENV} to use the simulated phantoms instead.", icon=":material/block:")
    elif facts["simulated"]:
        extra = "" if compact else (f" They are generated on this machine, so nothing is downloaded. "
                                    f"Set {DATA_ENV} to an unzipped BUSI folder to use real ultrasound.")
        st.info(f"**{SIMULATED_LABEL}**: {facts['images']} images ({counts_text(facts['counts'])}).{extra}",
                icon=":material/science:")
    else:
        st.success(f"**Real breast ultrasound — {facts['source']}**: {facts['images']} images "
                   f"({counts_text(facts['counts'])}).", icon=":material/medical_services:")
    return facts


# The app's pages: (script, menu label, icon). Streamlit's classic multipage layout serves app.py at /
# and pages/N_Name.py at /Name; the numbers only order the files.
HOME_PAGE = "app.py"
EXPLORER_PAGE = "pages/1_Perturbation_explorer.py"
JOBS_PAGE = "pages/2_Jobs.py"
RESULTS_PAGE = "pages/3_Results.py"
PAGES: tuple[tuple[str, str, str], ...] = (
    (HOME_PAGE, "Home", ":material/home:"),
    (EXPLORER_PAGE, "Perturbation explorer", ":material/tune:"),
    (JOBS_PAGE, "Jobs", ":material/model_training:"),
    (RESULTS_PAGE, "Results", ":material/bar_chart:"),
)


def page_setup(title: str) -> None:
    """The first call of every page: wide layout, tab title, the menu and the data label in the sidebar.

    Why every page calls it: in Streamlit's classic multipage layout (app.py plus pages/, no
    st.navigation) a request for /Jobs runs pages/2_Jobs.py alone, never app.py, so anything a page
    needs must come from the page itself. The menu is drawn here rather than by Streamlit
    (client.showSidebarNavigation = false) because Streamlit would name the home page "app", after
    its file.
    """
    import torch

    # One thread for the page's own small forward passes: with a training job on the same cores, two
    # threads wait on each other (7-10x slower slider, measured by busadv.bench's levers).
    torch.set_num_threads(1)
    icon = next((i for _, label, i in PAGES if label == title), ":material/biotech:")
    st.set_page_config(page_title=f"{title} · busadv" if title != "Home" else "busadv — adversarial ultrasound",
                       page_icon=icon, layout="wide")
    with st.sidebar:
        for path, label, page_icon in PAGES:
            st.page_link(path, label=label, icon=page_icon)
    sidebar_dataset_label()


def sidebar_dataset_label() -> None:
    """One line in the sidebar of every page, so no chart is read without knowing its data."""
    facts = dataset_facts(data_setting())
    with st.sidebar:
        if facts["error"]:
            st.error(f"Data folder unusable ({DATA_ENV})")
        elif facts["simulated"]:
            st.caption(f":material/science: Data: **{SIMULATED_LABEL}**")
        else:
            st.caption(f":material/medical_services: Data: **{facts['source']}** ({facts['images']} images)")


@st.cache_resource(max_entries=4, show_spinner="Loading images…")
def load_images(data: str | None, image_size: int) -> ImageSet:
    """The active dataset at one image size, decoded once per server (read-only afterwards)."""
    from busadv.data import load_dataset

    return load_dataset(data, image_size)


@st.cache_resource(max_entries=8, show_spinner=False)
def checkpoint_test_images(path: str, mtime_ns: int, data: str | None) -> tuple[ImageSet, str]:
    """The checkpoint's own held-out images when the active data is what it was trained on."""
    from busadv.workflows import test_split_for

    checkpoint = load_model(path, mtime_ns)
    return test_split_for(checkpoint, load_images(data, checkpoint.image_size))


# --------------------------------------------------------------------------- checkpoints and models

def mtime_ns(path: str | Path) -> int:
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return 0


def checkpoint_infos() -> list[CheckpointInfo]:
    """Readable checkpoints in the checkpoints folder, newest first (cached until a file changes)."""
    from busadv.settings import checkpoints_dir

    folder = checkpoints_dir()
    return _checkpoint_infos(str(folder), _stamp(folder))


def _stamp(folder: Path) -> tuple:
    """The checkpoint files' names and versions: a cache key that changes when any of them does."""
    return tuple(sorted((p.name, mtime_ns(p)) for p in folder.glob("*.pt")))


@st.cache_resource(max_entries=8, show_spinner=False)
def _checkpoint_infos(folder: str, stamp: tuple) -> list[CheckpointInfo]:
    from busadv.checkpoints import list_checkpoints

    return list_checkpoints(folder)


def training_rates() -> tuple[dict[str, float], bool]:
    """(training images/second per model, whether they were measured here) for time estimates.

    busadv.experiments.measured_rates reads them from this machine's saved checkpoints and falls back
    to the design notes' two-core figures; cached until a checkpoint file changes.
    """
    from busadv.experiments import FALLBACK_RATES
    from busadv.settings import checkpoints_dir

    folder = checkpoints_dir()
    rates = _training_rates(str(folder), _stamp(folder))
    return rates, rates != FALLBACK_RATES


@st.cache_data(max_entries=8, show_spinner=False)
def _training_rates(folder: str, stamp: tuple) -> dict[str, float]:
    from busadv.experiments import measured_rates

    return measured_rates(folder)


def checkpoint_label(info: CheckpointInfo) -> str:
    """'simplecnn · standard · phantoms · 83% clean · seed 0 · 2025-01-01 12:00' for pickers."""
    tc = info.train_config
    mode = tc.get("mode", "standard")
    how = "standard" if mode == "standard" else f"{mode}-trained ε={format_epsilon(float(tc.get('epsilon', 0)))}"
    data = "phantoms" if info.data.get("simulated") else "BUSI"
    acc = info.metrics.get("clean_accuracy")
    acc_text = f" · {acc:.0%} clean" if isinstance(acc, (int, float)) else ""
    when = dt.datetime.fromtimestamp(info.created).strftime("%Y-%m-%d %H:%M") if info.created else ""
    return f"{info.arch} · {how} · {data}{acc_text} · seed {tc.get('seed', 0)} · {info.image_size}px · {when}"


def training_text(train_config: dict[str, Any]) -> str:
    """'standard training' or 'FGSM training at ε=0.031 (8/255), predicted labels'."""
    mode = train_config.get("mode", "standard")
    if mode == "standard":
        return "standard training"
    labels = ", predicted labels" if train_config.get("adv_labels") == "predicted" else ""
    return f"{mode.upper()} training at ε={format_epsilon(float(train_config.get('epsilon', 0)))}{labels}"


TABLE_EPSILON = 8 / 255  # the home table's one attacked accuracy: the field's usual small epsilon
ATTACKED_COLUMN = f"under FGSM ε={format_epsilon(TABLE_EPSILON)}"

# st.dataframe column settings for checkpoint_table: percentages, and a help line per column.
CHECKPOINT_COLUMNS: dict[str, Any] = {
    "model": st.column_config.TextColumn("model", help="Architecture and input size (square, pixels)"),
    "training": st.column_config.TextColumn("training", width="medium"),
    "data": st.column_config.TextColumn("data", help="The images the model learned from"),
    "clean test accuracy": st.column_config.NumberColumn(
        "clean test accuracy", format="percent", help="On the model's held-out test images"),
    ATTACKED_COLUMN: st.column_config.NumberColumn(
        ATTACKED_COLUMN, format="percent",
        help="Test accuracy under FGSM at this ε, when measured after training (empty: not measured)"),
    "seed": st.column_config.NumberColumn("seed", format="%d"),
    "trained": st.column_config.TextColumn("trained"),
}


def checkpoint_table(infos: Sequence[CheckpointInfo]) -> list[dict[str, Any]]:
    """Rows for st.dataframe, one per saved model: what it is and how well it did, in seven short columns."""
    out = []
    for info in infos:
        tc = info.train_config
        attacked = next((c.get("accuracy") for c in info.metrics.get("conditions") or []
                         if c.get("attack") == Attack.FGSM.value
                         and abs(float(c.get("test_epsilon", -1)) - TABLE_EPSILON) < 1e-9), None)
        out.append({
            "model": f"{info.arch}, {info.image_size} px", "training": training_text(tc),
            "data": "simulated phantoms" if info.data.get("simulated") else "BUSI",
            "clean test accuracy": info.metrics.get("clean_accuracy"),
            ATTACKED_COLUMN: attacked,
            "seed": tc.get("seed"),
            "trained": dt.datetime.fromtimestamp(info.created).strftime("%Y-%m-%d %H:%M") if info.created else "",
        })
    return out


@st.cache_resource(max_entries=6, show_spinner="Loading model…")
def load_model(path: str, mtime_ns: int) -> Checkpoint:
    """A checkpoint and its model, once per file version (the mtime in the key drops stale ones)."""
    from busadv.checkpoints import load_checkpoint
    from busadv.settings import pick_device

    return load_checkpoint(path, device=pick_device("auto"))


def model_for(info: CheckpointInfo) -> Checkpoint:
    return load_model(str(info.path), mtime_ns(info.path))


# --------------------------------------------------------------------------- the perturbation probe

@st.cache_resource(max_entries=64, show_spinner="Computing the gradient once for this model and image…")
def probe(path: str, mtime_ns: int, image_key: str, true_label: int | None, _image: np.ndarray) -> PerturbationProbe:
    """One PerturbationProbe per (checkpoint version, image): every epsilon after it is one forward pass."""
    from busadv.explorer import PerturbationProbe

    checkpoint = load_model(path, mtime_ns)
    return PerturbationProbe(checkpoint.model, _image, true_label)


@st.cache_data(max_entries=512, show_spinner="Searching for the smallest ε that flips the prediction…")
def smallest_flip(path: str, mtime_ns: int, image_key: str, true_label: int | None, attack: str,
                  _probe: PerturbationProbe) -> float | None:
    """Cached per probe and attack: the slider then never waits for the search again."""
    return _probe.smallest_flip(attack)


@st.cache_resource(max_entries=128, show_spinner=False)
def strip(path: str, mtime_ns: int, image_key: str, true_label: int | None, attack: str,
          epsilons: tuple[float, ...], _probe: PerturbationProbe) -> list[StripItem]:
    """The epsilon strip does not depend on the slider, so it is computed once per probe and attack."""
    return _probe.strip(attack, list(epsilons))


@st.cache_resource(max_entries=128, show_spinner=False)
def sweep(path: str, mtime_ns: int, image_key: str, true_label: int | None, attack: str,
          _probe: PerturbationProbe) -> tuple[list[float], np.ndarray]:
    """Class probabilities on a fine epsilon grid up to 0.2, in batched forward passes."""
    grid = sorted(set(np.round(np.linspace(0, 0.2, 81), 6).tolist()) | {k / 255 for k in range(17)})
    return grid, _probe.probabilities_many(attack, grid)


def image_key(data: bytes | np.ndarray | str) -> str:
    """A short content hash: the identity of an uploaded image across reruns and sessions."""
    if isinstance(data, str):
        data = data.encode()
    elif isinstance(data, np.ndarray):
        data = data.tobytes()
    return hashlib.sha1(data).hexdigest()[:16]


def decode_upload(content: bytes, size: int) -> tuple[np.ndarray | None, str | None]:
    """(uint8 [size, size] grayscale image, None) or (None, a message that says what is wrong)."""
    from PIL import Image, UnidentifiedImageError

    from busadv.data import decode_image

    if not content:
        return None, "The file is empty."
    try:
        return decode_image(content, size), None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return None, (f"This file is not a readable PNG or JPEG image ({type(exc).__name__}). "
                      f"Upload an ultrasound image saved as PNG or JPEG.")


@dataclass(frozen=True)
class ImageChoice:
    """The image the explorer shows, independent of any model's input size."""

    key: str                    # identity for caches: content hash of an upload, or data fingerprint + name
    name: str
    true_label: int | None      # None: an upload with no known diagnosis (FGSM then uses the prediction)
    upload: bytes | None = None


def test_images_for(info: CheckpointInfo) -> tuple[ImageSet, str]:
    """(images to browse, which images they are) for a checkpoint, on the active data."""
    return checkpoint_test_images(str(info.path), mtime_ns(info.path), data_setting())


def image_for(choice: ImageChoice, info: CheckpointInfo) -> tuple[np.ndarray | None, str | None]:
    """The chosen image at a checkpoint's input size: (uint8 [s, s], None) or (None, why not)."""
    if choice.upload is not None:
        image, problem = decode_upload(choice.upload, info.image_size)
        return image, problem
    images = load_images(data_setting(), info.image_size)
    try:
        index = images.names.index(choice.name)
    except ValueError:
        return None, f"{choice.name} is not in the active data."
    return images.images[index, 0].numpy(), None  # PerturbationProbe copies it


def probe_for(info: CheckpointInfo, choice: ImageChoice, image: np.ndarray) -> PerturbationProbe:
    """The cached probe of this checkpoint version and image."""
    return probe(str(info.path), mtime_ns(info.path), choice.key, choice.true_label, image)


def probe_key(info: CheckpointInfo, choice: ImageChoice) -> tuple[str, int, str, int | None]:
    """The arguments that identify a probe in the caches of smallest_flip, strip and sweep."""
    return str(info.path), mtime_ns(info.path), choice.key, choice.true_label


def flow(gap: str = "small") -> Any:
    """A row whose items wrap onto the next line when the screen is narrow.

    Why not st.columns: columns share the width whatever it is, so on a 900 px screen beside the
    sidebar (about 440 px of page) an image or a number gets a few dozen pixels and is cut off or
    broken mid-word. Items of fixed width in a flow keep their size and move down instead.
    """
    return st.container(horizontal=True, wrap=True, gap=gap)


def readout(label: str, value: str, note: str | None = None, help: str | None = None, width: int = 280) -> None:
    """A bordered tile: a small label over a large value that wraps between words (st.metric cuts it with '…')."""
    with st.container(border=True, width=width):
        st.caption(label, help=help)
        st.markdown(f"#### {value}", anchors=False)
        if note:
            st.markdown(note)


# --------------------------------------------------------------------------- epsilon widgets

def epsilon_slider(label: str, key: str, default: float = 4 / 255, help: str | None = None,
                   disabled: bool = False) -> float:
    """A select slider over EPSILON_CHOICES that shows each stop as '0.031 (8/255)'."""
    if key not in st.session_state:
        st.session_state[key] = min(EPSILON_CHOICES, key=lambda e: abs(e - default))
    return float(st.select_slider(label, options=list(EPSILON_CHOICES), key=key, format_func=format_epsilon,
                                  help=help, disabled=disabled))


def epsilon_list_input(label: str, default: str, key: str, allow_empty: bool = False) -> list[float] | None:
    """A text box for a list of epsilons, echoed back in both forms; None (with a message) when invalid."""
    st.session_state.setdefault(key, default)
    text = st.text_input(label, key=key, help="Comma-separated, as fractions of 255 or decimals: 2/255, 8/255, 0.05")
    try:
        values = parse_epsilon_list(text)
    except ValueError as exc:
        st.error(str(exc))
        return None
    if not values and not allow_empty:
        st.error(f"{label}: give at least one epsilon.")
        return None
    st.caption("= " + ", ".join(format_epsilon(v) for v in values) if values else "none")
    return values


def parse_int_list(text: str) -> list[int]:
    """'0, 1, 2' or '0-4' -> list of ints, for seeds."""
    out: list[int] = []
    for part in str(text).replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            a, b = part.split("-", 1) if not part.startswith("-") else (part, part)
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


# --------------------------------------------------------------------------- jobs

@st.cache_resource(show_spinner=False)
def _job_store(path: str) -> JobStore:
    return JobStore(path)


def job_store() -> JobStore:
    """The job database under $BUSADV_HOME (one JobStore object per database file).

    A database that cannot be used stops the page with the store's own explanation, not a traceback.
    """
    from busadv.jobs import JobStoreError, default_db_path

    try:
        return _job_store(str(default_db_path()))
    except JobStoreError as exc:
        st.error(str(exc), icon=":material/block:")
        st.stop()
        raise  # st.stop() raises; this line only satisfies type checkers


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe_job(job: Job) -> str:
    """One line on what a job does, from its config."""
    c = job.config
    if job.kind == "train":
        mode = c.get("mode", "standard")
        how = "standard" if mode == "standard" else f"{mode} at ε={format_epsilon(float(c.get('epsilon', 0)))}"
        return (f"train {c.get('arch', 'simplecnn')}, {how}, {c.get('epochs', 10)} epochs, "
                f"batch {c.get('batch_size', 32)}, seed {c.get('seed', 0)}")
    if job.kind == "evaluate":
        eps = c.get("epsilons")
        eps_text = ", ".join(format_epsilon(parse_epsilon(e)) for e in eps) if isinstance(eps, list) else "default ε"
        return f"evaluate {Path(str(c.get('checkpoint', '?'))).name} under {', '.join(c.get('attacks', ['fgsm']))} at {eps_text}"
    if job.kind == "experiment":
        try:
            from busadv.experiments import ExperimentConfig

            runs = len(ExperimentConfig.from_dict(dict(c)).runs())
        except Exception:  # noqa: BLE001 - an old or odd config still gets a line
            runs = "?"
        return (f"experiment '{c.get('name', 'experiment')}': {runs} runs ({', '.join(c.get('archs', []))}; "
                f"{', '.join(c.get('modes', []))}; seeds {c.get('seeds', [])})")
    return f"{job.kind} {c}"


STATUS_ICONS = {"queued": ":material/hourglass_empty:", "running": ":material/play_circle:",
                "done": ":green[:material/check_circle:]", "failed": ":red[:material/error:]",
                "cancelled": ":material/cancel:", "interrupted": ":orange[:material/warning:]"}


def progress_text(job: Job) -> str:
    """'epoch 3/10 · loss 0.412 · accuracy 78% · about 1 min left' for a progress bar."""
    parts = []
    if job.kind == "experiment" and not job.active:
        return f"{job.progress:.0%} done"  # the last run's loss is not the experiment's
    if job.epoch is not None and job.epochs:
        parts.append(f"epoch {job.epoch}/{job.epochs}")
    if job.loss is not None:
        parts.append(f"loss {job.loss:.3f}")
    if job.accuracy is not None:
        parts.append(f"test accuracy {job.accuracy:.0%}")
    if job.status == "running" and job.eta_seconds is not None:
        parts.append(f"about {format_seconds(job.eta_seconds)} left")
    if job.status == "queued":
        parts.append("waiting for a free worker slot")
    parts.append(f"{job.progress:.0%} done")
    return " · ".join(parts)


def job_card(job: Job, store: JobStore, key: str = "job", curves: bool = False) -> None:
    """A job with its live progress, a cancel button while active, and its error and log when it failed.

    curves=True: a running training or experiment job also shows its loss and test accuracy per
    finished epoch (for an experiment: of the run in progress), redrawn at every poll.
    """
    with st.container(border=True):
        head, side = st.columns([5, 1], vertical_alignment="center")
        when = dt.datetime.fromtimestamp(job.created).strftime("%Y-%m-%d %H:%M:%S")
        head.markdown(f"{STATUS_ICONS.get(job.status, '')} **Job {job.id} — {job.status}** · {describe_job(job)}")
        head.caption(f"created {when}" + (f" · ran {format_seconds(job.elapsed)}" if job.elapsed is not None else ""))
        if job.active:
            side.button("Cancel", key=f"{key}-cancel-{job.id}", on_click=store.cancel, args=(job.id,),
                        help="Stop this job (a running one stops at its next progress report)")
            st.progress(min(max(float(job.progress), 0.0), 1.0), text=progress_text(job))
            if job.message and job.message not in ("running", "queued"):
                st.caption(job.message)
            if curves and job.status == "running":
                _live_curves(job, store, key)
        elif job.status == "done":
            result = job.result or {}
            st.progress(1.0, text=progress_text(job))
            _done_summary(job, result)
        elif job.status == "failed":
            st.error(f"Failed: {job.error or 'no error message recorded'}")
            _log_tail(job, store, key)
        elif job.status == "interrupted":
            st.warning(job.error or "Interrupted: the worker process stopped without finishing.")
            _log_tail(job, store, key)
        else:
            st.caption(job.message or job.status)


def _live_curves(job: Job, store: JobStore, key: str) -> None:
    from busadv import plots

    history = plots.history_from_progress(store.history(job.id))
    if not history:
        if job.kind in ("train", "experiment"):
            st.caption("The loss and test-accuracy curves start when the first epoch ends.")
        return
    run = f" ({job.message.split(':', 1)[0]})" if job.kind == "experiment" and ":" in (job.message or "") else ""
    st.plotly_chart(plots.training_curves(history, title=f"Job {job.id} so far{run}: per finished epoch",
                                          epochs=job.epochs),
                    key=f"{key}-live-{job.id}", config={"displayModeBar": False})


def _done_summary(job: Job, result: dict[str, Any]) -> None:
    rows = result.get("rows") or []
    clean = next((r for r in rows if r.get("attack") == "none"), None) if job.kind != "experiment" else None
    bits = []
    if result.get("checkpoint"):
        bits.append(f"checkpoint `{Path(result['checkpoint']).name}`")
    if clean is not None:
        bits.append(f"clean test accuracy {clean['accuracy']:.1%}")
    worst = [r for r in rows if r.get("attack") != "none"]
    if worst and len(rows) < 20:
        bits.append("under attack: " + ", ".join(
            f"{r['attack']} {format_epsilon(r['test_epsilon'])} → {r['accuracy']:.0%}" for r in worst))
    elif rows:
        runs = len({r.get("run") for r in rows})
        bits.append(f"{runs} runs, {len(rows)} result rows: see the Results page")
    if bits:
        st.caption(" · ".join(bits))
    for warning in result.get("warnings") or []:
        st.warning(warning, icon=":material/warning:")


def _log_tail(job: Job, store: JobStore, key: str) -> None:
    lines = store.logs(job.id, tail=40)
    with st.expander("Log (last 40 lines)", expanded=job.status == "failed"):
        st.code("\n".join(lines) if lines else "(the log is empty)", language=None)


def job_list(store: JobStore, jobs: Sequence[Job], key: str = "jobs", curves: bool = False) -> None:
    for job in jobs:
        job_card(job, store, key=key, curves=curves)


POLL_SECONDS = 1.5


def live(store: JobStore, body: Callable[[], None], key: str) -> None:
    """Draw `body` in a fragment that reruns every POLL_SECONDS while a job is queued or running.

    Why a fragment: only the job list refreshes, not the page's widgets. Polling stops by itself: when
    the last job finishes, one full rerun redraws the page (new checkpoints, results) without a timer.
    Each poll also dispatches queued jobs and reaps dead workers, so a job whose worker died shows
    as interrupted even after a restart of the Streamlit server.
    """
    every = POLL_SECONDS if store.any_active() else None

    @st.fragment(run_every=every, key=f"live-{key}")
    def _live() -> None:
        store.dispatch()
        body()
        if every is not None and not store.any_active():
            st.rerun()

    _live()


def quick_train_panel(store: JobStore) -> None:
    """With no checkpoint yet: offer a quick training job instead of failing, and follow it live."""
    facts = dataset_facts(data_setting())
    data = SIMULATED_LABEL if facts["simulated"] else facts["source"]
    st.warning("**No trained model yet.** The explorer needs one: train a quick SimpleCNN in the background "
               f"on the active data, {data}. It takes about a minute on two CPU cores with the simulated "
               "phantoms, a few minutes on BUSI; nothing is downloaded.", icon=":material/model_training:")
    recent = [j for j in store.list(limit=20) if j.kind == "train"]
    if not any(j.active for j in recent):
        if st.button("Train a quick model (SimpleCNN, standard training, 10 epochs)", type="primary",
                     key="quick-train"):
            store.submit("train", dict(QUICK_TRAIN_CONFIG))
            st.rerun()
        st.caption("Or start any training run on the Jobs page.")

    def follow() -> None:
        shown = [j for j in store.list(limit=20) if j.kind == "train"]
        active = [j for j in shown if j.active]
        job_list(store, active or shown[:1], key="quick")

    live(store, follow, key="quick")
