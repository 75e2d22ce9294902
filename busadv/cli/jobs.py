"""`python -m busadv jobs list | run | cancel | resume | logs`: the job store from a terminal (and the worker's entry).

Imports no torch until a worker runs a job, so `jobs list` answers at once.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence

from busadv.jobs import Job, JobStateError, JobStatus, JobStore, JobStoreError, run_job


def format_table(jobs: list[Job]) -> str:
    lines = [f"{'id':>5}  {'kind':<10}  {'status':<11}  {'progress':>8}  {'epoch':>7}  {'created':<16}  message"]
    for job in jobs:
        epoch = f"{job.epoch}/{job.epochs}" if job.epoch is not None and job.epochs else ""
        created = dt.datetime.fromtimestamp(job.created).strftime("%Y-%m-%d %H:%M")
        failed = job.status in (JobStatus.FAILED, JobStatus.INTERRUPTED)
        message = job.error if failed and job.error else job.message
        lines.append(f"{job.id:>5}  {job.kind:<10}  {job.status.value:<11}  {job.progress:>7.0%}  {epoch:>7}  "
                     f"{created:<16}  {message}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m busadv jobs",
                                     description="Background jobs: list, run (what workers do), cancel, resume, "
                                                 "logs.")
    parser.add_argument("--db", help="job database (default: $BUSADV_HOME/jobs.sqlite)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="show the newest jobs")
    p_list.add_argument("--limit", type=int, default=30)
    p_run = sub.add_parser("run", help="run one queued job in this process (what workers do)")
    p_run.add_argument("job_id", type=int)
    p_cancel = sub.add_parser("cancel", help="cancel a queued or running job")
    p_cancel.add_argument("job_id", type=int)
    p_resume = sub.add_parser("resume", help="queue an interrupted, failed or cancelled job again; training goes "
                                             "on after its last finished epoch")
    p_resume.add_argument("job_id", type=int)
    p_logs = sub.add_parser("logs", help="print the end of a job's log")
    p_logs.add_argument("job_id", type=int)
    p_logs.add_argument("--tail", type=int, default=200)
    for p in (p_list, p_run, p_cancel, p_resume, p_logs):  # --db accepted before or after the subcommand
        p.add_argument("--db", dest="db_sub", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        store = JobStore(args.db_sub or args.db)
        if args.command == "list":
            store.reap()
            print(format_table(store.list(args.limit)))
        elif args.command == "run":
            run_job(args.job_id, store)
            job = store.get(args.job_id)
            print(f"job {job.id}: {job.status.value}" + (f" - {job.error}" if job.error else ""), file=sys.stderr)
            return 0 if job.status is JobStatus.DONE else 1
        elif args.command == "cancel":
            store.cancel(args.job_id)
            print(f"job {args.job_id}: {store.get(args.job_id).status.value}")
        elif args.command == "resume":
            job = store.resume(args.job_id)
            print(f"job {job.id}: {job.status.value} ({job.message})")
        elif args.command == "logs":
            print("\n".join(store.logs(args.job_id, args.tail)))
    except (JobStoreError, JobStateError, KeyError, ValueError) as exc:
        print(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    return 0
