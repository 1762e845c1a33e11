"""`manage.py run_dispatcher`: the process that publishes enqueued tasks (tasks.dispatcher)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from tasks.dispatcher import Dispatcher


class Command(BaseCommand):
    help = (
        "Publish the task ledger's pending rows to RabbitMQ, woken by PostgreSQL notifications. "
        "Run one or more (they share the work safely); SIGTERM or Ctrl-C stops it after its current batch."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--poll",
            type=float,
            default=settings.TASKS_DISPATCH_POLL_SECONDS,
            metavar="SECONDS",
            help="pass over the ledger this often even without a notification "
            "(default: TASKS_DISPATCH_POLL_SECONDS, %(default)s)",
        )

    def handle(self, *args, poll, **options):
        Dispatcher(poll_seconds=poll).run()
