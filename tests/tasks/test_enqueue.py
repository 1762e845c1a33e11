"""Enqueueing against the real RabbitMQ, published by a real dispatcher process: nothing is
published before the enqueuing transaction commits or for one that rolled back, and nothing
committed is lost when the broker is down."""

import json
import threading
import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from crowdfund.accounts.models import User
from tasks import services
from tasks.models import TaskRecord, TaskState
from tasks.services import task_enqueue, task_enqueue_if_inserted, task_enqueue_many
from tests import probe_tasks
from tests.tasks.broker import broker_refusing_publishes, queue_depth, queue_take_all
from tests.workers import wait_for


def _enqueue_and_commit(email: str) -> None:
    """Enqueue on this thread's own database connection, committed at once."""
    try:
        task_enqueue(probe_tasks.create_user, args=[email])
    finally:
        connection.close()


@pytest.mark.broker
def test_it_publishes_nothing_while_the_transaction_is_open_and_exactly_one_task_after_commit(dispatcher):
    with transaction.atomic():
        record = task_enqueue(probe_tasks.create_user, args=["open@probe.test"])
        # Another transaction enqueues and commits meanwhile: once its task is published, the
        # dispatcher has made a pass while this transaction was open, and left its row alone.
        other = threading.Thread(target=_enqueue_and_commit, args=["meanwhile@probe.test"])
        other.start()
        other.join()
        wait_for(lambda: queue_depth() == 1, message="the other transaction's message")
        [meanwhile] = queue_take_all()
        assert meanwhile.headers["id"] != str(record.id)
        assert TaskRecord.objects.get(id=record.id).state == TaskState.PENDING

    wait_for(lambda: TaskRecord.objects.get(id=record.id).state == TaskState.SENT, message="sent after commit")
    [message] = queue_take_all()
    assert message.headers["id"] == str(record.id)
    assert message.headers["task"] == "tests.probe.create_user"
    record.refresh_from_db()
    assert record.sent_at is not None


# An inbox's insert, as the payments webhook's: a duplicate inserts nothing and returns no row.
_USER_INSERT = """
INSERT INTO accounts_user (email, password, display_name, is_active, is_staff, is_superuser, date_joined)
VALUES (%s, '!', '', true, false, false, now())
ON CONFLICT (email) DO NOTHING
RETURNING id
"""


def _inbox_enqueue(email: str, task_id: uuid.UUID) -> bool:
    return task_enqueue_if_inserted(
        probe_tasks.create_user,
        insert_sql=_USER_INSERT,
        insert_params=[email],
        kwargs={"email": email},
        correlation_key=f"user:{email}",
        task_id=task_id,
    )


@pytest.mark.django_db
def test_an_inbox_insert_records_its_task_with_it_and_a_duplicate_records_none():
    first, again = uuid.uuid4(), uuid.uuid4()

    assert _inbox_enqueue("inbox@probe.test", first) is True
    assert _inbox_enqueue("inbox@probe.test", again) is False

    [record] = TaskRecord.objects.all()
    assert (record.id, record.state, record.name) == (first, TaskState.PENDING, "tests.probe.create_user")
    assert (record.kwargs, record.correlation_key) == ({"email": "inbox@probe.test"}, "user:inbox@probe.test")
    assert User.objects.filter(email="inbox@probe.test").count() == 1


@pytest.mark.django_db
def test_an_inbox_insert_rolled_back_with_its_transaction_leaves_neither_row():
    with transaction.atomic():
        assert _inbox_enqueue("rolled-back-inbox@probe.test", uuid.uuid4()) is True
        transaction.set_rollback(True)

    assert not TaskRecord.objects.exists()
    assert not User.objects.filter(email="rolled-back-inbox@probe.test").exists()


@pytest.mark.broker
def test_it_publishes_nothing_for_a_rolled_back_transaction(dispatcher):
    with transaction.atomic():
        task_enqueue(probe_tasks.create_user, args=["rolled-back@probe.test"])
        transaction.set_rollback(True)

    # A task enqueued afterwards is the only message: had the rolled-back one been sent, it
    # would be ahead of it in the queue.
    later = task_enqueue(probe_tasks.create_user, args=["later@probe.test"])
    wait_for(lambda: queue_depth() == 1, message="the later task's message")
    [message] = queue_take_all()
    assert message.headers["id"] == str(later.id)
    assert not TaskRecord.objects.filter(args=["rolled-back@probe.test"]).exists()


