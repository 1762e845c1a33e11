"""Taking the machine's RabbitMQ and PostgreSQL down, and always bringing them back.

These are the real, shared services: every outage ends in a `finally`, and returns only once the
service answers again, so a failing test never leaves them stopped."""

import contextlib
import os
import subprocess
import time

from django.db import DatabaseError, connection

from config.celery import app


def _run(*command: str, timeout: float = 60) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout)


def rabbitmq_stop() -> None:
    _run("rabbitmqctl", "stop_app")


def rabbitmq_start() -> None:
    for attempt in range(3):
        try:
            _run("rabbitmqctl", "start_app", timeout=120)
            break
        except subprocess.SubprocessError:
            if attempt == 2:
                raise
            time.sleep(2)
    _run("rabbitmqctl", "await_startup", timeout=120)
    # This process's pooled broker connections died with the broker; the processes under test
    # reconnect by themselves, and the test's own pings and purges must not trip on stale ones.
    for pool in (app.pool, app.amqp.producer_pool):
        pool.resize(pool.limit, reset=True)  # emptied of its connections, and refilled lazily


@contextlib.contextmanager
def rabbitmq_down():
    """RabbitMQ's application stopped (connections dropped, port closed) for the duration."""
    rabbitmq_stop()
    try:
        yield
    finally:
        rabbitmq_start()


def _postgres_cluster_version() -> str:
    [version] = os.listdir("/etc/postgresql")
    return version


def _postgres_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0


def postgres_wait_ready(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not _postgres_ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"PostgreSQL not ready after {timeout}s")
        time.sleep(0.5)


def _pg_ctlcluster(action: str) -> None:
    _run("pg_ctlcluster", "--skip-systemctl-redirect", _postgres_cluster_version(), "main", action, timeout=120)


def postgres_restart(*, down_for: float = 0) -> None:
    """Restart the cluster: every connection (the workers', the web's, this process's) is cut.
    With `down_for`, it stays stopped that many seconds first, as during a failover."""
    try:
        if down_for:
            _pg_ctlcluster("stop")
            time.sleep(down_for)
            _pg_ctlcluster("start")
        else:
            _pg_ctlcluster("restart")
    finally:
        if not _postgres_ready():
            # A restart that failed halfway leaves the cluster stopped: start it, whatever happened.
            with contextlib.suppress(subprocess.CalledProcessError):
                _pg_ctlcluster("start")
        postgres_wait_ready()
        connection.close()  # this process's connection died with the server


def retrying_outages(query, *, timeout: float = 60):
    """query(), reconnecting while PostgreSQL restarts (this process's connection dies with it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return query()
        except DatabaseError:
            connection.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
