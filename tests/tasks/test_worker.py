"""Real worker processes: redelivery after a worker process dies, transient retries with backoff,
cancelled and duplicate messages skipped, non-JSON messages refused."""

import contextlib
import os
import signal
import socket
from itertools import pairwise

import pytest

from config.celery import app
from config.queues import DEFAULT
from crowdfund.accounts.models import User
from tasks import services
from tasks.models import TaskRecord, TaskState
from tasks.services import task_enqueue, task_records_cancel
from tests import probe_tasks
from tests.tasks.broker import queue_depth
from tests.workers import wait_for


def record_of(record) -> TaskRecord:
    return TaskRecord.objects.get(id=record.id)


def wait_until_started(record, *, attempt: int) -> None:
    wait_for(
        lambda: (current := record_of(record)).state == TaskState.STARTED and current.attempts == attempt,
        message=f"attempt {attempt} to start",
    )


def kill_its_process(worker) -> None:
    """SIGKILL the one pool process of a concurrency=1 worker, mid-task."""
    [child] = worker.child_pids()
    os.kill(child, signal.SIGKILL)


@pytest.mark.broker
def test_it_runs_a_task_again_after_its_worker_process_was_killed_and_records_both_attempts(start_worker):
    worker = start_worker(concurrency=1)
    record = task_enqueue(probe_tasks.slow_on_first_runs, args=["killed-once@probe.test", 1])
    wait_until_started(record, attempt=1)

    kill_its_process(worker)

    wait_for(lambda: record_of(record).state == TaskState.SUCCEEDED, timeout=40, message="the second run")
    record.refresh_from_db()
    assert record.attempts == 2
    assert record.error_type == "WorkerLostError"  # what the first attempt ended with
    assert User.objects.filter(email="killed-once@probe.test").count() == 1


@pytest.mark.broker
def test_it_fails_a_task_whose_worker_process_is_killed_on_every_attempt_once_out_of_retries(start_worker):
    worker = start_worker(concurrency=1)
    record = task_enqueue(probe_tasks.slow_on_first_runs, args=["killed-always@probe.test", 2])
    assert record.max_attempts == 2
    wait_until_started(record, attempt=1)
    kill_its_process(worker)
    wait_until_started(record, attempt=2)

    kill_its_process(worker)

    wait_for(lambda: record_of(record).state == TaskState.FAILED, timeout=30, message="failed")
    record.refresh_from_db()
    assert record.attempts == 2
    assert record.error_type == "WorkerLostError"
    assert record.finished_at is not None
    assert not User.objects.filter(email="killed-always@probe.test").exists()
    assert queue_depth() == 0  # not redelivered forever


@pytest.mark.broker
def test_it_retries_a_transient_error_with_growing_delays_then_fails_with_its_traceback(start_worker):
    start_worker()
    record = task_enqueue(probe_tasks.transient_until_allowed, args=["backoff"])

    wait_for(lambda: record_of(record).state == TaskState.FAILED, timeout=60, message="failed")
    record.refresh_from_db()
    assert record.attempts == record.max_attempts == 4
    assert record.error_type == "ProbeTransientError"
    assert record.error_message == "backoff is not allowed yet"
    assert record.traceback.startswith("Traceback")
    assert "ProbeTransientError: backoff is not allowed yet" in record.traceback
    runs = list(
        User.objects.filter(email__startswith="run-", email__endswith="-backoff@probe.test")
        .order_by("date_joined")
        .values_list("date_joined", flat=True)
    )
    assert len(runs) == 4
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(runs)]
    # The n-th retry waits base * 2**n seconds, its upper half random (base 1 s): [0.5, 1], [1, 2], [2, 4];
    # the margin above covers the worker's own overhead.
    for retries, gap in enumerate(gaps):
        ceiling = 2**retries
        assert ceiling / 2 - 0.05 <= gap <= ceiling + 2, gaps
    assert gaps[2] > gaps[0]


@pytest.mark.broker
def test_it_never_runs_a_task_cancelled_while_it_waited_in_the_queue(start_worker):
    record = task_enqueue(probe_tasks.create_user, args=["cancelled@probe.test"])
    assert services.task_records_publish_pending() == 1  # the dispatcher's pass, in this process
    assert queue_depth() == 1
    assert task_records_cancel(records=TaskRecord.objects.filter(id=record.id)) == 1
    behind = task_enqueue(probe_tasks.create_user, args=["behind-cancelled@probe.test"])

    # Started after the cancel, this worker never heard the revoke broadcast: only the ledger
    # can stop the run. One process, one message at a time: the cancelled one is handled first.
    worker = start_worker(concurrency=1)

    wait_for(lambda: record_of(behind).state == TaskState.SUCCEEDED, message="the task behind it")
    record.refresh_from_db()
    assert record.state == TaskState.CANCELLED
    assert record.attempts == 0
    assert record.started_at is None
    assert not User.objects.filter(email="cancelled@probe.test").exists()
    assert f"Skipping tests.probe.create_user[{record.id}]: its record is cancelled" in worker.log()
    assert queue_depth() == 0


