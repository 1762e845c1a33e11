"""Tasks the benchmarks drain: the same one-row insert as plain Celery and on the platform."""

from celery import shared_task
from django.db import connection

from tasks.base import PlatformTask


def insert_row(n: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_rows (n) VALUES (%s)", [n])


@shared_task(name="bench.plain_insert")
def plain_insert(n):
    insert_row(n)


@shared_task(base=PlatformTask, name="bench.platform_insert")
def platform_insert(n):
    insert_row(n)


@shared_task(name="bench.plain_noop")
def plain_noop(n):
    return None
