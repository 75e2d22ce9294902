"""Background jobs on a page: the shared job store, one card per job, live polling, the quick-train panel.

Jobs run in worker processes (busadv.jobs) with their state in SQLite, so they survive page reloads,
several tabs and a restart of `streamlit run`; these helpers only read and draw that state. A job that
stopped unfinished can be resumed from its card; a database that cannot be used is reported once and
the page goes on without jobs.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import streamlit as st

from busadv import plots
from busadv.app.layout import legend_below, plain
from busadv.attacks import attack_label, format_epsilon, format_epsilon_list, parse_epsilon_list
from busadv.jobs import JOB_KINDS, Job, JobStateError, JobStatus, JobStore, JobStoreError, SavedEpoch, default_db_path
from busadv.plots.style import text
from busadv.progress import format_seconds
from busadv.results import kept_weights
from busadv.training import MODES

# The explorer's "train a quick model" job: the study's recipe on the active data, about a minute on
# two CPU cores with the simulated phantoms; tested under FGSM and PGD at two small epsilons.
QUICK_TRAIN_CONFIG: dict[str, Any] = {"arch": "simplecnn", "mode": "standard", "epochs": 10, "batch_size": 32,
                                      "seed": 0, "test_epsilons": [2 / 255, 8 / 255], "test_attacks": ["fgsm", "pgd"]}
POLL_SECONDS = 1.5


@st.cache_resource(show_spinner=False)
def _job_store(path: str) -> JobStore:
    return JobStore(path)


# Return types named here: inside PageJobStore, `list` is its method.
JobList = list[Job]
Rows = list[dict[str, Any]]
Lines = list[str]
Ids = list[int]


class PageJobStore:
    """The job store as a page uses it: a database that cannot be used is reported once, and the page goes on.

    Why: the job database is one file, and damage to it (or a file that is not one) must not take the
    explorer, the list of trained models or the results with it. After the first failure of a page
    run the page works read-only on what does not need the database: reads answer "no jobs", and
    starting, cancelling or resuming a job says why it cannot be done.
    """

    def __init__(self, store: JobStore | None, problem: str | None = None) -> None:
        self.store, self.problem = store, problem

    def report(self) -> None:
        """Show the database problem once per page run, however many helpers of the page open the store."""
        if not self.problem or _reported_this_run():
            return
        st.error(f"**Jobs are unavailable.** {plain(self.problem)} Trained models, the explorer and the "
                 "results still work.", icon=":material/block:")

    def _read(self, default: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.store is None:
            return default
        try:
            return getattr(self.store, method)(*args, **kwargs)
        except JobStoreError as exc:
            self.store, self.problem = None, str(exc)
            self.report()
            return default

    def _write(self, method: str, *args: Any) -> Any:
        """A change a user asked for; refused in a toast (callbacks cannot draw in the page) when impossible."""
        if self.store is None:
            st.toast(f"Not done: {plain(self.problem or 'the job database is unavailable')}", icon=":material/block:")
            return None
        try:
            return getattr(self.store, method)(*args)
        except (JobStoreError, JobStateError, KeyError, ValueError) as exc:
            st.toast(f"Not done: {plain(exc.args[0] if isinstance(exc, KeyError) else exc)}", icon=":material/block:")
            return None

    def list(self, limit: int = 100) -> JobList:
        return self._read([], "list", limit=limit)

    def any_active(self) -> bool:
        return bool(self._read(False, "any_active"))

    def dispatch(self) -> Ids:
        return self._read([], "dispatch")

    def history(self, job_id: int) -> Rows:
        return self._read([], "history", job_id)

    def logs(self, job_id: int, tail: int = 200) -> Lines:
        return self._read([], "logs", job_id, tail=tail)

    def saved_epoch(self, job: Job) -> SavedEpoch | None:
        return None if self.store is None else self.store.saved_epoch(job)

    def submit(self, kind: str, config: dict[str, Any]) -> int | None:
        return self._write("submit", kind, config)

    def cancel(self, job_id: int) -> None:
        self._write("cancel", job_id)

    def resume(self, job_id: int) -> None:
        self._write("resume", job_id)


_REPORTED = "_busadv_jobs_unavailable_reported"


def _reported_this_run() -> bool:
    """True when this page run already said that jobs are unavailable; marks it said otherwise.

    Why the run's cursor table: Streamlit gives each script run a new one (and nothing else that names
    a run), and holding it in the session state keeps it alive, so `is` cannot mistake a later run for it.
    """
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    run = getattr(ctx, "cursors", None)
    if run is None:  # outside a script run: nothing to repeat
        return False
    if st.session_state.get(_REPORTED) is run:
        return True
    st.session_state[_REPORTED] = run
    return False


def job_store() -> PageJobStore:
    """The job database under $BUSADV_HOME (one JobStore object per database file), guarded for pages.

    A database that cannot be used is reported here, once, with the store's own explanation; the
    page goes on without jobs instead of stopping or showing a traceback.
    """
    try:
        store = PageJobStore(_job_store(str(default_db_path())))
    except JobStoreError as exc:
        store = PageJobStore(None, str(exc))
    store.report()
    store.any_active()  # a damaged table is found (and reported) here, at the top of the page
    return store


def submit(store: PageJobStore, kind: str, config: dict[str, Any]) -> int | None:
    """Queue a job and say so in a toast (or say why it could not be queued)."""
    job_id = store.submit(kind, config)
    if job_id is not None:
        st.toast(f"Job {job_id} queued", icon=":material/check_circle:")
    return job_id


# --------------------------------------------------------------------------- words for a job

def _label(registry: Any, name: Any) -> str:
    return registry.get(name).label if isinstance(name, str) and name in registry else str(name)


def _epsilons(values: Any) -> str:
    try:
        return format_epsilon_list(parse_epsilon_list(values)) if isinstance(values, list) else "default ε"
    except ValueError:
        return "?"


def _plural(n: Any, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _names(values: Any) -> str:
    return ", ".join(str(v) for v in values) if isinstance(values, list) else str(values)


def describe_job(job: Job) -> str:
    """One line on what a job does, from its config: 'train simplecnn · fgsm at ε=0.031 (8/255) · 10 epochs · …'.

    The config is read as it was stored (a job from an older busadv, or another tool, may hold odd values);
    the line is plain text: pages pass it through `plain`.
    """
    c = job.config if isinstance(job.config, dict) else {}
    if job.kind == "train":
        mode = str(c.get("mode", "standard"))
        how = mode
        if mode in MODES and MODES.get(mode).adversarial:
            how += f" at ε={format_epsilon(_number(c.get('epsilon', 0)))}"
        return (f"train {c.get('arch', 'simplecnn')} · {how} · {_plural(c.get('epochs', 10), 'epoch')} · "
                f"batch {c.get('batch_size', 32)} · seed {c.get('seed', 0)}")
    if job.kind == "evaluate":
        attacks = c.get("attacks", ["fgsm", "pgd"])
        attacks = ", ".join(attack_label(str(a)) for a in (attacks if isinstance(attacks, list) else [attacks]))
        return f"evaluate {Path(str(c.get('checkpoint', '?'))).name} under {attacks} at {_epsilons(c.get('epsilons'))}"
    if job.kind == "experiment":
        try:
            from busadv.experiments import ExperimentConfig

            grid = ExperimentConfig.from_dict(dict(c))
            # The choosing runs are runs too: '2 runs' for a grid that trains six puzzles.
            runs: int | str = len(grid.runs()) + (len(grid.choosing_runs()) if grid.epochs_chosen_on else 0)
            chosen = f" · chosen on seeds {grid.epochs_chosen_on}" if grid.epochs_chosen_on else ""
        except (ValueError, TypeError, KeyError, AttributeError):  # an old or odd config still gets a line
            runs, chosen = "?", ""
        return (f"experiment '{c.get('name', 'experiment')}' · {runs} runs · {_names(c.get('archs', []))} · "
                f"{_names(c.get('modes', []))} · seeds {_names(c.get('seeds', []))}{chosen}")
    if job.kind == "report":
        archs = c.get("archs")
        return ("study report" + (f" · {_names(archs)}" if archs else "")
                + (f" · seeds {_names(c.get('seeds'))}" if c.get("seeds") is not None else "")
                + (f" · {_plural(c.get('epochs'), 'epoch')}" if c.get("epochs") is not None else "")
                + (" · reuse stored runs only" if c.get("run") is False else ""))
    if job.kind in ("flips", "corruptions") and c.get("checkpoint"):
        return f"{_label(JOB_KINDS, job.kind)} · {Path(str(c.get('checkpoint'))).name}"
    return _label(JOB_KINDS, job.kind)


STATUS_ICONS: dict[JobStatus, str] = {
    JobStatus.QUEUED: ":material/hourglass_empty:", JobStatus.RUNNING: ":material/play_circle:",
    JobStatus.DONE: ":green[:material/check_circle:]", JobStatus.FAILED: ":red[:material/error:]",
    JobStatus.CANCELLED: ":material/cancel:", JobStatus.INTERRUPTED: ":orange[:material/warning:]"}


def progress_text(job: Job) -> str:
    """'epoch 3/10 · loss 0.412 · test accuracy 78% · about 1 min left · 30% done' for a progress bar."""
    if job.kind == "experiment" and not job.active:
        return f"{job.progress:.0%} done"  # the last run's loss is not the experiment's
    parts = []
    if job.epoch is not None and job.epochs:
        parts.append(f"epoch {job.epoch}/{job.epochs}")
    if job.loss is not None:
        parts.append(f"loss {job.loss:.3f}")
    if job.accuracy is not None:
        parts.append(f"test accuracy {job.accuracy:.0%}")
    if job.status is JobStatus.RUNNING and job.eta_seconds is not None:
        parts.append(f"about {format_seconds(job.eta_seconds)} left")
    if job.status is JobStatus.QUEUED:
        parts.append("waiting for a free worker slot")
    parts.append(f"{job.progress:.0%} done")
    return " · ".join(parts)


def _percent(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) and not math.isnan(value) else "n/a"


def _count(value: Any) -> int | None:
    """A count a result states: a list's length or a whole number (a report stores how many rows it read)."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _file_name(value: Any) -> str:
    return plain(Path(str(value)).name)


