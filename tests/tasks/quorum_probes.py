"""A probe task for the quorum-queue tests, with the platform's production backoff (base 2 s), so
its retry countdowns are whole seconds as RabbitMQ's native delayed delivery needs them."""

from celery import current_task, shared_task

from crowdfund.accounts.models import User
from tasks.base import PlatformTask
from tests.probe_tasks import ProbeTransientError


@shared_task(
    base=PlatformTask, name="tests.quorum.transient_once", transient_errors=(ProbeTransientError,), max_retries=2
)
def transient_once(email):
    """Fails transiently on its first run (an outage), then creates the user."""
    if current_task.request.retries == 0:
        raise ProbeTransientError(f"{email}: the first run fails")
    User.objects.create_user(email=email, password=None)
