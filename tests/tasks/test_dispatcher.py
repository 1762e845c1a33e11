"""The dispatcher (tasks.dispatcher, `manage.py run_dispatcher`) against the real PostgreSQL and
RabbitMQ: a commit wakes it through the ledger trigger's notification (not its poll), two of them
publish each row once, it outlives its database connections and it stops at once on SIGTERM.
(That nothing uncommitted or rolled back is published is tested in test_enqueue.py.)"""

import re
import signal
import threading
import time
import uuid
from datetime import timedelta

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from tasks import services
from tasks.models import TaskRecord, TaskState
from tasks.services import task_enqueue, task_enqueue_many, task_records_retry
from tests import probe_tasks, workers
from tests.tasks.broker import queue_depth, queue_take_all
from tests.workers import Dispatcher, wait_for

QUEUE = services.queue_for(probe_tasks.create_user.name)
# Every test dispatcher but one polls this rarely: what it publishes within a few seconds, it
# published because a notification woke it.
NO_POLL = 60
# How soon a notified dispatcher must have published (the poll would take NO_POLL seconds).
PROMPTLY = 5
# What a dispatcher logs as it stops.
PUBLISHED = re.compile(r"Published (\d+) tasks")


class RunDispatcher(Dispatcher):
    """A dispatcher subprocess whose database connections carry an application_name of their own
    (libpq reads PGAPPNAME), so the test can find and cut them."""

    def __init__(self, *, poll: float):
        self.application_name = f"test-dispatcher-{uuid.uuid4().hex[:8]}"
        super().__init__(name=self.application_name, env={"PGAPPNAME": self.application_name}, poll=poll)

    def wait_started(self) -> "RunDispatcher":
        def started():
            if self.process.poll() is not None:
                raise RuntimeError(f"the dispatcher exited early:\n{self.log()}")
            return "Dispatcher started" in self.log()

        wait_for(started, timeout=30, message=f"{self.name} to start")
        return self

    def backend_pids(self, *, listening_only: bool = False) -> list[int]:
        sql = "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()"
        if listening_only:
            sql += " AND query ILIKE 'LISTEN%%'"
        with connection.cursor() as cursor:
            cursor.execute(sql, [self.application_name])
            return [pid for (pid,) in cursor.fetchall()]


@pytest.fixture
def start_dispatcher(broker):
    """Start real dispatcher processes (`start_dispatcher(poll=60)`), started and past their first
    pass; all are stopped afterwards, before the test database is emptied."""
    started = []

    def start(*, poll: float = NO_POLL, warm_up: bool = True) -> RunDispatcher:
        dispatcher = RunDispatcher(poll=poll)
        started.append(dispatcher)
        dispatcher.wait_started()
        if warm_up:
            wait_until_listening_and_idle()
        return dispatcher

    yield start
    for dispatcher in started:
        dispatcher.stop()


def wait_until_listening_and_idle() -> None:
    """A task enqueued now could still be published by the dispatchers' first pass, whatever the
    notifications do: one task is sent and taken first, so they are past it and waiting."""
    warm_up = enqueue_committed(email="warm-up@probe.test")
    wait_for(lambda: state_of(warm_up) == TaskState.SENT, timeout=15, message="the warm-up task to be sent")
    [message] = queue_take_all(QUEUE)  # confirmed by RabbitMQ before its row was marked sent
    assert message.headers["id"] == str(warm_up.id)
    time.sleep(0.3)  # a notification of the warm-up's that arrived after the pass sending it


def enqueue_committed(*, email: str) -> TaskRecord:
    with transaction.atomic():
        return task_enqueue(probe_tasks.create_user, args=[email])


def state_of(record) -> str:
    return TaskRecord.objects.get(id=record.id).state


def ledger_row(*, state, **fields) -> TaskRecord:
    fields = {"name": probe_tasks.create_user.name, "args": ["row@probe.test"], "queue": QUEUE, **fields}
    return TaskRecord.objects.create(state=state, **fields)


def terminate_backends(pids: list[int]) -> None:
    with connection.cursor() as cursor:
        for pid in pids:
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


# --- Woken by the notification -------------------------------------------------------------------


@pytest.mark.broker
def test_it_publishes_a_committed_task_within_seconds_because_the_commit_notifies_it_not_its_poll(
    start_dispatcher,
):
    start_dispatcher(poll=NO_POLL)

    committed_at = time.monotonic()
    record = enqueue_committed(email="notified@probe.test")

    wait_for(lambda: state_of(record) == TaskState.SENT, timeout=PROMPTLY, message="the row to be sent")
    assert time.monotonic() - committed_at < PROMPTLY  # its poll would have waited NO_POLL seconds
    [message] = queue_take_all(QUEUE)
    assert message.headers["id"] == str(record.id)
    assert message.headers["task"] == probe_tasks.create_user.name


