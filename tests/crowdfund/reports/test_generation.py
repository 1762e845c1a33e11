"""Generating reports (service level): the files hold exactly the database's rows, text a
spreadsheet would run as a formula is neutralised, and failures leave nothing behind."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import openpyxl
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.core.files.storage import default_storage
from django.utils import timezone

from crowdfund.notifications.models import OutboxMessage
from crowdfund.pledges.models import Pledge, PledgeStatus
from crowdfund.reports import selectors, services
from crowdfund.reports.models import Report, ReportState
from tasks.models import TaskRecord
from tests.crowdfund.reports.conftest import stored_bytes
from tests.factories import PledgeFactory, RewardFactory, UserFactory

pytestmark = pytest.mark.django_db

TRICKY_NAMES = [
    'Zoë "Zed" O\'Neil, Jr.',
    "Line one\nline two",
    '=HYPERLINK("http://evil.example","click")',
    "+1 555 0100",
    "-2+3",
    "@SUM(A1:A2)",
    "\tTabbed",
    "\rCarriage",
    "日本語のなまえ, with comma",
    "",
]


ISO = "%Y-%m-%dT%H:%M:%S.%f+00:00"


def formula_safe(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@pytest.fixture
def tricky_campaign(live_campaign):
    reward = RewardFactory(campaign=live_campaign, title="=cmd|' /C calc'!A0, \"the\" reward")
    for n, name in enumerate(TRICKY_NAMES):
        backer = UserFactory(display_name=name, email=f"b{n}@example.com")
        PledgeFactory(
            campaign=live_campaign,
            backer=backer,
            reward=reward if n % 2 else None,
            amount=Decimal(f"{10 + n}.5{n}"),
            status=PledgeStatus.PAID if n % 3 else PledgeStatus.PENDING,
            paid_at=timezone.now() if n % 3 else None,
        )
    return live_campaign


def database_rows(campaign) -> list[Pledge]:
    return list(
        Pledge.objects.filter(campaign=campaign).select_related("backer", "reward").order_by("created_at", "id")
    )


def test_the_backers_csv_parses_back_to_exactly_the_rows_in_the_database(creator, tricky_campaign, generated):
    report = generated(requester=creator, campaign=tricky_campaign, kind="backers", format="csv")

    parsed = list(csv.reader(io.StringIO(stored_bytes(report).decode("utf-8-sig"), newline="")))
    expected = [
        [
            str(p.id),
            formula_safe(p.backer.email),
            formula_safe(p.backer.display_name),
            formula_safe(p.reward.title) if p.reward else "",
            f"{p.amount:.2f}",
            p.currency,
            p.status,
            p.created_at.astimezone(UTC).strftime(ISO),
            p.paid_at.astimezone(UTC).strftime(ISO) if p.paid_at else "",
        ]
        for p in database_rows(tricky_campaign)
    ]
    assert parsed[0] == selectors.BACKERS_HEADER
    assert parsed[1:] == expected
    assert report.row_count == len(TRICKY_NAMES)
    assert report.size == default_storage.size(report.file.name) > 0
    names = {row[2] for row in parsed[1:]}
    assert {'\'=HYPERLINK("http://evil.example","click")', "'\tTabbed", "'\rCarriage", "Line one\nline two"} <= names


def test_the_backers_xlsx_opens_with_openpyxl_and_matches_the_database(creator, tricky_campaign, generated):
    report = generated(requester=creator, campaign=tricky_campaign, kind="backers", format="xlsx")

    workbook = openpyxl.load_workbook(io.BytesIO(stored_bytes(report)), read_only=True)
    width = len(selectors.BACKERS_HEADER)
    # read-only mode drops a row's trailing empty cells
    rows = [list(row) + [None] * (width - len(row)) for row in workbook.active.iter_rows(values_only=True)]
    expected = [
        [
            str(p.id),
            in_xml(formula_safe(p.backer.email)),
            in_xml(formula_safe(p.backer.display_name)) or None,
            in_xml(formula_safe(p.reward.title)) if p.reward else None,
            float(p.amount),
            p.currency,
            p.status,
            p.created_at.astimezone(UTC).replace(tzinfo=None),
            p.paid_at.astimezone(UTC).replace(tzinfo=None) if p.paid_at else None,
        ]
        for p in database_rows(tricky_campaign)
    ]
    assert rows[0] == selectors.BACKERS_HEADER
    assert len(rows) == len(expected) + 1
    for row, wanted in zip(rows[1:], expected, strict=True):
        assert [_close_enough(cell, other) for cell, other in zip(row, wanted, strict=True)] == wanted
    assert not any(str(cell).startswith("=") for row in rows for cell in row)
    assert "'\nCarriage" in {row[2] for row in rows}  # neutralised before the CR became a newline


def in_xml(text: str) -> str:
    """XML keeps no bare carriage return: the writer turns it into a newline."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _close_enough(cell, wanted):
    """`wanted` when `cell` is the same time to within a millisecond (Excel keeps milliseconds), else `cell`."""
    if isinstance(cell, datetime) and isinstance(wanted, datetime) and abs(cell - wanted) <= timedelta(milliseconds=1):
        return wanted
    return cell