@pytest.mark.broker
def test_it_runs_a_task_delivered_twice_only_once(start_worker):
    record = task_enqueue(probe_tasks.create_user, args=["twice@probe.test"])
    assert services.task_records_publish_pending() == 1
    # Published again, as when a dispatcher dies after publishing but before recording it.
    TaskRecord.objects.filter(id=record.id).update(state=TaskState.PENDING)
    assert services.task_records_publish_pending() == 1
    wait_for(lambda: queue_depth() == 2, message="two copies in the queue")

    worker = start_worker(concurrency=2)  # both copies may run at the same moment

    wait_for(lambda: record_of(record).state == TaskState.SUCCEEDED, message="succeeded")
    wait_for(lambda: f"Skipping tests.probe.create_user[{record.id}]" in worker.log(), message="the copy skipped")
    assert record_of(record).attempts == 1
    assert User.objects.filter(email="twice@probe.test").count() == 1
    assert queue_depth() == 0


@pytest.mark.broker
def test_it_refuses_to_run_a_message_that_is_not_json(start_worker):
    app.send_task("tests.probe.create_user", args=["pickled@probe.test"], serializer="pickle", queue=DEFAULT)
    wait_for(lambda: queue_depth() == 1, message="the pickled message in the queue")
    behind = task_enqueue(probe_tasks.create_user, args=["behind-pickled@probe.test"])

    worker = start_worker(concurrency=1)

    wait_for(lambda: record_of(behind).state == TaskState.SUCCEEDED, message="the task behind it")
    assert "ContentDisallowed" in worker.log()
    assert not User.objects.filter(email="pickled@probe.test").exists()
    assert queue_depth() == 0


@pytest.mark.broker
def test_it_runs_a_task_again_on_another_worker_when_its_whole_worker_dies(start_worker):
    doomed = start_worker(concurrency=1)
    record = task_enqueue(probe_tasks.sleep_then_create_user, args=["orphaned@probe.test", 3])
    wait_until_started(record, attempt=1)

    doomed.kill()  # unacknowledged, the message goes back to the queue, marked redelivered
    start_worker(concurrency=1)

    wait_for(lambda: record_of(record).state == TaskState.SUCCEEDED, timeout=40, message="the redelivered run")
    record.refresh_from_db()
    assert record.attempts == 2
    assert record.worker != doomed.hostname
    assert User.objects.filter(email="orphaned@probe.test").count() == 1


@pytest.mark.broker
def test_it_records_a_task_sent_outside_the_platform_when_it_runs(start_worker):
    start_worker()

    result = probe_tasks.create_user.delay("plain-delay@probe.test")

    wait_for(lambda: TaskRecord.objects.filter(id=result.id, state=TaskState.SUCCEEDED).exists(), message="recorded")
    record = TaskRecord.objects.get(id=result.id)
    assert record.name == "tests.probe.create_user"
    assert record.args == ["plain-delay@probe.test"]
    assert record.attempts == 1
    assert User.objects.filter(email="plain-delay@probe.test").exists()


@pytest.mark.broker
def test_its_task_events_reach_a_monitor_as_flower_reads_them(start_worker):
    """The worker publishes its events without waiting for confirms (tasks.consumer); Flower
    still gets every one of a run's."""
    seen = []
    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(connection, handlers={"*": seen.append})
        # Its queue exists from here on, so no event of the run is missed.
        with receiver.consumer_context(wakeup=False) as (consuming, _channel, _consumers):
            start_worker()
            record = task_enqueue(probe_tasks.create_user, args=["watched@probe.test"])
            wait_for(lambda: record_of(record).state == TaskState.SUCCEEDED, message="the run")
            kinds = set()
            for _ in range(40):
                with contextlib.suppress(socket.timeout):
                    consuming.drain_events(timeout=0.25)
                kinds = {event["type"] for event in seen if event.get("uuid") == str(record.id)}
                if "task-succeeded" in kinds:
                    break
    assert {"task-received", "task-started", "task-succeeded"} <= kinds
