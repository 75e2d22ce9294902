"""The benchmark, `python -m busadv bench`: ratios of busadv against its floors and plain reference code,
both sides measured in one run. One module per section (fgsm, sweep, slider, training, study, memory,
startup, levers), shared timing and table code in `common`, the run's shared state in `context`, and the
command line in `cli` (its docstring lists the sections)."""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; torch and the engine are imported only when it runs."""
    from busadv.bench.cli import main as cli_main

    return cli_main(argv)


__all__ = ["main"]
