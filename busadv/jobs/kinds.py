"""The kinds of background job, behind one registry; each names the function a worker runs.

Targets are "module:function" strings resolved only inside the worker process, so pages that list or
submit jobs never import torch. Test-only kinds are registered by the tests' own plugin module
($BUSADV_PLUGINS), never shipped here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from busadv.progress import ProgressFn
from busadv.registry import Registry

JobFunction = Callable[[dict, ProgressFn], dict]


@dataclass(frozen=True)
class JobKind:
    name: str
    label: str
    target: str  # "package.module:function", called as function(config: dict, progress) -> dict
    # The function takes a "state_file" setting where it keeps per-epoch state and goes on from it,
    # so a resumed job continues after its last finished epoch instead of starting again.
    keeps_state: bool = False

    def function(self) -> JobFunction:
        module_name, _, attribute = self.target.partition(":")
        module = importlib.import_module(module_name)
        try:
            return getattr(module, attribute)
        except AttributeError:
            raise RuntimeError(f"job kind {self.name!r}: {module_name} has no function {attribute}") from None


JOB_KINDS: Registry[JobKind] = Registry("job kind")


def register_job_kind(kind: JobKind, replace: bool = False) -> JobKind:
    return JOB_KINDS.register(kind, replace=replace)


register_job_kind(JobKind("train", "Train a model", "busadv.experiments.workflows:train_job", keeps_state=True))
register_job_kind(JobKind("evaluate", "Evaluate a checkpoint", "busadv.experiments.workflows:evaluate_job"))
register_job_kind(JobKind("experiment", "Run an experiment grid", "busadv.experiments.workflows:experiment_job"))
register_job_kind(JobKind("report", "The study report", "busadv.report.workflow:report_job"))
register_job_kind(JobKind("flips", "Find each image's smallest flipping epsilon",
                          "busadv.experiments.workflows:flips_job"))
register_job_kind(JobKind("corruptions", "Scanner corruptions", "busadv.experiments.robustness:corruption_job"))
register_job_kind(JobKind("transfer", "Transfer attacks between models", "busadv.experiments.robustness:transfer_job"))