@pytest.mark.broker
def test_it_runs_a_committed_task_exactly_once_on_a_real_worker(start_worker):
    start_worker()
    with transaction.atomic():
        record = task_enqueue(probe_tasks.create_user, args=["once@probe.test"])

    wait_for(lambda: TaskRecord.objects.get(id=record.id).state == TaskState.SUCCEEDED, message="succeeded")
    record.refresh_from_db()
    assert record.attempts == 1
    assert record.sent_at <= record.started_at
    assert User.objects.filter(email="once@probe.test").count() == 1
    assert queue_depth() == 0


@pytest.mark.broker
def test_it_keeps_the_task_pending_while_the_broker_refuses_and_publishes_it_once_it_is_back(start_worker):
    # The dispatcher's pass runs in this process, where the broker can be made to refuse.
    with broker_refusing_publishes():
        with transaction.atomic():
            record = task_enqueue(probe_tasks.create_user, args=["outage@probe.test"])
        record.refresh_from_db()
        assert record.state == TaskState.PENDING
        assert record.sent_at is None
        services._publish_paused_until = 0.0
        assert services.task_records_publish_pending() == 0
    assert queue_depth() == 0
    assert TaskRecord.objects.get(id=record.id).state == TaskState.PENDING

    # The broker is back; the process's publish pause (after its failures) has also run out.
    services._publish_paused_until = 0.0
    assert services.task_records_publish_pending() == 1
    assert services.task_records_publish_pending() == 0
    assert TaskRecord.objects.get(id=record.id).state == TaskState.SENT
    start_worker()

    wait_for(lambda: TaskRecord.objects.get(id=record.id).state == TaskState.SUCCEEDED, message="succeeded")
    assert TaskRecord.objects.get(id=record.id).attempts == 1
    assert User.objects.filter(email="outage@probe.test").count() == 1


@pytest.mark.broker
def test_the_dispatcher_pauses_after_a_refused_publish_so_a_broker_that_is_down_is_not_hammered(broker):
    first = task_enqueue(probe_tasks.create_user, args=["first@probe.test"])
    with broker_refusing_publishes():
        assert services.task_records_publish_pending() == 0
        assert services._publish_paused_until > 0
    # Back, but still paused: the rows wait for a pass after the pause.
    second = task_enqueue(probe_tasks.create_user, args=["second@probe.test"])
    assert services.task_records_publish_pending() == 0

    assert queue_depth() == 0
    states = set(TaskRecord.objects.filter(id__in=[first.id, second.id]).values_list("state", flat=True))
    assert states == {TaskState.PENDING}
    services._publish_paused_until = 0.0  # the pause is over
    assert services.task_records_publish_pending() == 2
    assert queue_depth() == 2


@pytest.mark.broker
def test_it_records_thousands_of_fanned_out_tasks_in_a_few_inserts_and_publishes_them_after_commit(dispatcher):
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        count = task_enqueue_many(
            probe_tasks.create_user,
            kwargs_list=[{"email": f"fan{n}@probe.test"} for n in range(2500)],
            correlation_keys=[f"fan:{n}" for n in range(2500)],
        )
        inserts = [query for query in queries if query["sql"].startswith("INSERT")]
        assert queue_depth() == 0

    assert count == 2500
    assert len(inserts) == 3  # batches of services.BATCH_SIZE, not one statement per task
    # A batch is marked `sent` once RabbitMQ confirmed it: its messages are queued a moment before.
    wait_for(lambda: TaskRecord.objects.filter(state=TaskState.SENT).count() == 2500, timeout=60, message="all sent")
    assert queue_depth() == 2500


@pytest.mark.broker
def test_it_puts_only_json_on_the_broker(dispatcher):
    task_enqueue(probe_tasks.create_user, args=["json@probe.test"], correlation_key="user:json")
    task_enqueue_many(probe_tasks.create_user, kwargs_list=[{"email": "fan-json@probe.test"}])
    task_enqueue(probe_tasks.sleep_then_create_user, kwargs={"email": "eta@probe.test", "seconds": 0}, countdown=60)

    wait_for(lambda: queue_depth() == 3, message="three messages")
    messages = queue_take_all()
    bodies = []
    for message in messages:
        assert message.properties["content_type"] == "application/json"
        assert message.properties["content_encoding"] == "utf-8"
        bodies.append(json.loads(message.body))
    # Celery's message protocol 2 body: [args, kwargs, embed].
    assert [body[:2] for body in bodies] == [
        [["json@probe.test"], {}],
        [[], {"email": "fan-json@probe.test"}],
        [[], {"email": "eta@probe.test", "seconds": 0}],
    ]
    assert messages[2].headers["eta"] is not None