@pytest.mark.broker
def test_it_publishes_a_task_an_operator_retried_as_soon_as_the_retry_commits(start_dispatcher):
    # The trigger fires on a row becoming `pending` again (UPDATE OF state), not only on inserts.
    failed = ledger_row(state=TaskState.FAILED, attempts=1, max_attempts=1, finished_at=timezone.now())
    start_dispatcher(poll=NO_POLL)

    assert task_records_retry(records=TaskRecord.objects.filter(id=failed.id)) == 1

    wait_for(lambda: state_of(failed) == TaskState.SENT, timeout=PROMPTLY, message="the retried row to be sent")
    [message] = queue_take_all(QUEUE)
    assert message.headers["id"] == str(failed.id)
    assert message.headers["retries"] == 0  # a fresh set of attempts


# --- Several dispatchers ---------------------------------------------------------------------------


@pytest.mark.broker
def test_two_dispatchers_publish_each_row_of_a_large_fan_out_exactly_once(start_dispatcher):
    dispatchers = [start_dispatcher(poll=NO_POLL, warm_up=False) for _ in range(2)]
    wait_until_listening_and_idle()

    with transaction.atomic():
        task_enqueue_many(probe_tasks.create_user, kwargs_list=[{"email": f"fan{n}@probe.test"} for n in range(2000)])
    ids = {str(pk) for pk in TaskRecord.objects.filter(kwargs__email__startswith="fan").values_list("id", flat=True)}
    assert len(ids) == 2000

    wait_for(
        lambda: TaskRecord.objects.filter(state=TaskState.SENT, id__in=ids).count() == 2000,
        timeout=30,
        message="all 2000 rows to be sent",
    )
    for dispatcher in dispatchers:  # anything either of them was still sending is in the queue now
        dispatcher.stop()
    published = [message.headers["id"] for message in queue_take_all(QUEUE)]
    assert len(published) == 2000  # no duplicate
    assert set(published) == ids
    assert not TaskRecord.objects.filter(state=TaskState.PENDING).exists()
    # Each counts what it published ("Published N tasks" when it stops): together, each row once.
    counts = [int(count) for dispatcher in dispatchers for count in PUBLISHED.findall(dispatcher.log())]
    assert sum(counts) == 2000 + 1  # and the warm-up task


# --- Failures and stopping -------------------------------------------------------------------------


@pytest.mark.broker
def test_it_survives_its_database_connections_being_terminated_and_listens_again(start_dispatcher):
    dispatcher = start_dispatcher(poll=NO_POLL)
    pids = dispatcher.backend_pids()
    assert len(pids) == 2  # the publishing connection and the listening one
    assert len(dispatcher.backend_pids(listening_only=True)) == 1

    terminate_backends(pids)
    wait_for(lambda: "The database is unreachable" in dispatcher.log(), timeout=10, message="the warning")
    record = enqueue_committed(email="after-terminate@probe.test")

    wait_for(lambda: state_of(record) == TaskState.SENT, timeout=15, message="the row after reconnecting")
    [message] = queue_take_all(QUEUE)
    assert message.headers["id"] == str(record.id)
    # Its new listening connection is notified as the first one was: a row committed now is
    # published within seconds, not at its next poll.
    wait_for(lambda: dispatcher.backend_pids(listening_only=True), timeout=10, message="listening again")
    assert not set(dispatcher.backend_pids()) & set(pids)
    time.sleep(0.3)  # past the pass that follows the reconnection
    again = enqueue_committed(email="notified-again@probe.test")
    wait_for(lambda: state_of(again) == TaskState.SENT, timeout=PROMPTLY, message="the next row, notified")
    [message] = queue_take_all(QUEUE)
    assert message.headers["id"] == str(again.id)
    assert dispatcher.process.poll() is None


@pytest.mark.broker
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_it_stops_at_once_on_a_stop_signal_not_at_its_next_poll(start_dispatcher, signum):
    dispatcher = start_dispatcher(poll=NO_POLL)

    signalled_at = time.monotonic()
    dispatcher.process.send_signal(signum)
    returncode = dispatcher.process.wait(timeout=15)

    assert time.monotonic() - signalled_at < PROMPTLY
    assert returncode == 0
    assert "Dispatcher stopped" in dispatcher.log()
    assert "Traceback" not in dispatcher.log()
    wait_for(lambda: not dispatcher.backend_pids(), timeout=5, message="its connections closed")


