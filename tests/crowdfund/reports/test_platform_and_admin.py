"""The nightly platform report emailed to staff, the admin's "generate again", the lost-run sweep
and the schedule."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from config.schedule import BEAT_SCHEDULE
from crowdfund.pledges.models import PledgeStatus
from crowdfund.reports import services
from crowdfund.reports.models import Report, ReportState
from tasks.models import TaskRecord
from tests.factories import CampaignFactory, PledgeFactory, UserFactory

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 3, 14, tzinfo=UTC).date()
NOON = datetime(2026, 3, 14, 12, tzinfo=UTC)


def test_the_platform_report_of_a_day_lists_every_campaigns_activity_and_is_emailed_to_staff(creator):
    staff = UserFactory(is_staff=True, email="ops@example.com")
    UserFactory(is_staff=True, is_active=False)
    busy = CampaignFactory(creator=creator, live=True, title='=Busy, "quoted"')
    quiet = CampaignFactory(live=True, title="Quiet")
    for amount, status in (("10.00", PledgeStatus.PAID), ("15.00", PledgeStatus.PENDING)):
        pledge = PledgeFactory(campaign=busy, amount=amount, status=status)
        paid_at = NOON if status == PledgeStatus.PAID else None
        type(pledge).objects.filter(id=pledge.id).update(created_at=NOON, paid_at=paid_at)
    old = PledgeFactory(campaign=quiet)
    type(old).objects.filter(id=old.id).update(created_at=NOON - timedelta(days=3))

    report = services.platform_report_build(day=DAY)
    assert services.platform_report_build(day=DAY) == report  # a second run the same night adds nothing
    services.report_generate(report=report, generation=1)
    report.refresh_from_db()
    assert report.state == ReportState.READY, report.error
    email_task = TaskRecord.objects.get(name="crowdfund.reports.tasks.platform_report_email")
    assert services.platform_report_email(report=report) == 1

    assert email_task.kwargs == {"report_id": str(report.id)}
    assert (report.requester, report.campaign, report.row_count) == (None, None, 1)
    (message,) = mail.outbox
    assert message.to == [staff.email]
    (name, content, content_type) = message.attachments[0]
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig") if isinstance(content, bytes) else content)))
    assert rows[1][:3] == [str(busy.id), '\'=Busy, "quoted"', creator.email]
    assert rows[1][5:] == ["2", "25.00", "1", "10.00", "0", "0"]
    assert name.endswith(".csv")
    assert content_type.startswith("text/csv")


def test_only_staff_read_the_platform_report(api_client, creator):
    report = services.platform_report_build(day=DAY)

    assert api_client(creator).get(f"/api/v1/reports/{report.id}").status_code == 404
    assert api_client(UserFactory(is_staff=True)).get(f"/api/v1/reports/{report.id}").status_code == 200


def test_the_nightly_job_is_declared_once_and_builds_yesterdays_report():
    job = BEAT_SCHEDULE["every-day-platform-report"]
    assert job["task"] == "crowdfund.reports.tasks.platform_report_build"
    assert BEAT_SCHEDULE["every-hour-expire-reports"]["task"] == "crowdfund.reports.tasks.reports_expire"

    report = services.platform_report_build()

    assert report.day == timezone.now().date() - timedelta(days=1)
    assert TaskRecord.objects.filter(idempotency_key=f"report:{report.id}:1", queue="reports").exists()


def test_a_run_lost_with_its_worker_is_failed_later_and_frees_its_slot(creator, live_campaign, settings):
    settings.REPORTS_TIME_LIMIT = 60
    lost = Report.objects.create(
        requester=creator, campaign=live_campaign, kind="backers", format="csv", state="running",
        started_at=timezone.now() - timedelta(minutes=10),
    )  # fmt: skip
    running = Report.objects.create(
        requester=creator, campaign=live_campaign, kind="backers", format="csv", state="running",
        started_at=timezone.now(),
    )  # fmt: skip

    assert services.reports_fail_lost() == 1

    lost.refresh_from_db()
    running.refresh_from_db()
    assert (lost.state, running.state) == ("failed", "running")
    assert "lost" in lost.error


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_the_admin_lists_filters_and_searches_reports(admin_client, creator, live_campaign):
    Report.objects.create(requester=creator, campaign=live_campaign, kind="summary", format="xlsx")

    for params in ({}, {"state": "pending"}, {"kind": "summary", "format": "xlsx"}, {"q": creator.email}):
        response = admin_client.get("/admin/reports/report/", params)
        assert response.status_code == 200
        assert str(live_campaign.title) in response.content.decode()
    assert live_campaign.title not in admin_client.get("/admin/reports/report/", {"q": "nobody"}).content.decode()


def test_the_admin_generates_failed_reports_again_through_the_service(admin_client, creator, live_campaign):
    failed = Report.objects.create(
        requester=creator, campaign=live_campaign, kind="backers", format="csv", state="failed", error="Boom"
    )
    pending = Report.objects.create(requester=creator, campaign=live_campaign, kind="backers", format="csv")

    admin_client.post(
        "/admin/reports/report/", {"action": "generate_again", "_selected_action": [failed.id, pending.id]}
    )

    failed.refresh_from_db()
    pending.refresh_from_db()
    assert (failed.state, failed.generation, failed.error) == ("pending", 2, "")
    assert pending.generation == 1
    assert TaskRecord.objects.filter(idempotency_key=f"report:{failed.id}:2").exists()
