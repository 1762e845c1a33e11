"""`manage.py tasks list|retry|cancel`: the task ledger from a terminal, with the admin's filters."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from tasks.models import TaskRecord, TaskState
from tasks.services import task_records_cancel, task_records_retry


class Command(BaseCommand):
    help = "List, retry or cancel recorded tasks. Filters combine; retry and cancel accept --dry-run."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["list", "retry", "cancel"])
        parser.add_argument("--id", dest="ids", action="append", default=[], help="a task id (repeatable)")
        parser.add_argument("--state", choices=TaskState.values)
        parser.add_argument("--name", help="exact task name")
        parser.add_argument("--queue")
        parser.add_argument("--correlation-key", help="e.g. pledge:42")
        parser.add_argument("--error-type", help="e.g. ConnectionError")
        parser.add_argument("--since", type=float, metavar="HOURS", help="created within the last HOURS hours")
        parser.add_argument("--limit", type=int, default=50, help="rows to list (default 50)")
        parser.add_argument("--dry-run", action="store_true", help="show what would be retried or cancelled")
        parser.add_argument("--as-user", help="email of the operator recorded as retrying or cancelling")

    def handle(self, *args, action, **options):
        records = self._filtered(options)
        if action == "list":
            return self._list(records, options["limit"])
        if not any(options[key] for key in ("ids", "state", "name", "queue", "correlation_key", "error_type")):
            raise CommandError("Refusing to act on every task: give at least one filter (e.g. --state failed).")
        if options["dry_run"]:
            self.stdout.write(f"Would {action} {records.count()} task(s) (only those not running qualify):")
            return self._list(records, options["limit"])
        user = self._operator(options["as_user"])
        if action == "retry":
            count = task_records_retry(records=records, user=user)
        else:
            count = task_records_cancel(records=records, user=user)
        self.stdout.write(self.style.SUCCESS(f"{action.capitalize()}: {count} task(s)."))

    def _filtered(self, options):
        records = TaskRecord.objects.all()
        if options["ids"]:
            records = records.filter(id__in=options["ids"])
        for option, field in (("state", "state"), ("name", "name"), ("queue", "queue"),
                              ("correlation_key", "correlation_key"), ("error_type", "error_type")):  # fmt: skip
            if options[option]:
                records = records.filter(**{field: options[option]})
        if options["since"]:
            records = records.filter(created_at__gte=timezone.now() - timedelta(hours=options["since"]))
        return records

    def _list(self, records, limit):
        rows = records.order_by("-created_at")[:limit]
        for record in rows:
            error = f"  {record.error_type}: {record.error_message[:60]}" if record.error_type else ""
            self.stdout.write(
                f"{record.id}  {record.state:<9}  {record.attempts}/{record.max_attempts}  {record.queue:<13}  "
                f"{record.name}  {record.correlation_key}  {record.created_at:%Y-%m-%d %H:%M:%S}{error}"
            )

    def _operator(self, email):
        if not email:
            return None
        try:
            return get_user_model().objects.get(email=email)
        except get_user_model().DoesNotExist as exc:
            raise CommandError(f"No user with email {email}") from exc
