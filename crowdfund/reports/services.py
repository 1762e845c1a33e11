"""Reports: requesting one (within a per-user limit), generating it on the `reports` queue in
constant memory with its progress saved as it goes, telling the requester, and expiring old files.

Generation streams rows from a server-side cursor to a temporary file, then saves the file to
`default_storage` (the file system by default, any storage backend by settings). A failure of any
kind, the soft time limit included, leaves the report `failed` with its error and no file behind;
it may be generated again.
"""

import logging
import os
import tempfile
from datetime import date, timedelta
from itertools import islice

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.mail import EmailMessage
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import Campaign
from crowdfund.common.errors import DomainError
from crowdfund.notifications.models import NotificationKind
from crowdfund.notifications.services import notification_send
from crowdfund.reports import selectors
from crowdfund.reports.models import IN_PROGRESS, REGENERABLE, Report, ReportFormat, ReportKind, ReportState
from crowdfund.reports.writers import writer_open
from tasks.services import task_enqueue

log = logging.getLogger(__name__)

# Progress is saved when it has moved by this many percent: a handful of writes per report, not one per row.
PROGRESS_STEP_PERCENT = 5
# Reports expired (files deleted) per transaction.
EXPIRE_BATCH_SIZE = 200
# The platform report is attached to the staff email up to this size, linked from the admin beyond it.
EMAIL_ATTACHMENT_MAX_BYTES = 10 * 2**20


# --- Requesting ------------------------------------------------------------------------------


def report_request(*, requester: User, campaign: Campaign, kind: str, format: str) -> Report:
    """Record a report and enqueue its generation, or refuse (429 `too_many_reports`) when the
    requester already has REPORTS_MAX_RUNNING_PER_USER reports pending or running."""
    with transaction.atomic():
        _running_limit_check(requester=requester)
        report = Report.objects.create(requester=requester, campaign=campaign, kind=kind, format=format)
        _generation_enqueue(report)
    return report


def _running_limit_check(*, requester: User) -> None:
    # The requester's row lock queues up their simultaneous requests, so two of them cannot both
    # see one slot left and both take it.
    User.objects.select_for_update().filter(id=requester.id).first()
    limit = settings.REPORTS_MAX_RUNNING_PER_USER
    if Report.objects.filter(requester=requester).in_progress().count() >= limit:
        raise DomainError(
            "too_many_reports",
            f"You already have {limit} reports being generated; wait for one to finish.",
            status=429,
        )


def report_regenerate(*, report: Report) -> Report:
    """Generate a ready, failed or expired report again (a new generation; a ready one's old file
    is deleted). Refused (409 `report_in_progress`) while it is pending or running."""
    with transaction.atomic():
        report = Report.objects.select_for_update().get(id=report.id)
        if report.state not in REGENERABLE:
            raise DomainError("report_in_progress", "This report is already being generated.", status=409)
        old_file = report.file.name
        report.state, report.progress, report.error = ReportState.PENDING, 0, ""
        report.generation += 1
        report.file, report.size, report.row_count = "", 0, 0
        report.started_at = report.finished_at = report.expires_at = None
        report.save()
        _generation_enqueue(report)
        if old_file:
            transaction.on_commit(lambda: default_storage.delete(old_file))
    return report


def _generation_enqueue(report: Report) -> None:
    from crowdfund.reports import tasks

    task_enqueue(
        tasks.report_generate,
        kwargs={"report_id": str(report.id), "generation": report.generation},
        correlation_key=f"report:{report.id}",
        idempotency_key=f"report:{report.id}:{report.generation}",
    )


# --- Generating ------------------------------------------------------------------------------