def result_summary(job: Job) -> list[str]:
    """Short lines on what a finished job found (the full rows are on the Results page).

    Why so guarded: each kind of job returns its own shape (a report counts its rows, a flips job lists
    images, a transfer job holds a matrix), and old or foreign jobs in the database may hold anything.
    """
    result = job.result if isinstance(job.result, dict) else {}
    raw_rows = result.get("rows")
    rows = [r for r in raw_rows if isinstance(r, dict)] if isinstance(raw_rows, list) else []
    lines = []
    if result.get("checkpoint"):
        lines.append(f"Saved model: {_file_name(result['checkpoint'])}")
    if job.kind == "train" and rows and (kept := kept_weights(rows[0])):
        lines.append(f"Weights tested: {kept}.")
    if job.kind == "report" or result.get("html"):
        if result.get("html"):
            lines.append(f"Report written: {_file_name(result['html'])} (shown on the Study page)")
        count = _count(raw_rows)
        if count is not None:
            lines.append(f"{_plural(count, 'result row')} behind it.")
        findings = [f for f in result.get("findings") or [] if isinstance(f, dict)]
        if findings:
            lines.append(f"{_plural(len(findings), 'finding')} judged: see the Study page.")
        return lines
    flips = _count(result.get("flips"))
    if flips is not None:
        lines.append(f"{_plural(flips, 'test image')} searched for the smallest flipping ε: see the Results page.")
    if isinstance(result.get("matrix"), dict):
        models = _count(result.get("checkpoints"))
        lines.append(f"Transfer matrix over {_plural(models if models is not None else '?', 'model')}: see the "
                     "Results page.")
    runs = {str(r.get("run")) for r in rows}
    if len(runs) == 1:
        clean = next((r for r in rows if r.get("attack") == "none" and r.get("severity") is None), None)
        if clean is not None:
            lines.append(f"Clean test images: balanced accuracy **{_percent(clean.get('balanced_accuracy'))}**, "
                         f"accuracy {_percent(clean.get('accuracy'))}, malignant sensitivity "
                         f"{_percent(clean.get('malignant_sensitivity'))}.")
        attacked: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            if row.get("attack") != "none" and row.get("severity") is None:
                attacked.setdefault(str(row.get("attack")), []).append(row)
        for attack, series in attacked.items():
            lines.append(f"Under {plain(attack_label(attack))}, balanced accuracy " + " · ".join(
                f"{_percent(r.get('balanced_accuracy'))} at ε={format_epsilon(_number(r.get('test_epsilon')))}"
                for r in sorted(series, key=lambda r: _number(r.get("test_epsilon")))))
        graded = sum(1 for r in rows if r.get("severity") is not None)
        if graded:
            lines.append(f"{_plural(graded, 'scanner-corruption row')}: see the Results page.")
    elif rows:
        lines.append(f"{len(runs)} runs, {len(rows)} result rows: see the Results page.")
    chosen = _epoch_choices(result.get("epoch_choices"))
    if chosen:
        lines.append(chosen)
    return lines


