"""The reports API: creators ask for reports about their campaigns; only the requester (and staff)
read or download them; not ready is 409, expired is 410, too many at once is 429."""

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from crowdfund.reports.models import Report, ReportState
from crowdfund.reports.services import reports_expire
from tasks.models import TaskRecord
from tests.crowdfund.reports.conftest import stored_bytes
from tests.factories import PledgeFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    return UserFactory(email="staff@example.com", is_staff=True)


@pytest.fixture
def ready_report(creator, live_campaign, generated):
    PledgeFactory.create_batch(2, campaign=live_campaign)
    return generated(requester=creator, campaign=live_campaign, kind="backers", format="csv")


def test_the_creator_asks_for_a_report_and_its_generation_is_enqueued(api_client, creator, live_campaign):
    response = api_client(creator).post(
        f"/api/v1/campaigns/{live_campaign.id}/reports", {"kind": "backers", "format": "xlsx"}
    )

    assert response.status_code == 202
    report = Report.objects.get()
    assert response.json() == {"id": str(report.id), "status": "pending", "progress": 0}
    assert (report.requester, report.campaign, report.kind, report.format) == (
        creator,
        live_campaign,
        "backers",
        "xlsx",
    )
    task = TaskRecord.objects.get(correlation_key=f"report:{report.id}")
    assert (task.name, task.queue) == ("crowdfund.reports.tasks.report_generate", "reports")
    assert task.kwargs == {"report_id": str(report.id), "generation": 1}


@pytest.mark.parametrize(
    ("who", "status", "code"),
    [("outsider", 403, "not_campaign_creator"), ("anonymous", 401, "not_authenticated")],
)
def test_only_the_creator_may_ask_for_a_report(api_client, request, live_campaign, who, status, code):
    client = api_client(None if who == "anonymous" else request.getfixturevalue(who))

    response = client.post(f"/api/v1/campaigns/{live_campaign.id}/reports", {"kind": "backers", "format": "csv"})

    assert response.status_code == status
    assert response.json()["code"] == code
    assert not Report.objects.exists()


def test_it_refuses_an_unknown_kind_or_format(api_client, creator, live_campaign):
    response = api_client(creator).post(
        f"/api/v1/campaigns/{live_campaign.id}/reports", {"kind": "platform_daily", "format": "pdf"}
    )

    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"kind", "format"}
    assert not Report.objects.exists()


def test_a_user_may_run_only_so_many_reports_at_once(api_client, creator, live_campaign, settings):
    settings.REPORTS_MAX_RUNNING_PER_USER = 2
    client = api_client(creator)
    url = f"/api/v1/campaigns/{live_campaign.id}/reports"
    assert [client.post(url, {"kind": "summary", "format": "csv"}).status_code for _ in range(2)] == [202, 202]

    refused = client.post(url, {"kind": "backers", "format": "csv"})

    assert refused.status_code == 429
    assert refused.json()["code"] == "too_many_reports"
    assert Report.objects.count() == 2
    Report.objects.filter(requester=creator).update(state=ReportState.FAILED)  # a finished one frees its slot
    assert client.post(url, {"kind": "backers", "format": "csv"}).status_code == 202


def test_the_requester_reads_the_report_with_its_download_link(api_client, creator, ready_report):
    response = api_client(creator).get(f"/api/v1/reports/{ready_report.id}")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(ready_report.id)
    assert (body["kind"], body["format"], body["status"], body["progress"]) == ("backers", "csv", "ready", 100)
    assert body["download_url"] == f"http://testserver/api/v1/reports/{ready_report.id}/download"
    assert body["expires_at"] is not None


@pytest.mark.parametrize(("who", "status"), [("creator", 200), ("staff", 200), ("outsider", 404), ("anonymous", 401)])
def test_only_the_requester_and_staff_read_a_report(api_client, request, ready_report, who, status):
    client = api_client(None if who == "anonymous" else request.getfixturevalue(who))

    response = client.get(f"/api/v1/reports/{ready_report.id}")

    assert response.status_code == status
    if status == 200:
        assert response.json()["status"] == "ready"


@pytest.mark.parametrize(("who", "status"), [("creator", 200), ("staff", 200), ("outsider", 404), ("anonymous", 401)])
def test_only_the_requester_and_staff_download_a_report(api_client, request, ready_report, who, status):
    client = api_client(None if who == "anonymous" else request.getfixturevalue(who))

    response = client.get(f"/api/v1/reports/{ready_report.id}/download")

    assert response.status_code == status
    if status == 200:
        content = b"".join(response.streaming_content)
        assert content == stored_bytes(ready_report)
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert f'filename="{ready_report.download_filename}"' in response["Content-Disposition"]
        assert len(list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))) == 3
    else:
        assert "code" in response.json()


def test_a_report_still_being_generated_cannot_be_downloaded(api_client, creator, live_campaign):
    created = api_client(creator).post(
        f"/api/v1/campaigns/{live_campaign.id}/reports", {"kind": "backers", "format": "csv"}
    )

    response = api_client(creator).get(f"/api/v1/reports/{created.json()['id']}/download")

    assert response.status_code == 409
    assert response.json()["code"] == "report_not_ready"
    assert api_client(creator).get(f"/api/v1/reports/{created.json()['id']}").json()["download_url"] is None


def test_a_failed_report_answers_409_with_its_error(api_client, creator, live_campaign):
    report = Report.objects.create(
        requester=creator, campaign=live_campaign, kind="backers", format="csv", state="failed", error="Boom"
    )

    response = api_client(creator).get(f"/api/v1/reports/{report.id}/download")

    assert response.status_code == 409
    assert response.json()["code"] == "report_failed"


def test_expiry_removes_the_file_and_the_report_answers_410(api_client, creator, ready_report, media_root):
    path = media_root / ready_report.file.name
    assert path.exists()
    Report.objects.filter(id=ready_report.id).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert api_client(creator).get(f"/api/v1/reports/{ready_report.id}/download").status_code == 410  # at once

    assert reports_expire() == 1

    ready_report.refresh_from_db()
    assert (ready_report.state, ready_report.file.name) == (ReportState.EXPIRED, "")
    assert not path.exists()
    response = api_client(creator).get(f"/api/v1/reports/{ready_report.id}/download")
    assert response.status_code == 410
    assert response.json()["code"] == "report_expired"
    assert api_client(creator).get(f"/api/v1/reports/{ready_report.id}").json()["status"] == "expired"


def test_expiry_leaves_reports_within_their_retention_alone(ready_report, media_root):
    assert reports_expire() == 0

    ready_report.refresh_from_db()
    assert ready_report.state == ReportState.READY
    assert (media_root / ready_report.file.name).exists()


def test_expiry_goes_through_many_reports_in_batches(creator, live_campaign, monkeypatch, media_root):
    monkeypatch.setattr("crowdfund.reports.services.EXPIRE_BATCH_SIZE", 3)
    past = timezone.now() - timedelta(days=1)
    Report.objects.bulk_create(
        [
            Report(
                requester=creator, campaign=live_campaign, kind="summary", format="csv", state="ready", expires_at=past
            )
            for _ in range(7)
        ]
    )

    assert reports_expire() == 7

    assert set(Report.objects.values_list("state", flat=True)) == {"expired"}
