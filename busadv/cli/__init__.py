"""`python -m busadv ...`: one command line for everything the dashboard does, plus jobs and the benchmark.

Every choice (models, training modes, attacks) is read from the registries, so a newly registered
entry appears here with no edit. Settings are checked before any work starts; errors users can fix
come out as one line naming the option, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import Any

# Command groups: each module adds its subcommands with register(subparsers). A new group is a new module
# and one entry here.
COMMAND_MODULES = (
    "busadv.cli.commands",
    "busadv.cli.flips",
    "busadv.cli.report",
    "busadv.cli.robustness",
    "busadv.cli.explain",
    "busadv.cli.frontier",
    "busadv.cli.compare",
    "busadv.cli.epochs",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="python -m busadv", description=(
        "Train, attack and evaluate breast-ultrasound classifiers under adversarial perturbations. "
        "Epsilons are in [0, 1] pixel scale and may be written as fractions: 8/255 = 0.031."))
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    sub.add_parser("jobs", help="background jobs: list, run, cancel, resume, logs (see: python -m busadv jobs --help)")
    sub.add_parser("bench", help="the benchmark (see: python -m busadv bench --help)")
    return parser


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Warnings for users: the message, without module paths and line numbers."""
    print(f"warning: {message}", file=sys.stderr)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C is, so that the same clean-up runs (a grid's workers are
    ended, its finished rows kept) instead of the process vanishing and leaving its workers behind."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


@contextlib.contextmanager
def stops_cleanly() -> Any:
    """SIGTERM handled like Ctrl-C while a command runs (only the main thread may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def stopped_message(exc: KeyboardInterrupt) -> tuple[str, int]:
    """One line for a command stopped by a signal, with what was kept (the exception's notes), and its exit code."""
    what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
    notes = "; ".join(getattr(exc, "__notes__", []))
    return (f"{what}: {notes}" if notes else what), (143 if isinstance(exc, Terminated) else 130)


def environment_error() -> str | None:
    """The environment checked before anything else (folders, job limit, plugins): its one-line problem, or None."""
    from busadv.registry import PluginError, load_plugins
    from busadv.settings import SettingError, check_environment

    try:
        check_environment()
        load_plugins()
    except (SettingError, PluginError) as exc:
        return str(exc)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; output into a pipe closed early (`| head`) ends quietly, as other tools do."""
    from busadv.cli.output import plain_output

    try:
        with plain_output():
            code = _main(argv)
            sys.stdout.flush()
        return code
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)  # Python flushes stdout again at exit: let that go nowhere
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] not in (["-h"], ["--help"]) and (problem := environment_error()):
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if argv[:1] == ["jobs"]:
        from busadv.cli import jobs

        return jobs.main(argv[1:])
    if argv[:1] == ["bench"]:
        from busadv.bench import main as bench_main

        return bench_main(argv[1:])
    from busadv.data import DatasetError
    from busadv.models import PretrainedWeightsUnavailable
    from busadv.models.checkpoints import CheckpointError

    args = build_parser().parse_args(argv)
    with warnings.catch_warnings(), stops_cleanly():
        warnings.simplefilter("default")
        warnings.simplefilter("ignore", ResourceWarning)
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args))
        except (DatasetError, CheckpointError, PretrainedWeightsUnavailable, ValueError, FileNotFoundError,
                PermissionError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            message, code = stopped_message(exc)
            print(message, file=sys.stderr)
            return code
