"""Prometheus metrics of the task platform.

Workers observe queue wait, run time and outcomes per task name; web and worker processes of one
host share samples through prometheus_client's multiprocess mode (settings.PROMETHEUS_MULTIPROC_DIR).
The backlog (rows by state, age of the oldest waiting row) is read from the ledger at scrape time,
so it is right whichever host asks.
"""

import glob
import os
import socket

from django.db.models import Count, Min
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess, values
from prometheus_client.core import GaugeMetricFamily

from tasks.models import OPEN_STATES, TaskRecord, TaskState
from tasks.rabbitmq import queue_depths

# Containers sharing one metrics folder can have the same pids; the host name keeps files apart.
values.ValueClass = values.MultiProcessValue(process_identifier=lambda: f"{socket.gethostname()}_{os.getpid()}")

# Buckets from a few milliseconds to the 25-minute hard time limit.
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1500)

QUEUE_WAIT = Histogram(
    "tasks_queue_wait_seconds",
    "Time from being published (or due, for delayed tasks) to starting.",
    ["task", "queue"],
    buckets=SECONDS_BUCKETS,
)
RUN_TIME = Histogram("tasks_run_seconds", "Time a task's run took.", ["task", "queue"], buckets=SECONDS_BUCKETS)
OUTCOMES = Counter(
    "tasks_outcomes_total",
    "Finished runs by outcome: succeeded, failed, retried, skipped (cancelled or duplicate delivery).",
    ["task", "queue", "outcome"],
)


class LedgerCollector:
    """The backlog by state and the age of the oldest pending and sent rows, from the ledger, and
    the depth of each RabbitMQ queue (Flower's metrics do not have it)."""

    def collect(self):
        yield from self._ledger()
        yield from self._broker()
        yield self._periodic_jobs()

    def _periodic_jobs(self):
        """Seconds since each enabled periodic job last ran: the beat heartbeat to alert on."""
        age = GaugeMetricFamily(
            "tasks_periodic_job_last_run_age_seconds", "Seconds since beat last sent each enabled job.", labels=["job"]
        )
        now = timezone.now()
        for name, last_run_at in PeriodicTask.objects.filter(enabled=True).values_list("name", "last_run_at"):
            if last_run_at is not None:
                age.add_metric([name], (now - last_run_at).total_seconds())
        return age

    def _broker(self):
        messages = GaugeMetricFamily(
            "tasks_broker_queue_messages",
            "Messages in each RabbitMQ queue, ready or unacknowledged.",
            labels=["queue", "state"],
        )
        consumers = GaugeMetricFamily(
            "tasks_broker_queue_consumers", "Consumers of each RabbitMQ queue.", labels=["queue"]
        )
        for depth in queue_depths().values():
            messages.add_metric([depth.queue, "ready"], depth.ready)
            if depth.unacked is not None:
                messages.add_metric([depth.queue, "unacked"], depth.unacked)
            consumers.add_metric([depth.queue], depth.consumers)
        yield messages
        yield consumers

    def _ledger(self):
        backlog = GaugeMetricFamily("tasks_backlog", "Task records not yet finished, by state.", labels=["state"])
        counts = dict(
            TaskRecord.objects.filter(state__in=OPEN_STATES)
            .values_list("state")
            .annotate(n=Count("id"))
            .values_list("state", "n")
        )
        for state in OPEN_STATES:
            backlog.add_metric([state], counts.get(state, 0))
        yield backlog

        oldest = GaugeMetricFamily(
            "tasks_oldest_waiting_age_seconds",
            "Age of the oldest pending (unpublished) and sent (queued) task record; 0 when none.",
            labels=["state"],
        )
        now = timezone.now()
        for state, field in ((TaskState.PENDING, "created_at"), (TaskState.SENT, "sent_at")):
            moment = TaskRecord.objects.filter(state=state).aggregate(oldest=Min(field))["oldest"]
            oldest.add_metric([state], (now - moment).total_seconds() if moment else 0.0)
        yield oldest


class SampleFilesCollector(multiprocess.MultiProcessCollector):
    """prometheus_client's multiprocess collector, minus the sample files a process is creating at
    this very moment (still empty: reading one raised, so a worker starting during a scrape made
    /metrics fail). Such a file holds no samples yet; the next scrape reads it."""

    def collect(self):
        files = [path for path in glob.glob(os.path.join(self._path, "*.db")) if os.path.getsize(path) > 0]
        return self.merge(files, accumulate=True)


def metrics_text() -> bytes:
    registry = CollectorRegistry()
    SampleFilesCollector(registry)
    registry.register(LedgerCollector())
    return generate_latest(registry)
