import pytest
from django.core.files.storage import default_storage
from django.db import connection

from crowdfund.reports.models import Report, ReportState
from crowdfund.reports.services import report_generate, report_request


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Generated files go to a folder of this test's own."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def temp_dir(monkeypatch, tmp_path):
    """Reports' temporary files go here, so a test can see that none is left behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(folder))
    return folder


def seed_pledges(campaign, count: int, *, backers: int = 100) -> None:
    """`count` pledges to `campaign` from `backers` new users, in two INSERT ... SELECT statements:
    seconds for hundreds of thousands of rows, where the ORM would take minutes."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO accounts_user (email, display_name, password, is_active, is_staff, is_superuser, date_joined)
            SELECT 'seed-' || %(campaign)s || '-' || n || '@example.com', 'Seed backer ' || n, '!', true, false, false,
                   now()
              FROM generate_series(1, %(backers)s) AS n
            """,
            {"campaign": str(campaign.id), "backers": backers},
        )
        cursor.execute(
            """
            INSERT INTO pledges_pledge (id, campaign_id, backer_id, reward_id, amount, currency, status,
                                        idempotency_key, request_fingerprint, payment_provider, payment_intent_id,
                                        payment_client_secret, created_at, updated_at, paid_at)
            SELECT gen_random_uuid(), %(campaign)s, u.id, NULL, 10 + n %% 90, %(currency)s,
                   CASE WHEN n %% 10 = 0 THEN 'failed' ELSE 'paid' END, 'seed-' || n, 'seed', '', '', '',
                   now() - interval '1 second' * n, now(), CASE WHEN n %% 10 = 0 THEN NULL ELSE now() END
              FROM generate_series(1, %(count)s) AS n
              JOIN accounts_user u
                ON u.email = 'seed-' || %(campaign)s || '-' || (1 + n %% %(backers)s) || '@example.com'
            """,
            {"campaign": str(campaign.id), "currency": campaign.currency, "count": count, "backers": backers},
        )


@pytest.fixture
def generated():
    """generated(requester, campaign, kind, format): a report requested and generated at once, as
    the `reports` worker would after commit."""

    def make(*, requester, campaign, kind="backers", format="csv") -> Report:
        report = report_request(requester=requester, campaign=campaign, kind=kind, format=format)
        report_generate(report=report, generation=report.generation)
        report.refresh_from_db()
        assert report.state == ReportState.READY, report.error
        return report

    return make


def stored_bytes(report: Report) -> bytes:
    with default_storage.open(report.file.name, "rb") as handle:
        return handle.read()