def report_generate(*, report: Report, generation: int) -> None:
    """Build the report's file. A run for an older generation, or for a report no longer pending
    or running (a duplicate, an expired one), does nothing."""
    if not _report_start(report=report, generation=generation):
        return
    handle, path = tempfile.mkstemp(prefix=f"report-{report.id}-", suffix=f".{report.format}")
    os.close(handle)
    stored = ""
    try:
        row_count = _rows_write(report=report, path=path)
        stored = _file_store(report=report, path=path)
        _report_finish(report=report, generation=generation, name=stored, row_count=row_count)
    except Exception as exc:  # SoftTimeLimitExceeded included: the report must not stay "running"
        if stored:
            default_storage.delete(stored)
        _report_fail(report=report, generation=generation, error=_describe(exc))
        raise
    finally:
        os.unlink(path)


def _report_start(*, report: Report, generation: int) -> bool:
    now = timezone.now()
    # `running` too: a run whose worker died is redelivered and starts over.
    started = Report.objects.filter(id=report.id, generation=generation, state__in=IN_PROGRESS).update(
        state=ReportState.RUNNING, progress=0, started_at=now, error=""
    )
    if not started:
        log.info("Not generating report %s generation %s: stale or finished", report.id, generation)
        return False
    report.state, report.progress, report.started_at = ReportState.RUNNING, 0, now
    return True


def _rows_write(*, report: Report, path: str) -> int:
    chunk_size = settings.REPORTS_CHUNK_SIZE
    source = selectors.report_rows(report=report, chunk_size=chunk_size)
    progress = _Progress(report=report, total=source.total)
    writer = writer_open(format=report.format, path=path, ready_rows=source.ready)
    rows = iter(source.rows)
    written = 0
    try:
        writer.write_header(source.header)
        while chunk := list(islice(rows, chunk_size)):
            writer.write_rows(chunk)
            written += len(chunk)
            progress.advance(written)
    except BaseException:
        writer.discard()
        raise
    else:
        writer.close()
    finally:
        # Close the server-side cursor now, not whenever the garbage collector gets to it (after a
        # soft time limit, it would otherwise stay open on the connection).
        if hasattr(rows, "close"):
            rows.close()
    return written


