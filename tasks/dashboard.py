"""What the operations dashboard shows, read from the ledger, RabbitMQ, the workers and beat.

Every figure is computed here and returned as plain data (JSON-ready), so the admin page, its
auto-refresh endpoint and the tests all see the same numbers.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min, Q
from django.db.models.functions import TruncHour, TruncMinute
from django.utils import timezone
from django.utils.module_loading import import_string
from django_celery_beat.models import PeriodicTask

from config.celery import app
from config.queues import ALL as QUEUES
from tasks.models import TaskRecord, TaskState
from tasks.rabbitmq import queue_depths

log = logging.getLogger(__name__)

WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
TOP_FAILURE_CAUSES = 10


def dashboard_data() -> dict:
    now = timezone.now()
    return {
        "generated_at": now.isoformat(),
        "queues": queues_overview(now=now),
        "tasks": {window: task_stats(since=now - span) for window, span in WINDOWS.items()},
        "throughput": throughput_series(now=now),
        "failure_causes": failure_causes(since=now - WINDOWS["day"]),
        "workers": workers_online(),
        "periodic_jobs": periodic_jobs(now=now),
        "panels": extra_panels(),
    }


def queues_overview(*, now) -> list[dict]:
    """Per queue: what the ledger says is waiting (and for how long) beside what RabbitMQ holds."""
    waiting = (
        TaskRecord.objects.filter(state__in=[TaskState.PENDING, TaskState.SENT, TaskState.RETRYING])
        .values("queue")
        .annotate(
            pending=Count("id", filter=Q(state=TaskState.PENDING)),
            sent=Count("id", filter=Q(state=TaskState.SENT)),
            retrying=Count("id", filter=Q(state=TaskState.RETRYING)),
            oldest_pending=Min("created_at", filter=Q(state=TaskState.PENDING)),
            oldest_sent=Min("sent_at", filter=Q(state=TaskState.SENT)),
        )
    )
    by_queue = {row["queue"]: row for row in waiting}
    running = dict(TaskRecord.objects.filter(state=TaskState.STARTED).values_list("queue").annotate(n=Count("id")))
    depths = queue_depths()
    rows = []
    for name in QUEUES:
        row = by_queue.get(name, {})
        oldest = min(filter(None, [row.get("oldest_pending"), row.get("oldest_sent")]), default=None)
        depth = depths.get(name)
        rows.append(
            {
                "queue": name,
                "pending": row.get("pending", 0),
                "sent": row.get("sent", 0),
                "retrying": row.get("retrying", 0),
                "started": running.get(name, 0),
                "oldest_waiting_seconds": round((now - oldest).total_seconds(), 1) if oldest else 0.0,
                "broker_ready": depth.ready if depth else None,
                "broker_unacked": depth.unacked if depth else None,
                "consumers": depth.consumers if depth else None,
            }
        )
    return rows


def task_stats(*, since) -> list[dict]:
    """Per task name, over runs finished since `since`: counts, throughput per minute, failure rate,
    and p50/p95 of queue wait and run time (seconds)."""
    minutes = max((timezone.now() - since).total_seconds() / 60, 1)
    if connection.vendor != "postgresql":
        return _task_counts(since=since, minutes=minutes)
    with connection.cursor() as cursor:
        cursor.execute(_TASK_STATS_SQL, {"since": since})
        columns = [column.name for column in cursor.description]
        rows = [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]
    for row in rows:
        row["per_minute"] = round(row["finished"] / minutes, 2)
        row["failure_rate"] = round(row["failed"] / row["finished"], 4) if row["finished"] else 0.0
        for key in ("wait_p50", "wait_p95", "run_p50", "run_p95"):
            row[key] = None if row[key] is None else round(float(row[key]), 4)
    return rows


# Queue wait: from being published (or due, if delayed) to starting, as in tasks.metrics.
_TASK_STATS_SQL = f"""
SELECT name,
       count(*) AS finished,
       count(*) FILTER (WHERE state = 'failed') AS failed,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY wait) AS wait_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY wait) AS wait_p95,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY runtime) AS run_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY runtime) AS run_p95
  FROM (SELECT name, state, runtime,
               GREATEST(EXTRACT(EPOCH FROM started_at - GREATEST(sent_at, COALESCE(eta, sent_at))), 0) AS wait
          FROM {TaskRecord._meta.db_table}
         WHERE state IN ('succeeded', 'failed') AND finished_at >= %(since)s
           AND created_at >= %(since)s - interval '7 days'  -- lets the created_at index narrow the scan
       ) AS finished_runs
 GROUP BY name
 ORDER BY count(*) DESC
