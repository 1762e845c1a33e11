"""Liveness of the two services everything depends on, each answered within a few seconds."""

from django.conf import settings
from django.db import connection
from kombu import Connection

CHECK_TIMEOUT_SECONDS = 2


def database_check() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as exc:  # any failure means "down"; the reason goes to the response
        connection.close()
        return f"down: {exc.__class__.__name__}"


def broker_check() -> str:
    broker = Connection(
        settings.CELERY_BROKER_URL,
        connect_timeout=CHECK_TIMEOUT_SECONDS,
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    )
    try:
        broker.ensure_connection(max_retries=1, interval_start=0, timeout=CHECK_TIMEOUT_SECONDS)
        return "ok"
    except Exception as exc:
        return f"down: {exc.__class__.__name__}"
    finally:
        broker.release()