@pytest.mark.broker
def test_it_publishes_a_row_coming_due_at_its_next_poll_without_any_notification(start_dispatcher):
    # Due later than the broker may hold it: the dispatcher leaves it in the ledger.
    record = task_enqueue(probe_tasks.create_user, args=["due-later@probe.test"], countdown=20 * 60)
    start_dispatcher(poll=1)
    time.sleep(1.5)
    assert state_of(record) == TaskState.PENDING
    assert queue_depth(QUEUE) == 0

    # Time passes (its eta changes; its state does not, so nothing notifies): the poll sends it.
    TaskRecord.objects.filter(id=record.id).update(eta=timezone.now() + timedelta(minutes=5))
    wait_for(lambda: state_of(record) == TaskState.SENT, timeout=PROMPTLY, message="the row at the next poll")
    [message] = queue_take_all(QUEUE)
    assert message.headers["id"] == str(record.id)
    assert message.headers["eta"] is not None  # RabbitMQ's side holds the remaining delay


# --- The pass itself, in this process ---------------------------------------------------------------


def age(records, *, seconds_ago: float) -> None:
    TaskRecord.objects.filter(id__in=[r.id for r in records]).update(
        created_at=timezone.now() - timedelta(seconds=seconds_ago)
    )


@pytest.mark.broker
def test_a_pass_told_to_stop_ends_after_its_batch_and_rows_it_must_not_send_take_no_place_in_a_batch(broker):
    # keep_going() is how a stopping dispatcher (SIGTERM) ends its pass: after the batch in hand.
    # The oldest rows are ones it must never send, so a filter applied after the batch is cut
    # would show: a row due beyond MAX_BROKER_DELAY, and a cancelled one.
    beyond = ledger_row(state=TaskState.PENDING, eta=timezone.now() + services.MAX_BROKER_DELAY + timedelta(minutes=1))
    cancelled = ledger_row(state=TaskState.CANCELLED)
    age([beyond, cancelled], seconds_ago=3600)
    batch = services.DISPATCH_BATCH_SIZE
    due = [ledger_row(state=TaskState.PENDING, args=[f"due{n}@probe.test"]) for n in range(batch * 2 + 50)]
    for n, record in enumerate(due):  # created one second apart, in this order
        age([record], seconds_ago=len(due) - n)

    assert services.task_records_publish_pending(keep_going=lambda: False) == batch
    first = [message.headers["id"] for message in queue_take_all(QUEUE)]
    assert first == [str(record.id) for record in due[:batch]]
    assert TaskRecord.objects.filter(state=TaskState.PENDING).count() == len(due) - batch + 1

    assert services.task_records_publish_pending() == len(due) - batch
    rest = [message.headers["id"] for message in queue_take_all(QUEUE)]
    assert rest == [str(record.id) for record in due[batch:]]
    assert state_of(beyond) == TaskState.PENDING
    assert state_of(cancelled) == TaskState.CANCELLED
    assert services.task_records_publish_pending() == 0


@pytest.mark.broker
def test_a_pass_skips_rows_another_dispatcher_has_locked_instead_of_waiting_for_them(broker):
    locked = [ledger_row(state=TaskState.PENDING, args=[f"locked{n}@probe.test"]) for n in range(3)]
    free = [ledger_row(state=TaskState.PENDING, args=[f"free{n}@probe.test"]) for n in range(5)]

    # Another dispatcher's pass, in the middle of its batch: its rows are locked until it commits.
    other = psycopg.connect(workers.test_database_url())
    other.execute(
        "SELECT id FROM tasks_taskrecord WHERE id = ANY(%s) FOR UPDATE", [[record.id for record in locked]]
    ).fetchall()
    # Should the pass wait for the locks after all, they are released later instead of never.
    safety = threading.Timer(15, other.rollback)
    safety.start()
    try:
        started = time.monotonic()
        assert services.task_records_publish_pending() == len(free)
        assert time.monotonic() - started < PROMPTLY
        assert {message.headers["id"] for message in queue_take_all(QUEUE)} == {str(r.id) for r in free}
        assert {state_of(record) for record in locked} == {TaskState.PENDING}
    finally:
        safety.cancel()
        other.rollback()
        other.close()

    assert services.task_records_publish_pending() == len(locked)
    assert {message.headers["id"] for message in queue_take_all(QUEUE)} == {str(r.id) for r in locked}


@pytest.mark.broker
def test_it_ignores_a_notification_that_names_no_task_and_goes_on(start_dispatcher):
    dispatcher = start_dispatcher(poll=NO_POLL)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify('tasks_pending', 'not a task id')")

    record = enqueue_committed(email="after-garbage@probe.test")

    wait_for(lambda: state_of(record) == TaskState.SENT, timeout=PROMPTLY, message="the next row, notified")
    assert "Ignored a 'tasks_pending' notification that names no task: 'not a task id'" in dispatcher.log()
    assert dispatcher.process.poll() is None
