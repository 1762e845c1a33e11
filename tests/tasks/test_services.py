"""The ledger's services: idempotent enqueue, the dispatcher's pass, recovery of stuck runs, purge, retry
and cancel."""

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from config.celery import app
from crowdfund.accounts.models import User
from tasks import services
from tasks.models import TaskRecord, TaskState
from tasks.services import task_enqueue
from tests import probe_tasks
from tests.tasks.broker import queue_depth, queue_take_all


def ledger_row(*, state, **fields) -> TaskRecord:
    fields = {"name": "tests.probe.create_user", "args": ["row@probe.test"], "queue": "default", **fields}
    return TaskRecord.objects.create(state=state, **fields)


def age(records, **fields):
    """Move timestamps into the past (created_at is set on insert, whatever the caller says)."""
    TaskRecord.objects.filter(id__in=[record.id for record in records]).update(**fields)


@pytest.mark.django_db
def test_it_returns_the_first_record_when_an_idempotency_key_is_given_twice():
    first = task_enqueue(probe_tasks.create_user, args=["first@probe.test"], idempotency_key="pledge:7:receipt")
    again = task_enqueue(probe_tasks.create_user, args=["again@probe.test"], idempotency_key="pledge:7:receipt")

    assert again.id == first.id
    assert again.args == ["first@probe.test"]
    # One row, so one message: the dispatcher publishes rows.
    assert TaskRecord.objects.filter(idempotency_key="pledge:7:receipt").count() == 1


@pytest.mark.django_db
def test_it_lets_any_number_of_tasks_go_without_an_idempotency_key():
    for _ in range(3):
        task_enqueue(probe_tasks.create_user, args=["same@probe.test"])

    assert TaskRecord.objects.filter(args=["same@probe.test"], idempotency_key=None).count() == 3


@pytest.mark.broker
def test_the_dispatcher_resends_a_retry_the_broker_never_took_but_not_one_merely_due(broker):
    now = timezone.now()
    lost = ledger_row(state=TaskState.RETRYING, attempts=2, max_attempts=4, eta=now - timedelta(minutes=6))
    due = ledger_row(state=TaskState.RETRYING, attempts=1, max_attempts=4, eta=now - timedelta(minutes=1))

    assert services.task_records_publish_pending() == 1

    [message] = queue_take_all()
    assert message.headers["id"] == str(lost.id)
    assert message.headers["retries"] == 2  # the worker claims it as the third attempt
    assert TaskRecord.objects.get(id=lost.id).state == TaskState.SENT
    assert TaskRecord.objects.get(id=due.id).state == TaskState.RETRYING


@pytest.mark.broker
def test_the_dispatcher_never_sends_a_cancelled_task(broker):
    record = task_enqueue(probe_tasks.create_user, args=["cancelled-pending@probe.test"])
    assert services.task_records_cancel(records=TaskRecord.objects.filter(id=record.id)) == 1

    assert services.task_records_publish_pending() == 0
    assert queue_depth() == 0


def claim(record, *, retries: int, redelivered: bool = False) -> bool:
    return services.task_record_start(
        task=probe_tasks.create_user,
        task_id=str(record.id),
        args=record.args,
        kwargs={},
        retries=retries,
        redelivered=redelivered,
        worker="w@test",
    )


@pytest.mark.django_db
def test_a_redelivered_message_reruns_a_run_cancelled_when_its_worker_lost_the_broker():
    # The worker cancelled the run and recorded `retrying`; RabbitMQ redelivers the same message.
    cancelled = ledger_row(state=TaskState.RETRYING, attempts=1, max_attempts=6)

    assert not claim(cancelled, retries=0)  # a mere duplicate of the first message
    assert claim(cancelled, retries=0, redelivered=True)
    assert TaskRecord.objects.get(id=cancelled.id).attempts == 2


