"""The operations dashboard: its figures agree with the ledger, and only staff see it."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from crowdfund.accounts.models import User
from tasks.dashboard import dashboard_data, workers_online
from tasks.models import TaskRecord, TaskState

DASHBOARD = "/admin/tasks/taskrecord/dashboard/"


def finished(name, state, *, runtime, wait, minutes_ago=5, error_type=""):
    finished_at = timezone.now() - timedelta(minutes=minutes_ago)
    started_at = finished_at - timedelta(seconds=runtime)
    return TaskRecord.objects.create(
        name=name,
        queue="payments",
        state=state,
        runtime=runtime,
        sent_at=started_at - timedelta(seconds=wait),
        started_at=started_at,
        finished_at=finished_at,
        error_type=error_type,
        error_message="boom" if error_type else "",
    )


@pytest.fixture
def ledger(db):
    for runtime in (0.1, 0.2, 0.3, 0.4):
        finished("pay", TaskState.SUCCEEDED, runtime=runtime, wait=1.0)
    finished("pay", TaskState.FAILED, runtime=0.5, wait=2.0, error_type="TimeoutError")
    finished("pay", TaskState.FAILED, runtime=0.5, wait=2.0, error_type="TimeoutError", minutes_ago=120)
    TaskRecord.objects.create(name="notify", queue="notifications", state=TaskState.PENDING)
    TaskRecord.objects.create(name="notify", queue="notifications", state=TaskState.SENT, sent_at=timezone.now())


@pytest.fixture
def staff(db):
    user = User.objects.create_user(email="ops@example.org", password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_taskrecord", "retry_taskrecord"]))
    return user


def test_its_figures_agree_with_the_ledger(ledger):
    data = dashboard_data()

    hour = {row["name"]: row for row in data["tasks"]["hour"]}["pay"]
    assert (hour["finished"], hour["failed"]) == (5, 1)
    assert hour["failure_rate"] == pytest.approx(0.2)
    assert hour["run_p50"] == pytest.approx(0.3)
    assert hour["wait_p50"] == pytest.approx(1.0)
    assert {row["name"]: row for row in data["tasks"]["day"]}["pay"]["finished"] == 6
    notifications = {row["queue"]: row for row in data["queues"]}["notifications"]
    assert (notifications["pending"], notifications["sent"]) == (1, 1)
    assert notifications["oldest_waiting_seconds"] >= 0
    assert data["failure_causes"][0] == {"name": "pay", "error_type": "TimeoutError", "count": 2, "example": "boom"}
    assert sum(point["failed"] for point in data["throughput"]["hour"]) == 1
    assert sum(point["succeeded"] for point in data["throughput"]["day"]) == 4


def test_it_shows_the_declared_periodic_jobs_and_the_closing_campaigns_panel(db):
    data = dashboard_data()

    assert "every-minute-close-due-campaigns" in {job["name"] for job in data["periodic_jobs"]}
    assert data["panels"][0]["title"].startswith("Campaigns closing in the next 24 hours")
    assert "error" not in data["panels"][0]


def test_staff_see_the_page_with_links_to_the_failed_tasks_and_to_retrying_them(client, staff, ledger):
    client.force_login(staff)

    page = client.get(DASHBOARD)
    data = client.get(DASHBOARD + "data/").json()

    assert page.status_code == 200
    assert b"tasks/vendor/chart.umd.min.js" in page.content
    cause = data["failure_causes"][0]
    assert cause["list_url"].endswith("?state__exact=failed&name=pay&error_type__exact=TimeoutError")
    listed = client.get(cause["list_url"])
    assert listed.status_code == 200
    assert len(listed.context["cl"].result_list) == 2
    assert cause["retry_url"].startswith("/admin/tasks/taskrecord/retry-failed/?")


@pytest.mark.parametrize("who", ["anonymous", "not staff"])
def test_it_refuses_anyone_but_staff(client, db, who):
    if who == "not staff":
        client.force_login(User.objects.create_user(email="backer@example.org", password="x"))

    for url in (DASHBOARD, DASHBOARD + "data/"):
        response = client.get(url)
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]


@pytest.mark.broker
def test_it_lists_the_workers_online_with_their_queues(worker):
    online = {row["name"]: row for row in workers_online()}

    assert worker.hostname in online
    assert online[worker.hostname]["queues"] == ["default", "notifications", "payments", "reports"]
    assert online[worker.hostname]["processes"] == 2