class _Progress:
    """Saves the percentage done when it has moved by PROGRESS_STEP_PERCENT; 100 is for `ready`.

    Saved outside any transaction (the generation runs in autocommit), so pollers see it at once."""

    def __init__(self, *, report: Report, total: int):
        self.report, self.total, self.saved = report, max(total, 1), 0

    def advance(self, done: int) -> None:
        percent = min(99, done * 100 // self.total)
        if percent >= self.saved + PROGRESS_STEP_PERCENT:
            Report.objects.filter(id=self.report.id, generation=self.report.generation).update(progress=percent)
            self.saved = self.report.progress = percent


def _file_store(*, report: Report, path: str) -> str:
    name = f"reports/{report.id}/{report.download_filename}"
    with open(path, "rb") as handle:
        return default_storage.save(name, File(handle))


def _report_finish(*, report: Report, generation: int, name: str, row_count: int) -> None:
    """Mark it ready and tell the requester, in one transaction: told exactly when it is ready."""
    now = timezone.now()
    with transaction.atomic():
        locked = Report.objects.select_for_update().filter(id=report.id, generation=generation).first()
        if locked is None or locked.state != ReportState.RUNNING:
            raise RuntimeError(f"report {report.id} changed while generation {generation} ran")
        locked.state, locked.progress, locked.error = ReportState.READY, 100, ""
        locked.file, locked.size, locked.row_count = name, default_storage.size(name), row_count
        locked.finished_at = now
        locked.expires_at = now + timedelta(days=settings.REPORTS_RETENTION_DAYS)
        locked.save()
        _ready_announce(locked)
    report.refresh_from_db()


def _ready_announce(report: Report) -> None:
    if report.requester_id is not None:
        notification_send(
            kind=NotificationKind.REPORT_READY,
            recipient=report.requester,
            subject=f"report:{report.id}",
            context={
                "report_id": str(report.id),
                "report_kind": report.get_kind_display(),
                "format": report.get_format_display(),
                "campaign_title": report.campaign.title if report.campaign_id else "",
                "download_url": report_download_url(report),
                "expires_at": report.expires_at.isoformat(),
            },
        )
    if report.kind == ReportKind.PLATFORM_DAILY:
        from crowdfund.reports import tasks

        kwargs = {"report_id": str(report.id)}
        task_enqueue(tasks.platform_report_email, kwargs=kwargs, correlation_key=f"report:{report.id}")


def report_download_url(report: Report) -> str:
    return settings.NOTIFICATIONS_BASE_URL.rstrip("/") + reverse("report-download", args=[report.id])


def _report_fail(*, report: Report, generation: int, error: str) -> None:
    Report.objects.filter(id=report.id, generation=generation, state=ReportState.RUNNING).update(
        state=ReportState.FAILED, error=error, finished_at=timezone.now()
    )
    report.state, report.error = ReportState.FAILED, error


def _describe(exc: Exception) -> str:
    from celery.exceptions import SoftTimeLimitExceeded

    if isinstance(exc, SoftTimeLimitExceeded):
        return f"Took longer than the {settings.REPORTS_SOFT_TIME_LIMIT} seconds a report may take."
    return f"{type(exc).__name__}: {exc}"[:2000]


# --- Expiry and lost runs --------------------------------------------------------------------


def reports_expire() -> int:
    """Delete the files of ready reports past their expiry and mark them expired, a batch per
    transaction (rows locked with SKIP LOCKED, so two runs at once share the work)."""
    now = timezone.now()
    total = 0
    while True:
        with transaction.atomic():
            batch = list(
                Report.objects.past_retention(now)
                .select_for_update(skip_locked=True)
                .order_by("expires_at")[:EXPIRE_BATCH_SIZE]
            )
            if not batch:
                return total
            for report in batch:
                if report.file.name:
                    default_storage.delete(report.file.name)
            Report.objects.filter(id__in=[report.id for report in batch]).update(state=ReportState.EXPIRED, file="")
        total += len(batch)


def reports_fail_lost() -> int:
    """Fail reports still `running` well past the hard time limit: their worker was lost and
    nothing will finish them; failing them frees their requester's slot, and they may be generated again."""
    cutoff = timezone.now() - timedelta(seconds=settings.REPORTS_TIME_LIMIT + 5 * 60)
    return Report.objects.filter(state=ReportState.RUNNING, started_at__lt=cutoff).update(
        state=ReportState.FAILED, finished_at=timezone.now(), error="Its worker was lost before it finished."
    )


# --- The platform's daily report -------------------------------------------------------------


def platform_report_build(*, day: date | None = None) -> Report:
    """Record (once per day) and enqueue the platform report of `day` (UTC), yesterday by default;
    the staff get it by email when it is ready."""
    day = day or timezone.now().date() - timedelta(days=1)
    with transaction.atomic():
        report, created = Report.objects.get_or_create(
            kind=ReportKind.PLATFORM_DAILY, day=day, defaults={"format": ReportFormat.CSV}
        )
        if created:
            _generation_enqueue(report)
    return report


def platform_report_email(*, report: Report) -> int:
    """Email the ready platform report to every active staff member; returns how many were sent it."""
    staff = list(User.objects.filter(is_staff=True, is_active=True).order_by("email").values_list("email", flat=True))
    if not staff or report.state != ReportState.READY:
        return 0
    admin_url = settings.NOTIFICATIONS_BASE_URL.rstrip("/") + reverse("admin:reports_report_change", args=[report.id])
    body = f"The platform report of {report.day} ({report.row_count} campaigns with activity)."
    message = EmailMessage(subject=f"Platform report {report.day}", to=staff)
    if report.size <= EMAIL_ATTACHMENT_MAX_BYTES:
        with report.file.open("rb") as handle:
            message.attach(report.download_filename, handle.read(), report.content_type)
        message.body = f"{body} It is attached; also in the admin: {admin_url}"
    else:
        message.body = f"{body} Too big to attach; download it from the admin: {admin_url}"
    message.send()
    return len(staff)
