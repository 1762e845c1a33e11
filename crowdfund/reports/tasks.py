"""Report tasks (the `reports` queue, with a worker of its own): thin, they take ids, load, and call one service."""

from celery import shared_task
from django.conf import settings

from crowdfund.reports import services
from crowdfund.reports.models import Report
from tasks.base import PlatformTask


@shared_task(
    base=PlatformTask,
    name="crowdfund.reports.tasks.report_generate",
    soft_time_limit=settings.REPORTS_SOFT_TIME_LIMIT,
    time_limit=settings.REPORTS_TIME_LIMIT,
)
def report_generate(*, report_id: str, generation: int) -> None:
    report = Report.objects.select_related("campaign", "requester").get(id=report_id)
    services.report_generate(report=report, generation=generation)


@shared_task(base=PlatformTask, name="crowdfund.reports.tasks.reports_expire", soft_time_limit=10 * 60)
def reports_expire() -> None:
    services.reports_expire()


@shared_task(base=PlatformTask, name="crowdfund.reports.tasks.reports_fail_lost", soft_time_limit=60)
def reports_fail_lost() -> None:
    services.reports_fail_lost()


@shared_task(base=PlatformTask, name="crowdfund.reports.tasks.platform_report_build", soft_time_limit=60)
def platform_report_build() -> None:
    services.platform_report_build()


@shared_task(base=PlatformTask, name="crowdfund.reports.tasks.platform_report_email", soft_time_limit=120)
def platform_report_email(*, report_id: str) -> None:
    services.platform_report_email(report=Report.objects.get(id=report_id))
