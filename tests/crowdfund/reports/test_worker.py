"""Reports built by a real worker on the `reports` queue, against RabbitMQ and PostgreSQL: the
progress rises while a large report is written, and the soft time limit fails a report cleanly."""

import csv
import time

import pytest

from crowdfund.reports.models import Report, ReportState
from crowdfund.reports.tasks import report_generate
from tasks.models import TaskRecord, TaskState
from tests.crowdfund.reports.conftest import seed_pledges
from tests.factories import CampaignFactory
from tests.workers import Worker, wait_for

PLEDGES = 200_000


@pytest.fixture
def big_campaign(creator):
    campaign = CampaignFactory(creator=creator, live=True, title="Big one")
    seed_pledges(campaign, PLEDGES, backers=500)
    return campaign


def reports_worker(tmp_path, **env) -> Worker:
    """A worker for the `reports` queue only, writing to this test's folders."""
    (tmp_path / "worker-tmp").mkdir(exist_ok=True)
    return Worker(
        queues=("reports",),
        concurrency=1,
        env={"MEDIA_ROOT": str(tmp_path / "media"), "TMPDIR": str(tmp_path / "worker-tmp"), **env},
    ).wait_ready(timeout=60)


def left_behind(folder) -> list:
    """Temporary files of reports (ours, and openpyxl's); the worker's own (billiard's) do not count."""
    return [path.name for path in folder.iterdir() if path.name.startswith(("report-", "openpyxl."))]


@pytest.mark.broker
def test_progress_rises_while_a_real_worker_builds_a_large_report(broker, api_client, creator, big_campaign, tmp_path):
    worker = reports_worker(tmp_path, REPORTS_CHUNK_SIZE="2000")
    try:
        response = api_client(creator).post(
            f"/api/v1/campaigns/{big_campaign.id}/reports", {"kind": "backers", "format": "csv"}
        )
        assert response.status_code == 202
        report_id = response.json()["id"]
        seen = set()

        def finished():
            state, progress = Report.objects.values_list("state", "progress").get(id=report_id)
            seen.add(progress)
            return state in (ReportState.READY, ReportState.FAILED)

        wait_for(finished, timeout=60, interval=0.01, message="the report to finish")
    finally:
        worker.stop()

    report = Report.objects.get(id=report_id)
    assert report.state == ReportState.READY, report.error
    assert len({progress for progress in seen if 0 < progress < 100}) > 2, seen
    assert report.row_count == PLEDGES
    path = tmp_path / "media" / report.file.name
    with open(path, encoding="utf-8-sig", newline="") as handle:
        assert sum(1 for _ in csv.reader(handle)) == PLEDGES + 1
    assert api_client(creator).get(f"/api/v1/reports/{report_id}").json()["status"] == "ready"
    assert left_behind(tmp_path / "worker-tmp") == []


@pytest.mark.broker
def test_the_soft_time_limit_fails_a_report_cleanly_on_a_real_worker(
    broker, api_client, creator, big_campaign, tmp_path, monkeypatch
):
    # Celery's send_task writes the task's limits into the message: the publisher's values count.
    monkeypatch.setattr(report_generate, "soft_time_limit", 1)
    monkeypatch.setattr(report_generate, "time_limit", 30)
    monkeypatch.setattr(report_generate, "_exec_options", None)  # Celery caches them at the first send
    worker = reports_worker(tmp_path, REPORTS_SOFT_TIME_LIMIT="1", REPORTS_TIME_LIMIT="30")
    try:
        started = time.monotonic()
        response = api_client(creator).post(
            f"/api/v1/campaigns/{big_campaign.id}/reports", {"kind": "backers", "format": "xlsx"}
        )
        report_id = response.json()["id"]
        wait_for(
            lambda: Report.objects.filter(id=report_id, state__in=["ready", "failed"]).exists(),
            timeout=60,
            interval=0.2,
            message="the report to fail",
        )
        took = time.monotonic() - started
    finally:
        worker.stop()

    report = Report.objects.get(id=report_id)
    assert report.state == ReportState.FAILED
    assert report.error == "Took longer than the 1 seconds a report may take."
    assert took < 20  # stopped by the soft limit, not the hard one
    assert report.file.name == ""
    assert left_behind(tmp_path / "worker-tmp") == []  # neither our file nor openpyxl's
    assert not any(path.is_file() for path in (tmp_path / "media").rglob("*"))
    task = TaskRecord.objects.get(correlation_key=f"report:{report_id}")
    assert (task.state, task.error_type) == (TaskState.FAILED, "SoftTimeLimitExceeded")
    # It may be asked for again: the slot is free
    again = api_client(creator).post(
        f"/api/v1/campaigns/{big_campaign.id}/reports", {"kind": "backers", "format": "csv"}
    )
    assert again.status_code == 202
