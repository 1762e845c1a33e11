"""The task admin, driven as an operator would: a failed task retried from the changelist runs
again on a real worker; staff without the permission cannot retry or cancel."""

import pytest
from django.contrib.auth.models import Permission

from crowdfund.accounts.models import User
from tasks.models import TaskRecord, TaskState
from tasks.services import task_enqueue
from tests import probe_tasks
from tests.tasks.broker import queue_depth
from tests.workers import wait_for

CHANGELIST = "/admin/tasks/taskrecord/"


def staff_with(email, *codenames):
    user = User.objects.create_user(email=email, password="not-used", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="tasks", codename__in=codenames))
    return user


@pytest.fixture
def operator(broker):
    """Staff who may see, retry and cancel tasks."""
    return staff_with("operator@example.org", "view_taskrecord", "retry_taskrecord", "cancel_taskrecord")


@pytest.fixture
def viewer(broker):
    """Staff who may look at the tasks and nothing more."""
    return staff_with("viewer@example.org", "view_taskrecord")


def actions_offered(client) -> set[str]:
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    form = response.context["action_form"]  # None when the user may run no action at all
    return {name for name, _ in form.fields["action"].choices if name} if form else set()


def record_of(record) -> TaskRecord:
    return TaskRecord.objects.get(id=record.id)


@pytest.mark.broker
def test_it_lets_an_operator_retry_a_failed_task_which_then_succeeds_with_the_same_arguments(
    start_worker, client, operator
):
    start_worker()
    record = task_enqueue(probe_tasks.transient_until_allowed, args=["admin-retry"], correlation_key="probe:1")
    wait_for(lambda: record_of(record).state == TaskState.FAILED, timeout=60, message="failed")
    User.objects.create_user(email="allow-admin-retry@probe.test")  # the outage is over
    client.force_login(operator)
    assert {"retry_selected", "cancel_selected"} <= actions_offered(client)

    response = client.post(CHANGELIST, {"action": "retry_selected", "_selected_action": [str(record.id)]})

    assert response.status_code == 302
    wait_for(lambda: record_of(record).state == TaskState.SUCCEEDED, message="the retried run")
    record.refresh_from_db()
    assert record.args == ["admin-retry"]
    assert record.attempts == 1
    assert record.manual_retries == 1
    assert record.retried_by == operator
    assert record.retried_at is not None
    assert User.objects.filter(email="done-admin-retry@probe.test").exists()


@pytest.mark.broker
def test_it_does_not_let_staff_without_the_permission_retry_a_failed_task(client, viewer):
    record = TaskRecord.objects.create(
        name="tests.probe.create_user", args=["not-retried@probe.test"], queue="default", state=TaskState.FAILED
    )
    client.force_login(viewer)
    assert actions_offered(client) == set()

    response = client.post(CHANGELIST, {"action": "retry_selected", "_selected_action": [str(record.id)]})
    refused = client.post(f"{CHANGELIST}retry-failed/")

    assert response.status_code == 200  # with no action available, the POST just shows the list
    assert refused.status_code == 403
    record.refresh_from_db()
    assert record.state == TaskState.FAILED
    assert record.manual_retries == 0
    assert record.retried_by is None
    assert queue_depth() == 0


@pytest.mark.broker
def test_it_lets_an_operator_cancel_a_queued_task(client, operator):
    record = task_enqueue(probe_tasks.create_user, args=["cancelled-by-admin@probe.test"])
    client.force_login(operator)

    response = client.post(CHANGELIST, {"action": "cancel_selected", "_selected_action": [str(record.id)]})

    assert response.status_code == 302
    record.refresh_from_db()
    assert record.state == TaskState.CANCELLED
    assert record.cancelled_by == operator
    assert record.finished_at is not None


@pytest.mark.broker
def test_it_does_not_let_staff_without_the_permission_cancel_a_task(client, viewer):
    record = task_enqueue(probe_tasks.create_user, args=["not-cancelled@probe.test"])
    client.force_login(viewer)

    assert actions_offered(client) == set()

    response = client.post(CHANGELIST, {"action": "cancel_selected", "_selected_action": [str(record.id)]})

    assert response.status_code == 200
    record.refresh_from_db()
    assert record.state == TaskState.PENDING  # as enqueued (no dispatcher runs here), not cancelled
    assert record.cancelled_by is None


@pytest.mark.broker
def test_it_refuses_the_retry_action_to_staff_who_may_only_cancel(client, broker):
    canceller = staff_with("canceller@example.org", "view_taskrecord", "cancel_taskrecord")
    record = TaskRecord.objects.create(
        name="tests.probe.create_user", args=["not-retried@probe.test"], queue="default", state=TaskState.FAILED
    )
    client.force_login(canceller)
    assert actions_offered(client) == {"cancel_selected"}

    response = client.post(CHANGELIST, {"action": "retry_selected", "_selected_action": [str(record.id)]})

    assert response.status_code == 302  # back to the list, saying no action was selected
    record.refresh_from_db()
    assert record.state == TaskState.FAILED
    assert record.manual_retries == 0
    assert queue_depth() == 0