"""


def _task_counts(*, since, minutes) -> list[dict]:
    """The SQLite fallback: counts and rates only (it has no percentile functions)."""
    rows = (
        TaskRecord.objects.filter(state__in=[TaskState.SUCCEEDED, TaskState.FAILED], finished_at__gte=since)
        .values("name")
        .annotate(finished=Count("id"), failed=Count("id", filter=Q(state=TaskState.FAILED)))
        .order_by("-finished")
    )
    no_percentiles = {"wait_p50": None, "wait_p95": None, "run_p50": None, "run_p95": None}
    return [
        {**row, **no_percentiles, "per_minute": round(row["finished"] / minutes, 2),
         "failure_rate": round(row["failed"] / row["finished"], 4)}
        for row in rows
    ]  # fmt: skip


def throughput_series(*, now) -> dict:
    """Finished runs per minute over the last hour and per hour over the last day, by outcome."""
    return {
        "hour": _series(since=now - WINDOWS["hour"], trunc=TruncMinute),
        "day": _series(since=now - WINDOWS["day"], trunc=TruncHour),
    }


def _series(*, since, trunc) -> list[dict]:
    rows = (
        TaskRecord.objects.filter(state__in=[TaskState.SUCCEEDED, TaskState.FAILED], finished_at__gte=since)
        .annotate(bucket=trunc("finished_at"))
        .values("bucket")
        .annotate(
            succeeded=Count("id", filter=Q(state=TaskState.SUCCEEDED)),
            failed=Count("id", filter=Q(state=TaskState.FAILED)),
        )
        .order_by("bucket")
    )
    return [{"at": row["bucket"].isoformat(), "succeeded": row["succeeded"], "failed": row["failed"]} for row in rows]


def failure_causes(*, since) -> list[dict]:
    """The most frequent (task, error type) among tasks failed since `since`, with the admin links
    that list them and retry them all."""
    rows = (
        TaskRecord.objects.filter(state=TaskState.FAILED, finished_at__gte=since)
        .values("name", "error_type")
        .annotate(count=Count("id"))
        .order_by("-count")[:TOP_FAILURE_CAUSES]
    )
    return [{**row, "example": _example_message(row)} for row in rows]


def _example_message(row) -> str:
    record = (
        TaskRecord.objects.filter(state=TaskState.FAILED, name=row["name"], error_type=row["error_type"])
        .order_by("-finished_at")
        .values_list("error_message", flat=True)
        .first()
    )
    return (record or "")[:200]


def workers_online() -> list[dict]:
    """The workers answering Celery's inspect within a second, with their queues, and how many
    tasks each is running according to the ledger."""
    try:
        stats = app.control.inspect(timeout=1.0).stats() or {}
        # Now that we know who answers, the second broadcast returns as soon as they all have.
        queues = app.control.inspect(timeout=1.0, limit=len(stats)).active_queues() or {} if stats else {}
    except Exception as exc:  # the broker is down: no worker can answer either
        log.warning("Could not inspect workers: %r", exc)
        return []
    running = dict(
        TaskRecord.objects.filter(state=TaskState.STARTED, worker__in=list(stats))
        .values_list("worker")
        .annotate(n=Count("id"))
    )
    return [
        {
            "name": name,
            "processes": info.get("pool", {}).get("max-concurrency"),
            "active": running.get(name, 0),
            "queues": sorted(queue["name"] for queue in queues.get(name, [])),
            "uptime_seconds": info.get("uptime"),
        }
        for name, info in sorted(stats.items())
    ]


def periodic_jobs(*, now) -> list[dict]:
    """Each periodic job: enabled, last run, next run, and how its last run ended in the ledger."""
    jobs = []
    for job in PeriodicTask.objects.select_related("interval", "crontab", "clocked", "solar").order_by("name"):
        last = TaskRecord.objects.filter(correlation_key=f"beat:{job.name}").order_by("-created_at").first()
        jobs.append(
            {
                "name": job.name,
                "task": job.task,
                "enabled": job.enabled,
                "last_run_at": job.last_run_at.isoformat() if job.last_run_at else None,
                "next_run_at": _next_run(job, now),
                "last_state": last.state if last else None,
                "last_record_id": str(last.id) if last else None,
            }
        )
    return jobs


def _next_run(job, now) -> str | None:
    if not job.enabled:
        return None
    try:
        remaining = job.schedule.remaining_estimate(job.last_run_at or now)
    except Exception:  # a schedule kind we cannot estimate (e.g. one-off clocked jobs already run)
        return None
    return (now + max(remaining, timedelta(0))).isoformat()


def extra_panels() -> list[dict]:
    """Tables the domain adds (settings.TASKS_DASHBOARD_PANELS, dotted paths to functions returning
    {"title", "columns", "rows"}), so the platform shows them without importing the domain."""
    panels = []
    for path in settings.TASKS_DASHBOARD_PANELS:
        try:
            panels.append(import_string(path)())
        except Exception:
            log.exception("Dashboard panel %s failed", path)
            panels.append({"title": path, "columns": [], "rows": [], "error": "This panel failed to load."})
    return panels
