"""Background jobs: training, evaluation and experiments in worker processes, state in SQLite.

Imports no torch: pages import this on every rerun. `python -m busadv jobs ...` is its command line.
"""

from busadv.jobs.job import Job, JobStateError, JobStoreError, SavedEpoch
from busadv.jobs.kinds import JOB_KINDS, JobKind, register_job_kind
from busadv.jobs.processes import max_concurrent
from busadv.jobs.status import ACTIVE_STATUSES, JobStatus
from busadv.jobs.store import JobStore, default_db_path
from busadv.jobs.worker import run_job

__all__ = ["ACTIVE_STATUSES", "JOB_KINDS", "Job", "JobKind", "JobStateError", "JobStatus", "JobStore",
           "JobStoreError", "SavedEpoch", "default_db_path", "max_concurrent", "register_job_kind", "run_job"]
