"""Reports: who may see which, and the rows of each kind of report.

Row queries are `values_list` querysets (tuples, no model instances), read by the generator through
a server-side cursor in chunks; their first-row-first order makes every file reproducible.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Case, Count, F, Func, Q, QuerySet, Sum, TextField, Value, When
from django.db.models.functions import Cast, Concat, Left, TruncDate
from django.db.models.lookups import In

from crowdfund.common.errors import DomainError
from crowdfund.pledges.models import Pledge, PledgeStatus
from crowdfund.reports.models import Report, ReportFormat, ReportKind
from crowdfund.reports.writers import FORMULA_TRIGGERS


def report_get(*, report_id, user) -> Report:
    """The report, or 404 when it does not exist or is not the caller's (staff see all)."""
    report = Report.objects.visible_to(user).select_related("campaign").filter(id=report_id).first()
    if report is None:
        raise DomainError("report_not_found", "No such report.", status=404)
    return report


@dataclass
class ReportRows:
    header: list[str]
    rows: Iterable[tuple]
    total: int  # for the progress; the number of rows `rows` yields
    ready: bool = False  # every value is already its CSV cell (see writers.CsvWriter)


BACKERS_HEADER = [
    "Pledge ID",
    "Backer email",
    "Backer name",
    "Reward",
    "Amount",
    "Currency",
    "Status",
    "Pledged at",
    "Paid at",
]


BACKERS_COLUMNS = ["id", "backer__email", "backer__display_name", "reward__title", "amount", "currency", "status",
                   "created_at", "paid_at"]  # fmt: skip
# The CSV's timestamp format: ISO 8601 in UTC with microseconds (Django's connections use UTC).
ISO_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'


# The columns people type: a value starting like a formula is neutralised (writers.neutralise).
TYPED_BY_PEOPLE = ("backer__email", "backer__display_name", "reward__title")


def _as_text(column: str):
    if column in ("created_at", "paid_at"):
        return Func(F(column), Value(ISO_FORMAT), function="to_char", output_field=TextField())
    if column in TYPED_BY_PEOPLE:
        return _formula_safe(column)
    return Cast(column, TextField())


def _formula_safe(column: str):
    """writers.neutralise in SQL: a leading single quote on text a spreadsheet would run."""
    value = F(column)
    starts_like_a_formula = In(Left(value, 1), FORMULA_TRIGGERS)
    return Case(When(starts_like_a_formula, then=Concat(Value("'"), value)), default=value, output_field=TextField())


def backers_queryset(*, campaign_id, as_text: bool = False) -> QuerySet:
    """One row per pledge of the campaign, oldest first (the rows of a `backers` report).

    `as_text` has PostgreSQL turn every value into its CSV cell, neutralised: loading strings is
    what psycopg does fastest, and the CSV writer then writes the rows as they come (at least three
    times the rows per second of typed values on a million pledges)."""
    pledges = Pledge.objects.filter(campaign_id=campaign_id).order_by("created_at", "id")
    if not as_text:
        return pledges.values_list(*BACKERS_COLUMNS)
    texts = {f"text_{n}": _as_text(column) for n, column in enumerate(BACKERS_COLUMNS)}
    return pledges.annotate(**texts).values_list(*texts)


def backers_rows(*, report: Report, chunk_size: int) -> ReportRows:
    as_text = report.format == ReportFormat.CSV
    queryset = backers_queryset(campaign_id=report.campaign_id, as_text=as_text)
    return ReportRows(BACKERS_HEADER, queryset.iterator(chunk_size=chunk_size), queryset.count(), ready=as_text)


SUMMARY_HEADER = ["Section", "Key", "Pledges", "Amount", "Paid pledges", "Paid amount"]

PAID = Q(status=PledgeStatus.PAID)


def summary_rows(*, report: Report, chunk_size: int) -> ReportRows:
    """Totals of a campaign's pledges by day pledged, by reward and by status, then its refunds by
    day. A few hundred rows at most (a campaign lasts 90 days): built in memory."""
    pledges = Pledge.objects.filter(campaign_id=report.campaign_id)
    counts = {
        "n": Count("id"),
        "total": Sum("amount"),
        "paid_n": Count("id", filter=PAID),
        "paid_total": Sum("amount", filter=PAID),
    }
    by_day = pledges.annotate(key=TruncDate("created_at")).values("key").annotate(**counts).order_by("key")
    by_reward = pledges.values(key=F("reward__title")).annotate(**counts).order_by("key")
    by_status = pledges.values(key=F("status")).annotate(**counts).order_by("key")
    refunds = (
        # Refunded is a pledge's last state, so its last change is the refund.
        pledges.filter(status=PledgeStatus.REFUNDED)
        .annotate(key=TruncDate("updated_at"))
        .values("key")
        .annotate(n=Count("id"), total=Sum("amount"))
        .order_by("key")
    )
    rows = [("total", "all", *_totals(pledges.aggregate(**counts)))]
    rows += [("day", row["key"], *_totals(row)) for row in by_day]
    rows += [("reward", row["key"] or "(no reward)", *_totals(row)) for row in by_reward]
    rows += [("status", row["key"], *_totals(row)) for row in by_status]
    rows += [("refunds", row["key"], row["n"], row["total"], None, None) for row in refunds]
    return ReportRows(SUMMARY_HEADER, rows, len(rows))


def _totals(row: dict) -> tuple:
    return row["n"], row["total"] or 0, row["paid_n"], row["paid_total"] or 0


PLATFORM_HEADER = [
    "Campaign ID",
    "Campaign",
    "Creator email",
    "Campaign status",
    "Currency",
    "New pledges",
    "New pledges amount",
    "Paid pledges",
    "Paid amount",
    "Refunded pledges",
    "Refunded amount",
]


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def platform_day_queryset(*, day: date) -> QuerySet:
    """One row per campaign with any pledge activity on `day` (UTC): new, paid and refunded pledges."""
    start, end = day_bounds(day)
    new = Q(created_at__gte=start, created_at__lt=end)
    paid = Q(paid_at__gte=start, paid_at__lt=end)
    refunded = Q(status=PledgeStatus.REFUNDED, updated_at__gte=start, updated_at__lt=end)
    return (
        Pledge.objects.filter(new | paid | refunded)
        .values("campaign_id", "campaign__title", "campaign__creator__email", "campaign__status", "campaign__currency")
        .annotate(
            new=Count("id", filter=new),
            new_amount=Sum("amount", filter=new, default=0),
            paid=Count("id", filter=paid),
            paid_amount=Sum("amount", filter=paid, default=0),
            refunded=Count("id", filter=refunded),
            refunded_amount=Sum("amount", filter=refunded, default=0),
        )
        .order_by("campaign__title", "campaign_id")
        .values_list(
            "campaign_id",
            "campaign__title",
            "campaign__creator__email",
            "campaign__status",
            "campaign__currency",
            "new",
            "new_amount",
            "paid",
            "paid_amount",
            "refunded",
            "refunded_amount",
        )
    )


def platform_rows(*, report: Report, chunk_size: int) -> ReportRows:
    queryset = platform_day_queryset(day=report.day)
    return ReportRows(PLATFORM_HEADER, queryset.iterator(chunk_size=chunk_size), queryset.count())


ROWS_BY_KIND = {
    ReportKind.BACKERS: backers_rows,
    ReportKind.SUMMARY: summary_rows,
    ReportKind.PLATFORM_DAILY: platform_rows,
}


def report_rows(*, report: Report, chunk_size: int) -> ReportRows:
    return ROWS_BY_KIND[report.kind](report=report, chunk_size=chunk_size)