@pytest.mark.django_db
def test_the_per_task_statements_are_prepared_on_djangos_connection():
    # Django turns prepared statements off unless the settings ask for them; without them every
    # claim and finish is parsed and planned again (a third of its time).
    row = ledger_row(state=TaskState.SENT, attempts=0, max_attempts=6)

    assert claim(row, retries=0)
    services.task_record_succeed(task_id=str(row.id), runtime=0.01)

    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in cursor.fetchall()]
    assert any("SET state = 'started'" in statement for statement in prepared)
    assert any("SET state = 'succeeded'" in statement for statement in prepared)


@pytest.mark.django_db
def test_a_retry_reruns_a_run_that_could_not_record_its_end_but_a_duplicate_does_not():
    # The database was down as the run failed: its row still says started, its retry was published.
    unrecorded = ledger_row(state=TaskState.STARTED, attempts=1, max_attempts=6)

    assert not claim(unrecorded, retries=0)  # the first message again: that run is this one
    assert claim(unrecorded, retries=2)
    assert not claim(unrecorded, retries=1)  # an older retry, now that the newer one runs


@pytest.mark.django_db
def test_it_fails_runs_still_started_long_after_their_time_limit():
    now = timezone.now()
    lost_for = timedelta(seconds=app.conf.task_time_limit) + timedelta(minutes=6)
    stuck = ledger_row(state=TaskState.STARTED, attempts=1, started_at=now - lost_for)
    running = ledger_row(state=TaskState.STARTED, attempts=1, started_at=now - timedelta(minutes=1))

    assert services.task_records_recover_stuck() == 1

    stuck.refresh_from_db()
    assert stuck.state == TaskState.FAILED
    assert stuck.error_type == "Lost"
    assert stuck.finished_at is not None
    assert TaskRecord.objects.get(id=running.id).state == TaskState.STARTED


@pytest.mark.django_db
def test_it_purges_old_finished_rows_in_batches_and_keeps_the_rest():
    long_ago = timezone.now() - timedelta(days=django_settings.TASKS_FINISHED_RETENTION_DAYS + 1)
    finished = [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED]
    old = TaskRecord.objects.bulk_create(
        TaskRecord(name="tests.probe.create_user", queue="default", state=finished[n % 3]) for n in range(2500)
    )
    age(old, created_at=long_ago, finished_at=long_ago)
    recent = ledger_row(state=TaskState.SUCCEEDED, finished_at=timezone.now())
    old_but_open = ledger_row(state=TaskState.PENDING)
    age([old_but_open], created_at=long_ago)

    with CaptureQueriesContext(connection) as queries:
        assert services.task_records_purge_finished() == 2500

    deletes = [query for query in queries if query["sql"].startswith("DELETE")]
    assert len(deletes) == 3  # batches of services.BATCH_SIZE, never one giant statement
    assert set(TaskRecord.objects.values_list("id", flat=True)) == {recent.id, old_but_open.id}


@pytest.mark.django_db
def test_a_retry_gives_finished_tasks_fresh_attempts_and_leaves_running_ones_alone():
    operator = User.objects.create_user(email="operator@example.org", is_staff=True)
    failed = ledger_row(state=TaskState.FAILED, attempts=4, max_attempts=4, error_type="ProbeTransientError")
    running = ledger_row(state=TaskState.STARTED, attempts=1)

    retried = services.task_records_retry(
        records=TaskRecord.objects.filter(id__in=[failed.id, running.id]), user=operator
    )

    assert retried == 1
    failed.refresh_from_db()
    assert failed.state == TaskState.PENDING
    assert failed.attempts == 0
    assert failed.manual_retries == 1
    assert failed.retried_by == operator
    assert failed.args == ["row@probe.test"]
    running.refresh_from_db()
    assert running.state == TaskState.STARTED
    assert running.manual_retries == 0


