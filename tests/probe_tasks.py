"""Tasks that exist only for the tests: real workers import them with `--include`."""

import time

from celery import shared_task

from crowdfund.accounts.models import User
from tasks.base import PlatformTask


class ProbeTransientError(Exception):
    pass


@shared_task(base=PlatformTask, name="tests.probe.create_user")
def create_user(email):
    User.objects.create_user(email=email, password=None)


@shared_task(base=PlatformTask, name="tests.probe.sleep_then_create_user")
def sleep_then_create_user(email, seconds):
    time.sleep(seconds)
    User.objects.create_user(email=email, password=None)


@shared_task(
    base=PlatformTask,
    name="tests.probe.flaky",
    transient_errors=(ProbeTransientError,),
    max_retries=3,
    retry_backoff_base=0.5,
)
def flaky(email, failures):
    """Fails transiently on its first `failures` runs, then creates the user."""
    from celery import current_task

    if current_task.request.retries < failures:
        raise ProbeTransientError(f"failure {current_task.request.retries + 1} of {failures}")
    User.objects.create_user(email=email, password=None)


@shared_task(base=PlatformTask, name="tests.probe.create_user_named_by_backend")
def create_user_named_by_backend(n):
    """Creates a user whose email names the PostgreSQL backend process this task ran on."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    User.objects.create_user(email=f"task{n}-backend{backend}@probe.test", password=None)


@shared_task(base=PlatformTask, name="tests.probe.slow_on_first_runs", max_retries=1)
def slow_on_first_runs(email, slow_runs, seconds=120):
    """Sleeps on its first `slow_runs` runs, long enough for a test to kill its worker process,
    then creates the user. At most two runs (max_retries=1) so the bound is quick to reach."""
    from celery import current_task

    if current_task.request.retries < slow_runs:
        time.sleep(seconds)
    User.objects.create_user(email=email, password=None)


@shared_task(
    base=PlatformTask,
    name="tests.probe.transient_until_allowed",
    transient_errors=(ProbeTransientError,),
    max_retries=3,
    retry_backoff_base=1.0,
)
def transient_until_allowed(tag):
    """Leaves a `run-...-<tag>` user per run (its date_joined says when the run happened), then
    fails transiently until a user `allow-<tag>` exists (the outage is over), and finally creates
    `done-<tag>`."""
    import uuid

    User.objects.create_user(email=f"run-{uuid.uuid4().hex}-{tag}@probe.test", password=None)
    if not User.objects.filter(email=f"allow-{tag}@probe.test").exists():
        raise ProbeTransientError(f"{tag} is not allowed yet")
    User.objects.create_user(email=f"done-{tag}@probe.test", password=None)


@shared_task(base=PlatformTask, name="tests.probe.tick")
def tick():
    """A periodic job for the beat tests: its ledger rows count how often beat sent it."""
