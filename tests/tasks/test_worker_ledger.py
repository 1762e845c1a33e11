"""A worker process's own ledger connection (services.WorkerLedgerConnection): the claim waits for
its answer, the success write does not, and a write lost with its connection is made again."""

import threading

import psycopg
import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from tasks import services
from tasks.models import TaskRecord, TaskState
from tests.tasks.test_services import ledger_row


@pytest.fixture
def ledger(transactional_db, monkeypatch):
    """The ledger connection as a prefork worker process has it (started by worker_process_init)."""
    ledger = services.WorkerLedgerConnection()
    ledger.start()
    monkeypatch.setattr(services, "worker_ledger", ledger)
    yield ledger
    ledger.stop()


def claim(row) -> bool:
    return services.task_record_start(
        task=None, task_id=str(row.id), args=[], kwargs={}, retries=0, redelivered=False, worker="w@test"
    )


def ledger_backend_pids() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
            [services.LEDGER_APPLICATION_NAME],
        )
        return [pid for (pid,) in cursor.fetchall()]


def terminate_the_ledger_connection() -> None:
    (pid,) = ledger_backend_pids()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


def test_it_claims_the_run_and_records_its_success_on_a_connection_of_its_own(ledger):
    row = ledger_row(state=TaskState.SENT, attempts=0, max_attempts=6)

    assert claim(row)
    services.task_record_succeed(task_id=str(row.id), runtime=0.01)
    ledger.settle()

    record = TaskRecord.objects.get(id=row.id)
    assert (record.state, record.attempts, record.runtime) == (TaskState.SUCCEEDED, 1, 0.01)
    assert len(ledger_backend_pids()) == 1  # besides Django's connection


def test_a_success_write_lost_with_its_connection_is_written_again(ledger):
    row = ledger_row(state=TaskState.SENT, attempts=0, max_attempts=6)
    assert claim(row)
    # Another session holds the row, so the success write waits in PostgreSQL; its connection is
    # then cut before it runs: the write is lost, and the worker only learns it from the answer.
    with psycopg.connect(**connection.get_connection_params(), autocommit=False) as holder:
        holder.execute("SELECT 1 FROM tasks_taskrecord WHERE id = %s FOR UPDATE", [row.id])
        services.task_record_succeed(task_id=str(row.id), runtime=0.01)
        terminate_the_ledger_connection()
        holder.rollback()
    assert TaskRecord.objects.get(id=row.id).state == TaskState.STARTED

    ledger.settle()  # as the next claim does

    assert TaskRecord.objects.get(id=row.id).state == TaskState.SUCCEEDED


def test_a_claim_cut_off_is_a_database_error_and_the_next_one_runs_on_a_new_connection(ledger):
    row = ledger_row(state=TaskState.SENT, attempts=0, max_attempts=6)
    # Another session holds the row, so the claim waits in PostgreSQL; its connection is cut then.
    with psycopg.connect(**connection.get_connection_params(), autocommit=False) as holder:
        holder.execute("SELECT 1 FROM tasks_taskrecord WHERE id = %s FOR UPDATE", [row.id])
        cut = threading.Timer(0.5, terminate_the_ledger_connection)
        cut.start()
        # A database error, which PlatformTask answers by retrying the run later.
        with pytest.raises(OperationalError):
            claim(row)
        cut.join()
        holder.rollback()

    assert claim(row)
    assert TaskRecord.objects.get(id=row.id).attempts == 1


def test_a_connection_postgresql_closed_while_idle_is_opened_again_before_the_claim(ledger):
    first = ledger_row(state=TaskState.SENT, attempts=0, max_attempts=6)
    second = ledger_row(state=TaskState.SENT, attempts=0, max_attempts=6)
    assert claim(first)
    terminate_the_ledger_connection()  # as a PostgreSQL restart does

    assert claim(second)
    assert TaskRecord.objects.get(id=second.id).state == TaskState.STARTED


def test_inside_a_transaction_it_leaves_the_statements_to_djangos_connection(ledger):
    row = ledger_row(state=TaskState.SENT, attempts=0, max_attempts=6)
    with transaction.atomic():
        assert claim(row)
        services.task_record_succeed(task_id=str(row.id), runtime=0.01)
        assert TaskRecord.objects.get(id=row.id).finished_at <= timezone.now()

    assert ledger_backend_pids() == []