@pytest.mark.django_db
def test_a_cancel_leaves_started_and_finished_tasks_alone():
    waiting = [ledger_row(state=state) for state in (TaskState.PENDING, TaskState.SENT, TaskState.RETRYING)]
    busy = [ledger_row(state=state) for state in (TaskState.STARTED, TaskState.SUCCEEDED, TaskState.FAILED)]

    assert services.task_records_cancel(records=TaskRecord.objects.all()) == 3

    assert {TaskRecord.objects.get(id=record.id).state for record in waiting} == {TaskState.CANCELLED}
    assert [TaskRecord.objects.get(id=record.id).state for record in busy] == [record.state for record in busy]


@pytest.mark.django_db
def test_retry_and_cancel_accept_a_queryset_joined_to_the_operators():
    # The admin's changelist queryset joins retried_by and cancelled_by (nullable, outer joins).
    joined = TaskRecord.objects.select_related("retried_by", "cancelled_by")
    failed = ledger_row(state=TaskState.FAILED)
    waiting = ledger_row(state=TaskState.SENT)

    assert services.task_records_retry(records=joined.filter(id=failed.id)) == 1
    assert services.task_records_cancel(records=joined.filter(id=waiting.id)) == 1


@pytest.mark.broker
def test_a_task_due_later_than_the_broker_may_hold_it_waits_in_the_ledger_for_the_dispatcher(broker):
    record = task_enqueue(probe_tasks.create_user, args=["later@probe.test"], countdown=20 * 60)

    assert services.task_records_publish_pending() == 0
    assert queue_depth() == 0
    assert TaskRecord.objects.get(id=record.id).state == TaskState.PENDING

    age([record], eta=timezone.now() + timedelta(minutes=5))  # time passes; now it is near
    assert services.task_records_publish_pending() == 1
    [message] = queue_take_all()
    assert message.headers["id"] == str(record.id)
    assert message.headers["eta"] is not None


@pytest.mark.broker
def test_a_row_that_cannot_be_published_is_failed_and_does_not_hold_up_the_rows_behind_it(broker):
    # Its queue is not declared anywhere (a typo, or a queue removed since): Celery refuses the message.
    poison = ledger_row(state=TaskState.PENDING, queue="no-such-queue")
    behind = task_enqueue(probe_tasks.create_user, args=["behind-poison@probe.test"])
    age([poison], created_at=timezone.now() - timedelta(seconds=60))  # first in line

    assert services.task_records_publish_pending() == 1

    [message] = queue_take_all()
    assert message.headers["id"] == str(behind.id)
    poison.refresh_from_db()
    assert poison.state == TaskState.FAILED
    assert poison.error_message.startswith("Could not be published:")
    assert "no-such-queue" in poison.error_message
    assert services._publish_paused_until == 0.0  # the broker itself is fine: no pause


@pytest.mark.broker
def test_a_broker_failure_in_the_middle_of_a_batch_leaves_every_row_pending_for_a_later_pass(broker, monkeypatch):
    records = [task_enqueue(probe_tasks.create_user, args=[f"mid-batch{n}@probe.test"]) for n in range(3)]
    publish = app.send_task
    calls = []

    def connection_lost_after_the_first(*args, **kwargs):
        # What Celery raises when the connection drops under a publish (it wraps the socket error).
        calls.append(args[0])
        if len(calls) > 1:
            raise KombuOperationalError("[Errno 104] Connection reset by peer")
        return publish(*args, **kwargs)

    monkeypatch.setattr(app, "send_task", connection_lost_after_the_first)
    assert services.task_records_publish_pending() == 0

    assert {TaskRecord.objects.get(id=record.id).state for record in records} == {TaskState.PENDING}
    assert services.publish_pause_remaining() > 0
    monkeypatch.setattr(app, "send_task", publish)
    services._publish_paused_until = 0.0
    assert services.task_records_publish_pending() == 3
    # The first message reached the queue before the connection dropped: it is there twice, and
    # the worker's claim runs it once.
    assert sorted(message.headers["id"] for message in queue_take_all()) == sorted(
        [str(records[0].id), *(str(record.id) for record in records)]
    )
