"""What ops use besides the admin's actions: /metrics, the `tasks` command, retrying every failed
task matching a filter, and the periodic jobs declared in code."""

from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django_celery_beat.models import PeriodicTask

from config.schedule import BEAT_SCHEDULE
from crowdfund.accounts.models import User
from tasks.beat import periodic_jobs_sync
from tasks.metrics import OUTCOMES
from tasks.models import TaskRecord, TaskState
from tests import probe_tasks


def a_record(state, name="tests.probe.create_user", **fields) -> TaskRecord:
    return TaskRecord.objects.create(name=name, queue="default", state=state, args=["x@probe.test"], **fields)


@pytest.fixture
def operator(db):
    user = User.objects.create_user(email="ops@example.org", password="not-used", is_staff=True)
    codenames = ["view_taskrecord", "retry_taskrecord"]
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="tasks", codename__in=codenames))
    return user


@pytest.mark.broker
def test_metrics_show_the_backlog_by_state_the_task_outcomes_and_the_queue_depths(client, settings, broker):
    settings.DEBUG = True  # open in development; see the token tests for production
    a_record(TaskState.PENDING)
    a_record(TaskState.PENDING)
    a_record(TaskState.SENT)
    OUTCOMES.labels("tests.probe.create_user", "default", "succeeded").inc()

    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})

    assert response.status_code == 200
    text = response.content.decode()
    assert 'tasks_backlog{state="pending"} 2.0' in text
    assert 'tasks_backlog{state="sent"} 1.0' in text
    assert 'tasks_oldest_waiting_age_seconds{state="pending"}' in text
    assert 'tasks_outcomes_total{outcome="succeeded",queue="default",task="tests.probe.create_user"}' in text
    assert 'tasks_broker_queue_messages{queue="payments",state="ready"}' in text
    assert 'tasks_broker_queue_consumers{queue="reports"}' in text


@pytest.mark.django_db
def test_metrics_need_the_token_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = "s3cret"

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


@pytest.mark.django_db
def test_metrics_are_served_while_a_starting_process_creates_its_sample_file(client, settings, tmp_path):
    # prometheus_client creates a process's file empty, then sizes it: a scrape may see it empty.
    settings.METRICS_TOKEN = "s3cret"
    OUTCOMES.labels("tests.probe.create_user", "default", "succeeded").inc()
    starting = Path(settings.PROMETHEUS_MULTIPROC_DIR) / f"counter_starting_{tmp_path.name}.db"
    starting.touch()
    try:
        response = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    finally:
        starting.unlink()

    assert response.status_code == 200
    assert b'tasks_outcomes_total{outcome="succeeded",queue="default",task="tests.probe.create_user"}' in (
        response.content
    )


@pytest.mark.django_db
def test_metrics_are_not_served_in_production_without_a_token(client, settings):
    settings.DEBUG = False
    settings.METRICS_TOKEN = ""

    response = client.get("/metrics")

    assert response.status_code == 403
    assert response.json()["code"] == "metrics_disabled"


@pytest.mark.django_db
def test_the_command_lists_tasks_by_state(capsys):
    failed = a_record(TaskState.FAILED, error_type="ValueError", error_message="bad input")
    a_record(TaskState.SUCCEEDED)

    call_command("tasks", "list", "--state", "failed")

    out = capsys.readouterr().out
    assert str(failed.id) in out
    assert "ValueError: bad input" in out
    assert out.count("\n") == 1


@pytest.mark.django_db
def test_the_command_dry_run_retries_nothing(capsys):
    failed = a_record(TaskState.FAILED)

    call_command("tasks", "retry", "--state", "failed", "--dry-run")

    assert "Would retry 1 task(s)" in capsys.readouterr().out
    assert TaskRecord.objects.get(id=failed.id).state == TaskState.FAILED


@pytest.mark.django_db
def test_the_command_retries_failed_tasks_and_records_the_operator(capsys, operator):
    failed = a_record(TaskState.FAILED)

    call_command("tasks", "retry", "--state", "failed", "--as-user", operator.email)

    record = TaskRecord.objects.get(id=failed.id)
    assert record.state == TaskState.PENDING
    assert record.retried_by == operator
    assert record.manual_retries == 1


@pytest.mark.django_db
def test_the_command_refuses_to_act_on_every_task_without_a_filter():
    a_record(TaskState.FAILED)

    with pytest.raises(CommandError, match="give at least one filter"):
        call_command("tasks", "cancel")


@pytest.mark.django_db
def test_the_admin_retries_every_failed_task_matching_the_filter_after_confirmation(client, operator):
    matching = [a_record(TaskState.FAILED) for _ in range(3)]
    other_name = a_record(TaskState.FAILED, name="tests.probe.flaky")
    succeeded = a_record(TaskState.SUCCEEDED)
    client.force_login(operator)
    url = f"/admin/tasks/taskrecord/retry-failed/?name={probe_tasks.create_user.name}"

    confirmation = client.get(url)
    assert confirmation.status_code == 200
    assert confirmation.context["count"] == 3

    response = client.post(url)

    assert response.status_code == 302
    states = dict(TaskRecord.objects.values_list("id", "state"))
    assert all(states[record.id] == TaskState.PENDING for record in matching)
    assert states[other_name.id] == TaskState.FAILED
    assert states[succeeded.id] == TaskState.SUCCEEDED
    assert all(r.retried_by == operator for r in TaskRecord.objects.filter(id__in=[m.id for m in matching]))


@pytest.mark.django_db
def test_the_admin_refuses_retry_all_to_staff_without_the_permission(client):
    viewer = User.objects.create_user(email="viewer@example.org", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_taskrecord"))
    failed = a_record(TaskState.FAILED)
    client.force_login(viewer)

    assert client.post("/admin/tasks/taskrecord/retry-failed/").status_code == 403
    assert TaskRecord.objects.get(id=failed.id).state == TaskState.FAILED


@pytest.mark.django_db
def test_the_declared_periodic_jobs_are_in_the_database_and_a_sync_keeps_an_admins_disable():
    names = set(PeriodicTask.objects.values_list("name", flat=True))
    assert set(BEAT_SCHEDULE) <= names  # synced on migrate
    job = PeriodicTask.objects.get(name="every-minute-close-due-campaigns")
    job.enabled = False
    job.save()

    periodic_jobs_sync()

    assert PeriodicTask.objects.get(name="every-minute-close-due-campaigns").enabled is False
