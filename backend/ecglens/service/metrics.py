"""Prometheus text exposition (format 0.0.4), written by hand: request counters and latency histograms kept in
this process, and job figures read from the database at scrape time (so Celery workers' jobs count too)."""

from __future__ import annotations

import threading
from collections import defaultdict

from sqlalchemy import func, select

from ecglens.service.db import DONE, Analysis
from ecglens.service.runtime import Runtime

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS_S = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class MetricsRegistry:
    """Request counts and latency histograms by (method, route template, status)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency_buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(LATENCY_BUCKETS_S))
        self.latency_sum: dict[tuple[str, str], float] = defaultdict(float)
        self.latency_count: dict[tuple[str, str], int] = defaultdict(int)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            key = (method, route)
            for i, bound in enumerate(LATENCY_BUCKETS_S):
                if seconds <= bound:
                    self.latency_buckets[key][i] += 1
            self.latency_sum[key] += seconds
            self.latency_count[key] += 1

    def render(self, runtime: Runtime) -> str:
        """The exposition text."""
        lines: list[str] = []
        with self._lock:
            lines += [
                "# HELP ecglens_http_requests_total HTTP requests by method, route and status.",
                "# TYPE ecglens_http_requests_total counter",
            ]
            for (method, route, status), n in sorted(self.requests.items()):
                lines.append(
                    f'ecglens_http_requests_total{{method="{method}",route="{_esc(route)}",status="{status}"}} {n}'
                )
            lines += [
                "# HELP ecglens_http_request_duration_seconds Request latency.",
                "# TYPE ecglens_http_request_duration_seconds histogram",
            ]
            for (method, route), counts in sorted(self.latency_buckets.items()):
                labels = f'method="{method}",route="{_esc(route)}"'
                for bound, c in zip(LATENCY_BUCKETS_S, counts):
                    lines.append(f'ecglens_http_request_duration_seconds_bucket{{{labels},le="{bound}"}} {c}')
                total = self.latency_count[(method, route)]
                lines.append(f'ecglens_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {total}')
                lines.append(
                    f"ecglens_http_request_duration_seconds_sum{{{labels}}} {self.latency_sum[(method, route)]:.6f}"
                )
                lines.append(f"ecglens_http_request_duration_seconds_count{{{labels}}} {total}")
        lines += _job_lines(runtime)
        return "\n".join(lines) + "\n"


def _job_lines(runtime: Runtime) -> list[str]:
    with runtime.sessions() as session:
        by_status = dict(session.execute(select(Analysis.status, func.count()).group_by(Analysis.status)).all())
        done = select(Analysis.duration_s).where(Analysis.status == DONE, Analysis.duration_s.is_not(None))
        n_done = session.scalar(select(func.count()).select_from(done.subquery())) or 0
        total_s = (
            session.scalar(select(func.coalesce(func.sum(Analysis.duration_s), 0.0)).where(Analysis.status == DONE))
            or 0.0
        )
        buckets = [
            session.scalar(
                select(func.count()).select_from(Analysis).where(Analysis.status == DONE, Analysis.duration_s <= b)
            )
            or 0
            for b in JOB_BUCKETS_S
        ]
        queries = session.scalar(select(func.coalesce(func.sum(Analysis.queries), 0))) or 0
    lines = ["# HELP ecglens_analyses Analyses by status.", "# TYPE ecglens_analyses gauge"]
    for status in ("queued", "running", "done", "failed"):
        lines.append(f'ecglens_analyses{{status="{status}"}} {by_status.get(status, 0)}')
    lines += [
        "# HELP ecglens_queue_depth Analyses waiting for a worker.",
        "# TYPE ecglens_queue_depth gauge",
        f"ecglens_queue_depth {by_status.get('queued', 0)}",
        "# HELP ecglens_job_duration_seconds Wall time of finished analyses.",
        "# TYPE ecglens_job_duration_seconds histogram",
    ]
    for bound, c in zip(JOB_BUCKETS_S, buckets):
        lines.append(f'ecglens_job_duration_seconds_bucket{{le="{bound}"}} {c}')
    lines += [
        f'ecglens_job_duration_seconds_bucket{{le="+Inf"}} {n_done}',
        f"ecglens_job_duration_seconds_sum {float(total_s):.6f}",
        f"ecglens_job_duration_seconds_count {n_done}",
        "# HELP ecglens_classifier_queries_total Classifier rows queried by finished analyses.",
        "# TYPE ecglens_classifier_queries_total counter",
        f"ecglens_classifier_queries_total {int(queries)}",
    ]
    return lines


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
