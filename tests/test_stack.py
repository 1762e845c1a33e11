"""The runnable stack: health, a real task end to end, connection reuse, production settings."""

import secrets
import subprocess
import sys
import time

import pytest

from crowdfund.accounts.models import User
from tasks.models import TaskRecord, TaskState
from tasks.services import task_enqueue
from tests import probe_tasks
from tests.workers import ROOT, Worker, wait_for


@pytest.mark.django_db
def test_health_says_ok_when_database_and_broker_answer(client):
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_health_names_the_broker_when_it_is_down_within_five_seconds(client, settings):
    settings.CELERY_BROKER_URL = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens on port 1
    started = time.monotonic()
    response = client.get("/health/")
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok"
    assert body["broker"].startswith("down")
    assert elapsed < 5


@pytest.mark.broker
def test_a_task_sent_over_rabbitmq_runs_on_a_real_worker_and_writes_to_postgres(worker):
    record = task_enqueue(probe_tasks.create_user, args=["real@probe.test"])

    wait_for(lambda: User.objects.filter(email="real@probe.test").exists(), message="the worker's insert")
    record.refresh_from_db()
    wait_for(lambda: TaskRecord.objects.get(id=record.id).state == TaskState.SUCCEEDED, message="succeeded")


@pytest.mark.broker
def test_a_worker_reuses_its_database_connection_across_tasks(broker):
    worker = Worker(concurrency=1).wait_ready()
    try:
        for n in range(20):
            task_enqueue(probe_tasks.create_user_named_by_backend, args=[n])
        wait_for(lambda: User.objects.filter(email__endswith="@probe.test").count() == 20, message="20 tasks")
    finally:
        worker.stop()
    backends = {email.split("-backend")[1] for email in User.objects.values_list("email", flat=True)}
    assert len(backends) == 1, f"20 tasks used {len(backends)} database connections"


def test_production_settings_pass_the_deploy_check():
    env = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "api.example.org",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_with_the_development_secret_key():
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "false", "SECRET_KEY": "dev-only-insecure-secret-key-change-me"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
