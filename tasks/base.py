"""The base class of every task on the platform: it keeps the task's ledger row up to date."""

import logging
import random
import time
import traceback as tb
from datetime import datetime, timedelta

from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import Task
from celery.exceptions import Ignore, Reject, Retry
from celery.signals import task_failure, worker_process_init, worker_process_shutdown
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from tasks import metrics, services

log = logging.getLogger(__name__)


class PlatformTask(Task):
    """A Celery task whose every run is recorded in the task ledger (tasks.models.TaskRecord).

    Before running, the worker claims the run in the ledger: a cancelled task, a finished one or a
    duplicate delivery does not run. Exceptions listed in `transient_errors` (and database
    connection errors) are retried with exponential backoff and jitter, at most `max_retries`
    times; then the record is `failed` with its traceback, for an admin to retry. Enqueue through
    `tasks.services.task_enqueue`, never `.delay()`, so the record is written in your transaction.
    """

    abstract = True
    max_retries = 5
    # How long after its worker process died a task is tried again (task_retry_on_worker_lost).
    default_retry_delay = 5
    transient_errors: tuple[type[BaseException], ...] = ()
    # Backoff: about base * 2**retries seconds (half of it random), capped.
    retry_backoff_base = 2.0
    retry_backoff_max = 600.0

    def __call__(self, *args, **kwargs):
        request = self.request
        if request.called_directly or request.is_eager:
            return self.run(*args, **kwargs)
        queue = (request.delivery_info or {}).get("routing_key") or ""
        if not self._claim_run(args, kwargs):
            metrics.OUTCOMES.labels(self.name, queue, "skipped").inc()
            raise Ignore()
        self._observe_queue_wait(queue)
        started = time.monotonic()
        try:
            result = self.run(*args, **kwargs)
        except (Retry, Ignore, Reject):
            raise  # the task steers Celery itself (e.g. called self.retry(); on_retry records it)
        except Exception as exc:
            runtime = time.monotonic() - started
            metrics.RUN_TIME.labels(self.name, queue).observe(runtime)
            if self._is_transient(exc) and request.retries < self.max_retries:
                metrics.OUTCOMES.labels(self.name, queue, "retried").inc()
                self._retry_later(exc, runtime=runtime)
            metrics.OUTCOMES.labels(self.name, queue, "failed").inc()
            self._record_failure(exc, runtime=runtime)
            raise
        runtime = time.monotonic() - started
        services.task_record_succeed(task_id=request.id, runtime=runtime)
        metrics.RUN_TIME.labels(self.name, queue).observe(runtime)
        metrics.OUTCOMES.labels(self.name, queue, "succeeded").inc()
        return result

    def _observe_queue_wait(self, queue: str) -> None:
        published_at = getattr(self.request, "published_at", None)
        if published_at is None:
            return  # published outside the platform
        due = published_at
        if self.request.eta:
            due = max(due, datetime.fromisoformat(self.request.eta).timestamp())
        metrics.QUEUE_WAIT.labels(self.name, queue).observe(max(time.time() - due, 0.0))

    def _claim_run(self, args, kwargs) -> bool:
        request = self.request
        try:
            return services.task_record_start(
                task=self,
                task_id=request.id,
                args=args,
                kwargs=kwargs,
                retries=request.retries,
                redelivered=bool((request.delivery_info or {}).get("redelivered")),
                worker=request.hostname or "",
            )
        except DatabaseError as exc:
            # The ledger is unreachable, so it cannot say whether this may run: try again later.
            close_old_connections()
            self._retry_later(exc, record=False)

    def _is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, (DatabaseError, *self.transient_errors))

    def backoff(self, retries: int) -> float:
        ceiling = min(self.retry_backoff_max, self.retry_backoff_base * 2**retries)
        # At least a second: quorum queues' delayed delivery refuses shorter delays (services.MIN_BROKER_DELAY).
        return max(1.0, ceiling / 2 + random.uniform(0, ceiling / 2))

    def _retry_later(self, exc: BaseException, *, runtime: float | None = None, record: bool = True):
        """Record `retrying`, then publish the retry. If the broker refuses the retry, the row
        already says `retrying` with its due time, so the dispatcher republishes it: nothing is lost."""
        if isinstance(exc, DatabaseError):
            close_old_connections()
        countdown = self.backoff(self.request.retries)
        self.request.ledger_written = True
        if record:
            self._write_outcome(
                services.task_record_retrying,
                eta=timezone.now() + timedelta(seconds=countdown),
                runtime=runtime,
                **_error_fields(exc),
            )
        try:
            raise self.retry(exc=exc, countdown=countdown)
        except Reject:
            log.warning("Retry of %s[%s] not published; the dispatcher will send it", self.name, self.request.id)
            raise Ignore() from exc

    def _record_failure(self, exc: BaseException, *, runtime: float) -> None:
        self._write_outcome(services.task_record_fail, runtime=runtime, **_error_fields(exc))

    def _write_outcome(self, write, **fields) -> None:
        self._write_outcome_for(self.request.id, write, **fields)

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        # Runs in the worker's main process when a child died mid-task (Celery retries it, see
        # task_retry_on_worker_lost), and in the child after the task called self.retry() itself.
        if getattr(self.request, "ledger_written", False):
            return
        eta = timezone.now() + timedelta(seconds=self.default_retry_delay or 0)
        self._write_outcome_for(task_id, services.task_record_retrying, eta=eta, **_error_fields(exc, einfo))

    def _write_outcome_for(self, task_id, write, **fields) -> None:
        """Record an outcome; if the database is down, log it rather than lose the run's result
        to a second error (the dispatcher and stuck-run recovery reconcile the row later)."""
        try:
            write(task_id=task_id, **fields)
        except DatabaseError:
            close_old_connections()
            log.exception("Could not record the outcome of %s[%s]", self.name, task_id)


def _error_fields(exc: BaseException, einfo=None) -> dict:
    trace = str(einfo.traceback) if einfo is not None else "".join(tb.format_exception(exc))
    return {"error_type": type(exc).__name__, "error_message": str(exc)[:2000], "traceback": trace}


@task_failure.connect
def record_failure_seen_by_the_main_process(sender=None, task_id=None, exception=None, einfo=None, **kwargs):
    """A child killed by its hard time limit, or lost once too often, cannot record its own end:
    the worker's main process does it here."""
    if isinstance(sender, PlatformTask) and isinstance(exception, (WorkerLostError, TimeLimitExceeded)):
        sender._write_outcome_for(task_id, services.task_record_fail, **_error_fields(exception, einfo))


@worker_process_init.connect
def open_the_worker_ledger_connection(**kwargs):
    """Prefork worker processes claim runs and record successes on a connection of their own
    (services.WorkerLedgerConnection)."""
    services.worker_ledger.start()


@worker_process_shutdown.connect
def close_the_worker_ledger_connection(**kwargs):
    services.worker_ledger.stop()