def _epoch_choices(value: Any) -> str:
    """'Epoch counts chosen on validation of seeds 5-9: simplecnn standard: 31; …' (with the values chosen among,
    where a grid chose some: 'simplecnn fgsm at ε=8/255: 28 (critical_weight 2.0)') from an experiment job's
    result; '' when it holds none (or nothing readable)."""
    choices = [c for c in value if isinstance(c, dict)] if isinstance(value, list) else []
    parts, seeds = [], ""
    for c in choices[:50]:
        epochs, mode, eps = c.get("epochs"), c.get("mode"), c.get("epsilon")
        if not (isinstance(epochs, int) and not isinstance(epochs, bool) and isinstance(mode, str)
                and isinstance(eps, (int, float)) and math.isfinite(eps) and 0 <= eps <= 1):
            continue
        seeds = seeds or str(c.get("chosen_on", ""))[:40]
        where = f" at ε={format_epsilon(float(eps))}" if eps else ""
        levers = c.get("levers")
        values = ", ".join(f"{str(k)[:30]} {str(v)[:20]}" for k, v in list(levers.items())[:4]) \
            if isinstance(levers, dict) else ""
        parts.append(f"{plain(str(c.get('model', ''))[:40])} {plain(mode[:40])}{where}: {epochs}"
                     + (f" ({plain(values)})" if values else ""))
    if not parts:
        return ""
    return f"Epoch counts chosen on validation of seeds {plain(seeds)}: {'; '.join(parts)}."


