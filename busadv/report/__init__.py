"""Reports: the seed study run or reused, its findings judged from the data, as one self-contained HTML file."""

from busadv.report.findings import Finding
from busadv.report.workflow import report_job, reports_dir, stored_reports

__all__ = ["Finding", "report_job", "reports_dir", "stored_reports"]