def test_the_summary_totals_pledges_by_day_reward_and_status_and_lists_refunds(creator, live_campaign, generated):
    reward = RewardFactory(campaign=live_campaign, title="Mug")
    PledgeFactory(campaign=live_campaign, reward=reward, amount="20.00", status=PledgeStatus.PAID)
    PledgeFactory(campaign=live_campaign, amount="5.00", status=PledgeStatus.PENDING)
    PledgeFactory(campaign=live_campaign, reward=reward, amount="40.00", status=PledgeStatus.REFUNDED)

    report = generated(requester=creator, campaign=live_campaign, kind="summary", format="csv")

    rows = list(csv.reader(io.StringIO(stored_bytes(report).decode("utf-8-sig"), newline="")))
    by_key = {(row[0], row[1]): row[2:] for row in rows[1:]}
    today = timezone.now().date().isoformat()
    assert by_key[("total", "all")] == ["3", "65.00", "1", "20.00"]
    assert by_key[("day", today)] == ["3", "65.00", "1", "20.00"]
    assert by_key[("reward", "Mug")] == ["2", "60.00", "1", "20.00"]
    assert by_key[("reward", "(no reward)")] == ["1", "5.00", "0", "0"]
    assert by_key[("status", "refunded")] == ["1", "40.00", "0", "0"]
    assert by_key[("refunds", today)] == ["1", "40.00", "", ""]


def test_the_requester_is_told_when_the_report_is_ready(creator, live_campaign, generated):
    PledgeFactory(campaign=live_campaign)

    report = generated(requester=creator, campaign=live_campaign)

    messages = OutboxMessage.objects.filter(recipient=creator, kind="report_ready", subject=f"report:{report.id}")
    assert messages.count() >= 1
    context = messages.first().context
    assert context["report_id"] == str(report.id)
    assert context["download_url"].endswith(f"/api/v1/reports/{report.id}/download")
    assert report.progress == 100
    assert report.expires_at > timezone.now() + timedelta(days=6)


def test_a_soft_time_limit_fails_the_report_cleanly_and_it_can_be_generated_again(
    creator, live_campaign, monkeypatch, temp_dir, media_root
):
    PledgeFactory.create_batch(3, campaign=live_campaign)
    report = services.report_request(requester=creator, campaign=live_campaign, kind="backers", format="xlsx")
    real_rows = selectors.report_rows

    def rows_then_time_up(*, report, chunk_size):
        source = real_rows(report=report, chunk_size=chunk_size)
        # Celery raises the soft limit inside the task, wherever it is: here, between two rows.
        source.rows = _raise_after(source.rows, 2, SoftTimeLimitExceeded())
        return source

    monkeypatch.setattr(selectors, "report_rows", rows_then_time_up)
    with pytest.raises(SoftTimeLimitExceeded):
        services.report_generate(report=report, generation=report.generation)

    report.refresh_from_db()
    assert report.state == ReportState.FAILED
    assert "longer than" in report.error
    assert list(temp_dir.iterdir()) == []
    assert not (media_root / "reports").exists() or not any((media_root / "reports").rglob("*.*"))
    assert not OutboxMessage.objects.filter(kind="report_ready").exists()

    monkeypatch.setattr(selectors, "report_rows", real_rows)
    services.report_regenerate(report=report)
    report.refresh_from_db()
    assert (report.state, report.generation, report.error) == (ReportState.PENDING, 2, "")
    assert TaskRecord.objects.filter(idempotency_key=f"report:{report.id}:2").exists()
    services.report_generate(report=report, generation=2)
    report.refresh_from_db()
    assert report.state == ReportState.READY
    assert report.row_count == 3


def _raise_after(rows, count, exc):
    try:
        for n, row in enumerate(rows):
            if n == count:
                raise exc
            yield row
    finally:
        rows.close()


def test_a_run_of_an_earlier_generation_does_nothing(creator, live_campaign):
    report = services.report_request(requester=creator, campaign=live_campaign, kind="backers", format="csv")
    Report.objects.filter(id=report.id).update(state=ReportState.FAILED)
    services.report_regenerate(report=report)

    services.report_generate(report=report, generation=1)

    report.refresh_from_db()
    assert (report.state, report.generation, report.file.name) == (ReportState.PENDING, 2, "")


def test_a_report_is_generated_again_only_when_it_is_not_in_progress(creator, live_campaign):
    report = services.report_request(requester=creator, campaign=live_campaign, kind="backers", format="csv")

    with pytest.raises(services.DomainError) as refused:
        services.report_regenerate(report=report)

    assert refused.value.code == "report_in_progress"
    assert Report.objects.get(id=report.id).generation == 1