def training_history(job: Job) -> list[dict[str, Any]]:
    """A finished training job's per-epoch history (a list of dicts), or [] when its result holds none."""
    history = job.result.get("history") if isinstance(job.result, dict) else None
    return [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []


def _number(value: Any) -> float:
    """A float from a stored field, 0 when it is none (rows from elsewhere may hold text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


# --------------------------------------------------------------------------- cards

def job_card(job: Job, store: PageJobStore, key: str = "job", curves: bool = False) -> None:
    """A job with its live progress, a cancel button while active, its findings when done, its log when it failed.

    curves=True: a running training or experiment job also shows its loss and test accuracy per
    finished epoch (for an experiment: of the run in progress), redrawn at every poll.
    """
    with st.container(border=True):
        head, side = st.columns([5, 1], vertical_alignment="center")
        when = dt.datetime.fromtimestamp(job.created).strftime("%Y-%m-%d %H:%M:%S")
        head.markdown(f"{STATUS_ICONS.get(job.status, '')} **Job {job.id} — {job.status.value}** · "
                      f"{plain(describe_job(job))}")
        head.caption(f"created {when}" + (f" · ran {format_seconds(job.elapsed)}" if job.elapsed is not None else ""))
        if job.active:
            side.button("Cancel", key=f"{key}-cancel-{job.id}", on_click=store.cancel, args=(job.id,),
                        help="Stop this job (a running one stops at its next progress report)")
            st.progress(min(max(float(job.progress), 0.0), 1.0), text=progress_text(job))
            if job.message and job.message not in ("running", "queued"):
                st.caption(plain(job.message))
            if curves and job.status is JobStatus.RUNNING:
                _live_curves(job, store, key)
        elif job.status is JobStatus.DONE:
            st.progress(1.0, text=progress_text(job))
            for line in result_summary(job):
                st.caption(line)
            diagnoses = job.result.get("diagnoses") if isinstance(job.result, dict) else None
            for diagnosis in diagnoses if isinstance(diagnoses, list) else []:
                st.warning(plain(diagnosis), icon=":material/warning:")
        elif job.status is JobStatus.FAILED:
            st.error(f"Failed: {plain(job.error or 'no error message recorded')}")
            _resume_button(job, store, side, key)
            _log_tail(job, store)
        elif job.status is JobStatus.INTERRUPTED:
            st.warning(plain(job.error or "Interrupted: the worker process stopped without finishing."))
            _resume_button(job, store, side, key)
            _log_tail(job, store)
        else:
            st.caption(plain(job.message or job.status.value))
            if job.status is JobStatus.CANCELLED:
                _resume_button(job, store, side, key)


def _resume_button(job: Job, store: PageJobStore, side: Any, key: str) -> None:
    """Resume (training goes on after its last saved epoch) or run again, for a job that stopped unfinished."""
    saved = store.saved_epoch(job)
    if saved:
        help_text = (f"Training state was saved after {saved}: the job goes on from there "
                     "with the same settings and random numbers.")
        st.caption(f":material/restore: Saved after {saved}: **Resume** goes on from there.")
    else:
        help_text = "No training state was saved (it stopped before an epoch ended, or keeps none): runs it again."
    side.button("Resume" if saved else "Run again", key=f"{key}-resume-{job.id}", on_click=store.resume,
                args=(job.id,), help=help_text)


def _live_curves(job: Job, store: PageJobStore, key: str) -> None:
    history = plots.history_from_progress(store.history(job.id))
    if not history:
        if job.kind in ("train", "experiment"):
            st.caption("The loss and test-accuracy curves start when the first epoch ends.")
        return
    run = f" ({text(job.message.split(':', 1)[0])})" if job.kind == "experiment" and ":" in (job.message or "") else ""
    st.plotly_chart(legend_below(plots.training_curves(history, title=f"Job {job.id} so far{run}: per finished epoch",
                                                       epochs=job.epochs)),
                    key=f"{key}-live-{job.id}", config={"displayModeBar": False})


def _log_tail(job: Job, store: PageJobStore) -> None:
    lines = store.logs(job.id, tail=40)
    with st.expander("Log (last 40 lines)", expanded=job.status is JobStatus.FAILED):
        st.code("\n".join(lines) if lines else "(the log is empty)", language=None)


def job_list(store: PageJobStore, listed: Sequence[Job], key: str = "jobs", curves: bool = False) -> None:
    for job in listed:
        job_card(job, store, key=key, curves=curves)


def live(store: PageJobStore, body: Callable[[], None], key: str) -> None:
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


def active_first(store: PageJobStore, limit: int = 50) -> list[Job]:
    """The newest jobs, queued and running ones first."""
    listed = store.list(limit=limit)
    return [j for j in listed if j.active] + [j for j in listed if not j.active]


def quick_train_panel(store: PageJobStore, data_label: str) -> None:
    """With no checkpoint yet: offer a quick training job instead of failing, and follow it live."""
    st.warning("**No trained model yet.** The explorer needs one: train a quick SimpleCNN in the background "
               f"on the active data, {data_label}. It takes about a minute on two CPU cores with the simulated "
               "phantoms, a few minutes on BUSI; nothing is downloaded.", icon=":material/model_training:")
    recent = [j for j in store.list(limit=20) if j.kind == "train"]
    if not any(j.active for j in recent):
        label = f"Train a quick model (SimpleCNN, standard training, {QUICK_TRAIN_CONFIG['epochs']} epochs)"
        if (st.button(label, type="primary", key="quick-train")
                and submit(store, "train", dict(QUICK_TRAIN_CONFIG)) is not None):
            st.rerun()
        st.caption("Or start any training run on the Jobs page.")

    def follow() -> None:
        shown = [j for j in store.list(limit=20) if j.kind == "train"]
        active = [j for j in shown if j.active]
        job_list(store, active or shown[:1], key="quick", curves=True)

    live(store, follow, key="quick")
