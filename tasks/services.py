"""Every write to the task ledger: enqueue and publish, the worker's bookkeeping, retry, cancel,
and the maintenance jobs. Domain code calls `task_enqueue` (or `task_enqueue_many` for fan-out).

Enqueueing only writes rows `pending`, in the caller's transaction; a trigger on the ledger
(migration 0003) wakes the dispatcher (tasks.dispatcher) when such a transaction commits, and the
dispatcher publishes the rows. Requests and tasks that enqueue never wait for RabbitMQ."""

import contextlib
import logging
import os
import select
import time
import traceback as tb
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from django.db.models import Q
from django.utils import timezone
from kombu import Producer
from kombu.exceptions import EncodeError
from psycopg import pq

from config.celery import app
from tasks.models import OPEN_STATES, TaskRecord, TaskState

log = logging.getLogger(__name__)

# After a failed publish, this process stops trying for a few seconds: the rows wait, committed,
# and the dispatcher does not hammer a broker that is down.
PUBLISH_PAUSE_SECONDS = 5.0
# A `retrying` row whose retry message was not taken by the broker is republished once it is this
# late; the margin keeps a merely busy queue from being sent duplicates (which would be skipped).
RETRY_REPUBLISH_GRACE = timedelta(minutes=5)
# Rows are published, recovered and purged in batches of this size, never in one giant statement.
BATCH_SIZE = 1000
# The dispatcher publishes at most this many rows per transaction: a worker claiming one of them
# waits for that transaction's row locks, so they are held briefly.
DISPATCH_BATCH_SIZE = 100
# A task due later than this stays in the ledger and is published by the dispatcher nearer its time:
# RabbitMQ closes a consumer holding an unacknowledged (delayed) message past its 30-minute timeout.
MAX_BROKER_DELAY = timedelta(minutes=10)
# Quorum queues carry delays through Celery's native delayed delivery, which refuses a delay under
# one second (it counts whole seconds, rounding down): a task due sooner is published this far ahead.
MIN_BROKER_DELAY = timedelta(seconds=1.5)

_publish_paused_until = 0.0


def queue_for(task_name: str) -> str:
    route = app.amqp.router.route({}, task_name)
    return route["queue"].name


def _new_record(task, *, args, kwargs, correlation_key, idempotency_key, eta) -> TaskRecord:
    return TaskRecord(
        name=task.name,
        args=list(args),
        kwargs=dict(kwargs or {}),
        queue=queue_for(task.name),
        max_attempts=(task.max_retries or 0) + 1,
        eta=eta,
        correlation_key=correlation_key,
        idempotency_key=idempotency_key,
    )


def task_enqueue(
    task,
    *,
    args: Sequence = (),
    kwargs: dict | None = None,
    correlation_key: str = "",
    idempotency_key: str | None = None,
    countdown: float | None = None,
    eta: datetime | None = None,
) -> TaskRecord:
    """Record `task` in the caller's transaction; the dispatcher publishes it once that
    transaction commits.

    A rolled-back transaction enqueues nothing; a committed one never loses its task (if the
    broker is down the row stays `pending` until the dispatcher can publish it). An idempotency
    key given twice yields the first record, not a second task.
    """
    if countdown is not None:
        eta = timezone.now() + timedelta(seconds=countdown)
    record = _new_record(
        task, args=args, kwargs=kwargs, correlation_key=correlation_key, idempotency_key=idempotency_key, eta=eta
    )
    if not _record_insert(record):  # its idempotency key was given before
        return TaskRecord.objects.get(idempotency_key=idempotency_key)
    return record


def task_enqueue_if_inserted(
    task,
    *,
    insert_sql: str,
    insert_params: Sequence,
    kwargs: dict | None = None,
    correlation_key: str = "",
    task_id: uuid.UUID | None = None,
) -> bool:
    """Run the caller's `INSERT ... ON CONFLICT DO NOTHING RETURNING ...` of one row and record
    `task` only if that row was inserted, both in one statement; False when it was not (a
    duplicate). For an inbox, which stores what it receives and enqueues its processing. Give
    `task_id` when the inserted row refers to its task.

    Outside a transaction the statement commits on its own, so the common case costs one round
    trip where a transaction of two INSERTs costs four (BEGIN, the INSERTs, COMMIT). Measured on
    the payments webhook, two rounds side by side: 435 and 496 requests a second with the
    transaction, 576 and 574 with one statement.
    """
    record = _new_record(task, args=(), kwargs=kwargs, correlation_key=correlation_key, idempotency_key=None, eta=None)
    record.id = task_id or record.id
    if connection.vendor != "postgresql":  # no INSERT inside WITH (the SQLite fallback): a transaction
        with transaction.atomic():
            if not _execute_prepared(insert_sql, list(insert_params), fetch=True):
                return False
            return _record_insert(record)
    sql = _INSERT_IF_INSERTED_SQL.format(insert=insert_sql)
    return bool(_execute_prepared(sql, [*insert_params, *_record_params(record)], fetch=True))


# Plain SQL, prepared on PostgreSQL, as the worker's per-task statements below (and for the same
# reason): the ORM's insert cost more than running it. A row whose idempotency key exists is not
# inserted, in the same statement.
_RECORD_COLUMNS = """(id, name, args, kwargs, queue, state, attempts, max_attempts, eta, created_at, correlation_key,
        idempotency_key, worker, error_type, error_message, traceback, manual_retries)"""
_RECORD_VALUES = "%s, %s, %s, %s, %s, 'pending', 0, %s, %s, %s, %s, %s, '', '', '', '', 0"
_INSERT_SQL = f"""
INSERT INTO {TaskRecord._meta.db_table} {_RECORD_COLUMNS}
VALUES ({_RECORD_VALUES})
ON CONFLICT DO NOTHING
"""
# The caller's INSERT goes in at {insert}: the task row is made once for each row it returns.
_INSERT_IF_INSERTED_SQL = f"""
WITH inserted AS ({{insert}})
INSERT INTO {TaskRecord._meta.db_table} {_RECORD_COLUMNS}
SELECT {_RECORD_VALUES} FROM inserted
RETURNING id
"""


def _record_insert(record: TaskRecord) -> bool:
    """Insert a new `pending` row (in the caller's transaction); False when its idempotency key
    is taken."""
    return _execute_prepared(_INSERT_SQL, _record_params(record)) == 1


def _record_params(record: TaskRecord) -> list:
    """The values of _RECORD_VALUES' placeholders; sets the record's created_at."""
    record.created_at = timezone.now()
    field = TaskRecord._meta.get_field
    return [
        _pk(record.id),
        record.name,
        field("args").get_db_prep_value(record.args, connection),
        field("kwargs").get_db_prep_value(record.kwargs, connection),
        record.queue,
        record.max_attempts,
        _timestamp(record.eta) if record.eta else None,
        _timestamp(record.created_at),
        record.correlation_key,
        record.idempotency_key,
    ]


def task_enqueue_many(task, *, kwargs_list: Iterable[dict], correlation_keys: Iterable[str] | None = None) -> int:
    """Record many runs of one task in a single INSERT (fan-out), published by the dispatcher
    after commit."""
    kwargs_list = list(kwargs_list)
    keys = list(correlation_keys) if correlation_keys is not None else [""] * len(kwargs_list)
    records = [
        _new_record(task, args=(), kwargs=kwargs, correlation_key=key, idempotency_key=None, eta=None)
        for kwargs, key in zip(kwargs_list, keys, strict=True)
    ]
    TaskRecord.objects.bulk_create(records, batch_size=BATCH_SIZE)
    return len(records)


def publish_pause_remaining() -> float:
    """Seconds left of the pause after a failed publish (0 when publishing is not paused)."""
    return max(_publish_paused_until - time.monotonic(), 0.0)


def task_records_publish_pending(*, keep_going=lambda: True) -> int:
    """The dispatcher's full pass (at start and every TASKS_DISPATCH_POLL_SECONDS): publish the rows
    waiting to be sent, a batch per transaction, until none is left (or `keep_going()` says stop).
    Safe to run in several processes at once: each row is locked by the pass publishing it, and the
    others skip it.

    Waiting rows are `pending` ones due within MAX_BROKER_DELAY, oldest first, and `retrying` rows
    whose retry message the broker never took."""
    total = 0
    while True:
        now = timezone.now()
        with transaction.atomic():
            waiting = TaskRecord.objects.select_for_update(skip_locked=True)
            batch = list(
                waiting.filter(_due_soon(now), state=TaskState.PENDING).order_by("created_at")[:DISPATCH_BATCH_SIZE]
            )
            if len(batch) < DISPATCH_BATCH_SIZE:
                lost_retries = waiting.filter(state=TaskState.RETRYING, eta__lt=now - RETRY_REPUBLISH_GRACE)
                batch += lost_retries[: DISPATCH_BATCH_SIZE - len(batch)]
            sent = _publish(batch)
        total += sent
        if len(batch) < DISPATCH_BATCH_SIZE or publish_pause_remaining() or not keep_going():
            return total


def task_records_publish_notified(task_ids: Sequence[str], *, keep_going=lambda: True) -> int:
    """The dispatcher's pass for the rows its notifications named (the ledger's trigger sends each
    row's id; PostgreSQL only): publish those still `pending` and due soon, in the order given,
    found by primary key. Unlike the full pass, it never scans the `pending` rows, which after a
    busy spell drag the dead versions of every row that was pending behind them until VACUUM has
    run; and it is plain prepared SQL, as it runs for every few tasks."""
    total = 0
    for start in range(0, len(task_ids), DISPATCH_BATCH_SIZE):
        chunk = task_ids[start : start + DISPATCH_BATCH_SIZE]
        with transaction.atomic():
            horizon = _timestamp(timezone.now() + MAX_BROKER_DELAY)
            rows = _execute_prepared(_NOTIFIED_SQL, [[_pk(task_id) for task_id in chunk], horizon], fetch=True)
            by_id = {str(row[0]): _unsent_record(row) for row in rows}
            total += _publish([by_id[task_id] for task_id in chunk if task_id in by_id])
        if publish_pause_remaining() or not keep_going():
            break
    return total


_NOTIFIED_SQL = f"""
SELECT id, name, args, kwargs, queue, eta, attempts FROM {TaskRecord._meta.db_table}
 WHERE id = ANY(%s) AND state = 'pending' AND (eta IS NULL OR eta < %s)
   FOR UPDATE SKIP LOCKED
"""


def _unsent_record(row) -> TaskRecord:
    task_id, name, args, kwargs, queue, eta, attempts = row
    json_field = TaskRecord._meta.get_field("args")
    return TaskRecord(
        id=task_id,
        name=name,
        args=json_field.from_db_value(args, None, connection),
        kwargs=json_field.from_db_value(kwargs, None, connection),
        queue=queue,
        eta=eta,
        attempts=attempts,
    )


def _due_soon(now):
    return Q(eta__isnull=True) | Q(eta__lt=now + MAX_BROKER_DELAY)


def _publish(records: Sequence[TaskRecord]) -> int:
    """Publish the given rows to the broker and mark them `sent`, in the caller's transaction; only
    once RabbitMQ has confirmed every one of them. If the broker fails, none is marked: all stay
    for a later pass (one that reached a queue is then sent twice, its copy skipped by the worker's
    claim). A row that cannot be made into a message is failed, for an admin to look at, rather
    than holding up every row behind it forever."""
    global _publish_paused_until
    if not records or time.monotonic() < _publish_paused_until:
        return 0
    try:
        published, unpublishable = _publisher.publish(records)
    except Exception as exc:  # the broker refused or is unreachable: the rows wait for a later pass
        _publish_paused_until = time.monotonic() + PUBLISH_PAUSE_SECONDS
        log.warning("Publishing paused for %.0f s: %d tasks left unsent: %r", PUBLISH_PAUSE_SECONDS, len(records), exc)
        return 0
    for record, exc in unpublishable:
        log.error("Could not publish %s[%s]; failed it: %r", record.name, record.id, exc)
        task_record_fail(
            task_id=record.id,
            error_type=type(exc).__name__,
            error_message=f"Could not be published: {exc}"[:2000],
            traceback="".join(tb.format_exception(exc)),
        )
    if published:
        _records_mark_sent([record.id for record in published])
    return len(published)


# Errors of one message rather than of the broker (those fail the whole batch, which waits): its
# queue is not declared (Celery's QueueNotFound is a KeyError), its due time cannot be sent, its
# arguments cannot be serialized.
UNPUBLISHABLE_ERRORS = (LookupError, ValueError, TypeError, EncodeError)


class ConfirmedBatchPublisher:
    """The dispatcher's connection to RabbitMQ. A batch's messages are published one after the
    other, then RabbitMQ's confirms of all of them are awaited at once, instead of a round trip
    per message (measured by hand on this 2-core machine: 1,500–1,700 messages a second against 900).

    The connection is kept between batches, and opened again (once, at once) when a batch finds
    it broken. Transports without publisher confirms (the filesystem fallback) publish plainly.
    """

    # RabbitMQ confirms a batch within milliseconds; a stalled broker fails it after this long
    # (within the dispatcher's 30-second stop grace even with the retry on a new connection).
    CONFIRM_TIMEOUT_SECONDS = 10.0

    def __init__(self):
        self._connection = None
        self._url = None
        self._unconfirmed: set[int] = set()  # delivery tags published and not yet acked
        self._refused = False  # RabbitMQ nacked one of them
        self._next_tag = 1
        self._confirmed = False  # the connection's transport has publisher confirms (AMQP)

    def publish(self, records: Sequence[TaskRecord]) -> tuple[list, list]:
        """Publish the records' messages and return once RabbitMQ confirmed all of them: the
        records published, and (record, error) for those that could not be made into a message.
        Raises if the broker failed."""
        reused = self._connection is not None and self._url == app.conf.broker_write_url
        try:
            return self._publish_batch(records)
        except Exception:
            self.close()
            if not reused:
                raise
            return self._publish_batch(records)  # the kept connection was stale (the broker restarted)

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None

    def _publish_batch(self, records) -> tuple[list, list]:
        connection = self._connect()
        producer = Producer(connection.default_channel)
        confirmed = self._confirmed
        self._refused = False
        published, unpublishable = [], []
        for record in records:
            tag = self._next_tag
            if confirmed:  # before publishing: its confirm may be read while the next is published
                self._unconfirmed.add(tag)
            try:
                app.send_task(
                    record.name,
                    args=record.args,
                    kwargs=record.kwargs,
                    task_id=str(record.id),
                    queue=record.queue,
                    eta=_broker_eta(record.eta, now=timezone.now()),
                    retries=record.attempts,
                    producer=producer,
                    retry=False,  # a broken connection fails the batch, which is then published again
                    headers={"published_at": time.time()},  # for the queue-wait metric
                )
            except UNPUBLISHABLE_ERRORS as exc:  # refused before it reached the broker
                self._unconfirmed.discard(tag)
                unpublishable.append((record, exc))
                continue
            self._next_tag += 1
            published.append(record)
        if confirmed:
            self._await_confirms(connection)
        return published, unpublishable

    def _await_confirms(self, connection) -> None:
        deadline = time.monotonic() + self.CONFIRM_TIMEOUT_SECONDS
        while self._unconfirmed and not self._refused:
            connection.drain_events(timeout=max(deadline - time.monotonic(), 0.001))  # raises on timeout
        if self._refused:
            raise RuntimeError("RabbitMQ refused (nacked) a message of the batch")

    def _connect(self):
        url = app.conf.broker_write_url
        if self._connection is not None and self._url != url:
            self.close()  # the settings point elsewhere now
        if self._connection is None:
            # Confirms are asked for per batch here, not waited for per message as the app's own
            # connections do (CELERY_BROKER_TRANSPORT_OPTIONS).
            connection = app.connection_for_write(transport_options={"confirm_publish": False}, heartbeat=0)
            connection.ensure_connection(max_retries=0)  # a failure pauses publishing (PUBLISH_PAUSE_SECONDS)
            self._confirmed = connection.transport.driver_type == "amqp"
            if self._confirmed:
                channel = connection.default_channel
                channel.events["basic_ack"].add(self._on_ack)
                channel.events["basic_nack"].add(self._on_nack)
                channel.confirm_select()
            self._connection, self._url = connection, url
            self._unconfirmed.clear()
            self._next_tag = 1  # delivery tags count from 1 on each channel
        return self._connection

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._unconfirmed = {tag for tag in self._unconfirmed if tag > delivery_tag}
        else:
            self._unconfirmed.discard(delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._refused = True
        self._on_ack(delivery_tag, multiple)


_publisher = ConfirmedBatchPublisher()


def publishing_stop() -> None:
    """Close the broker connection the passes publish on (the dispatcher is exiting)."""
    _publisher.close()


_MARK_SENT_SQL = f"""
UPDATE {TaskRecord._meta.db_table} SET state = 'sent', sent_at = %s
 WHERE id IN (<ids>) AND state IN ('pending', 'retrying')
"""


def _records_mark_sent(ids: list) -> None:
    sql = _MARK_SENT_SQL.replace("<ids>", ", ".join(["%s"] * len(ids)))  # a placeholder per id
    _execute_prepared(sql, [_timestamp(timezone.now()), *(_pk(task_id) for task_id in ids)])


def _broker_eta(eta: datetime | None, *, now: datetime) -> datetime | None:
    """The due time to publish: none when already due, never less than MIN_BROKER_DELAY ahead."""
    if eta is None or eta <= now:
        return None
    return max(eta, now + MIN_BROKER_DELAY)


# --- The worker's bookkeeping -----------------------------------------------------------------


# The worker's two writes per run are plain SQL, prepared on PostgreSQL: they run for every task,
# and compiling them through the ORM and planning them each time cost more than running them
# (measured here: about 1 ms each through the ORM, 0.25 ms prepared). Worker processes run them
# on a connection of their own, and do not wait for the second (WorkerLedgerConnection, below).
#
# On PostgreSQL, run on their own, they also commit without waiting for the WAL to reach the disk
# (synchronous_commit off for that one statement: _ASYNC_COMMIT): the flush wait tripled their cost under
# load (measured: 2.4 ms a statement against 0.5 ms). Nothing is weakened for the task's own work:
# its next synchronous commit (the task body's, normally) flushes the bookkeeping written before
# it. Only a crash of the PostgreSQL server itself can lose the last fraction of a second of
# bookkeeping, and what that looks like is already handled: a run left `started` is failed as
# lost by task_records_recover_stuck, for an admin to look at; it is never run twice.
_CLAIM_SQL = f"""
UPDATE {TaskRecord._meta.db_table}
   SET state = 'started', attempts = attempts + 1, started_at = %s,
       -- a publisher marking the row sent may commit just after this run began: never sent after started
       sent_at = CASE WHEN sent_at IS NULL OR sent_at > %s THEN %s ELSE sent_at END,
       finished_at = NULL, worker = %s
 WHERE id = %s
   AND attempts < max_attempts
       -- not yet started at this attempt; `started` if the run before it could not record its end
       -- (database down): only that run, once over, or its worker publishes a retry this far on
   AND ((state IN ('pending', 'sent', 'retrying', 'started') AND attempts <= %s)
        -- redelivered: its worker died, or lost the broker and cancelled the run (recorded `retrying`)
        OR (state IN ('started', 'retrying') AND %s))
   AND {{async_commit}}
"""
_SUCCEED_SQL = f"""
UPDATE {TaskRecord._meta.db_table} SET state = 'succeeded', finished_at = %s, runtime = %s
 WHERE id = %s AND {{async_commit}}
"""
# A condition that is always true and, as it is evaluated, turns synchronous_commit off until the
# statement's own (autocommit) transaction ends.
_ASYNC_COMMIT = "(SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL"


def _execute_per_task(sql: str, params: list) -> int:
    """Run one of the worker's per-task statements on Django's connection (so in its transaction,
    if any) and return the number of rows it changed."""
    # Inside the caller's transaction, the caller's commit decides; setting it would weaken theirs.
    on_its_own = connection.vendor == "postgresql" and not connection.in_atomic_block
    return _execute_prepared(sql.format(async_commit=_ASYNC_COMMIT if on_its_own else "1 = 1"), params)


def _execute_prepared(sql: str, params: list, *, fetch: bool = False):
    """Run `sql` on Django's connection (so in its transaction, if any), prepared on PostgreSQL
    (settings: DATABASE_PREPARED_STATEMENTS); returns the number of rows it changed, or with
    `fetch` the rows it returned."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if fetch else cursor.rowcount
    connection.ensure_connection()
    # Django's own cursors bind on the client, which rules out prepared statements.
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchall() if fetch else cursor.rowcount


def _pk(task_id):
    return TaskRecord._meta.pk.get_db_prep_value(task_id, connection)


def _timestamp(moment):
    return connection.ops.adapt_datetimefield_value(moment)


def task_record_start(*, task, task_id: str, args, kwargs, retries: int, redelivered: bool, worker: str) -> bool:
    """Mark the run started; False when it must not run (cancelled, finished, a duplicate message
    for a run already started, or out of attempts).

    One conditional UPDATE decides, so two deliveries of the same message can never both run.
    A message redelivered by RabbitMQ may take over a `started` row (its worker died) or a
    `retrying` one (its worker lost the broker connection, cancelled the run and recorded a retry,
    but the retry is this redelivery: no other message was published). A retry message may take
    over a `started` row its previous run left when the database was down as it ended.
    """
    now = timezone.now()
    params = [_timestamp(now)] * 3 + [worker, _pk(task_id), retries, bool(redelivered)]
    changed = worker_ledger.claim(params)
    if changed is None:
        changed = _execute_per_task(_CLAIM_SQL, params)
    if changed == 1:
        return True
    record = TaskRecord.objects.filter(id=task_id).only("state", "attempts", "max_attempts").first()
    if record is None:
        return _record_unrecorded_start(task=task, task_id=task_id, args=args, kwargs=kwargs, worker=worker, now=now)
    if record.state in OPEN_STATES and record.attempts >= record.max_attempts:
        task_record_fail(
            task_id=task_id,
            error_type="AttemptsExhausted",
            error_message=f"Gave up after {record.attempts} attempts (its worker was lost each time).",
            traceback="",
        )
    else:
        log.info(
            "Skipping %s[%s]: its record is %s after %d attempts", task.name, task_id, record.state, record.attempts
        )
    return False


def _record_unrecorded_start(*, task, task_id, args, kwargs, worker, now) -> bool:
    """A task published outside the platform (a plain .delay(), beat's "run now") is recorded
    when it starts; of two copies arriving at once, only the one that inserts runs."""
    record = _new_record(task, args=args, kwargs=kwargs, correlation_key="", idempotency_key=None, eta=None)
    record.id, record.state, record.attempts, record.worker = task_id, TaskState.STARTED, 1, worker
    record.sent_at = record.started_at = now
    try:
        with transaction.atomic():
            record.save(force_insert=True)
    except IntegrityError:
        return False
    return True


def task_record_succeed(*, task_id: str, runtime: float) -> None:
    params = [_timestamp(timezone.now()), runtime, _pk(task_id)]
    if not worker_ledger.send_success(task_id, params):
        _execute_per_task(_SUCCEED_SQL, params)


LEDGER_APPLICATION_NAME = "tasks-worker-ledger"


class WorkerLedgerConnection:
    """A prefork worker process's own connection for the two statements of every run, driven
    through libpq directly: the claim, whose answer it waits for, and the success write, whose
    answer it reads only at the next claim.

    A run's end then costs no round trip, and neither statement goes through the cursor machinery
    of psycopg and Django. Measured here on the drain benchmark (docs/benchmarks.md): the platform
    went from about 0.76 of plain Celery's rate to about 0.795. With PostgreSQL on another host,
    each round trip saved is worth more.

    Nothing is weakened. The success write is with the kernel, on its way to PostgreSQL, before
    the task returns and so before its message is acknowledged; a process killed just after still
    delivers it (TCP sends what was written before the socket closes), and PostgreSQL runs it as
    it reads it. If its answer says it failed, or the connection broke first, it is written again
    on a new connection, waited for; if PostgreSQL is down, the row stays `started`, as it did when
    the write was waited for, and task_records_recover_stuck fails it as lost. A claim that fails
    is reported as the database error it is, so the run is retried later, as on Django's
    connection (it is never sent twice: the first may have been run).

    Started by the worker_process_init signal (tasks.base), so used in prefork worker processes
    only: web and test processes, and statements inside a transaction, use Django's connection.
    Each worker process holds this connection besides Django's (docs/operations.md).
    """

    def __init__(self):
        self._started_in_pid = None
        self._database = None  # a DatabaseWrapper of its own, outside Django's per-thread connections
        self._in_flight = None  # (task id, params) of the success write whose answer is unread
        self._prepared = False

    def start(self) -> None:
        if connection.vendor == "postgresql":
            self._started_in_pid = os.getpid()

    def stop(self) -> None:
        """Read the last answer and close (the worker process is exiting)."""
        self.settle()
        self._close()
        self._started_in_pid = None

    def claim(self, params: list) -> int | None:
        """Run the claim and return the number of rows it changed; None when this process does
        not use this connection (the caller runs it on Django's)."""
        if not self._in_use():
            return None
        self.settle()
        # A claim may follow a long idle spell; a success write follows its claim, and one that
        # finds the connection closed is written again anyway (settle), so only claims check.
        if self._database is not None and self._was_closed_by_the_server():
            self._close()
        try:
            self._send(_CLAIM_SQL, params)
            return self._rows_changed()
        except psycopg.Error as exc:
            self._close()
            raise OperationalError(f"Claiming the run failed: {exc}") from exc

    def send_success(self, task_id, params: list) -> bool:
        """Send the success write without waiting for its answer; False when this process does
        not use this connection (the caller writes it on Django's)."""
        if not self._in_use():
            return False
        self.settle()
        self._write_success(task_id, params, wait=False)
        return True

    def settle(self) -> None:
        """Read the answer to the success write in flight; write it again if it did not succeed."""
        if self._in_flight is None or not self._in_use():
            return
        task_id, params = self._in_flight
        self._in_flight = None
        try:
            self._rows_changed()
        except psycopg.Error as exc:
            log.warning("The success of %s was not recorded (%s); writing it again", task_id, exc)
            self._close()
            self._write_success(task_id, params, wait=True)

    def _write_success(self, task_id, params: list, *, wait: bool) -> None:
        """Send the success write, on a new connection if this one turns out broken (the write
        changes nothing when made twice); waiting for its answer, or leaving it in flight."""
        for attempt in (1, 2):
            try:
                self._send(_SUCCEED_SQL, params)
                if wait:
                    self._rows_changed()
                else:
                    self._in_flight = (task_id, params)
                return
            except psycopg.Error as exc:
                self._close()
                if attempt == 2:
                    log.error("Could not record the success of %s; its row stays started: %r", task_id, exc)

    def _in_use(self) -> bool:
        # In a transaction, the caller's connection decides.
        return self._started_in_pid == os.getpid() and not connection.in_atomic_block

    def _send(self, sql: str, params: list) -> None:
        pgconn = self._connection()
        values = [_text(value) for value in params]
        if self._prepared:
            pgconn.send_query_prepared(_LEDGER_STATEMENT_NAMES[sql], values)
        else:
            pgconn.send_query_params(_libpq_sql(sql), values)
        pgconn.flush()  # a blocking connection: returns once all of it is with the kernel

    def _rows_changed(self) -> int:
        """Read one statement's answer, waiting for it if need be."""
        pgconn = self._database.connection.pgconn
        answers = []
        while True:
            # libpq's own blocking read would hold the GIL and defer signal handlers (the soft
            # time limit) for as long as it waits: wait in select() instead, as psycopg does.
            while pgconn.is_busy():
                select.select([pgconn.socket], [], [])
                pgconn.consume_input()
            answer = pgconn.get_result()
            if answer is None:
                break
            answers.append(answer)
        failed = [answer for answer in answers if answer.status != pq.ExecStatus.COMMAND_OK]
        if failed or not answers:
            message = failed[0].error_message.decode(errors="replace") if failed else "no answer"
            raise psycopg.OperationalError(message.strip() or pgconn.error_message.decode(errors="replace"))
        return int(answers[0].command_tuples or 0)

    def _connection(self):
        """The connection, opened if it is not (again, after _close)."""
        if self._database is None:
            database = connections.create_connection(DEFAULT_DB_ALIAS)
            try:
                database.ensure_connection()
                self._prepare(database.connection.pgconn, database.settings_dict["OPTIONS"])
            except (DatabaseError, psycopg.Error) as exc:
                with contextlib.suppress(DatabaseError):
                    database.close()
                raise psycopg.OperationalError(f"Could not open the ledger connection: {exc}") from exc
            self._database = database
        return self._database.connection.pgconn

    def _was_closed_by_the_server(self) -> bool:
        # Between statements PostgreSQL has nothing to say, except as it closes the connection
        # (a restart, an idle timeout, pg_terminate_backend): then there is something to read.
        try:
            readable, _, _ = select.select([self._database.connection.pgconn.socket], [], [], 0)
        except (psycopg.Error, OSError):
            return True
        return bool(readable)

    def _prepare(self, pgconn, options) -> None:
        pgconn.nonblocking = 0  # only this class uses it: plain blocking libpq calls
        # Named, so that ops can tell these connections apart in pg_stat_activity.
        setup = [pgconn.exec_(f"SET application_name = '{LEDGER_APPLICATION_NAME}'".encode())]
        # As Django's connection: prepared unless the settings say no (DATABASE_PREPARED_STATEMENTS).
        self._prepared = options.get("prepare_threshold") is not None
        if self._prepared:
            setup += [pgconn.prepare(name, _libpq_sql(sql)) for sql, name in _LEDGER_STATEMENT_NAMES.items()]
        for answer in setup:
            if answer.status != pq.ExecStatus.COMMAND_OK:
                raise psycopg.OperationalError(answer.error_message.decode(errors="replace"))

    def _close(self) -> None:
        if self._database is not None:
            with contextlib.suppress(DatabaseError):  # already broken
                self._database.close()
            self._database = None


_LEDGER_STATEMENT_NAMES = {_CLAIM_SQL: b"tasks_record_claim", _SUCCEED_SQL: b"tasks_record_succeed"}


def _libpq_sql(sql: str) -> bytes:
    """A per-task statement as libpq takes it: run on its own (so committed without waiting for
    the disk, see _ASYNC_COMMIT), psycopg's %s placeholders numbered $1, $2..."""
    first, *rest = sql.format(async_commit=_ASYNC_COMMIT).split("%s")
    return (first + "".join(f"${number}{part}" for number, part in enumerate(rest, start=1))).encode()


def _text(value) -> bytes | None:
    """A parameter in PostgreSQL's text format."""
    if value is None:
        return None
    if isinstance(value, bool):
        return b"true" if value else b"false"
    return (value.isoformat() if isinstance(value, datetime) else str(value)).encode()


worker_ledger = WorkerLedgerConnection()


def task_record_retrying(
    *, task_id: str, eta: datetime, error_type: str, error_message: str, traceback: str, runtime=None
) -> None:
    TaskRecord.objects.filter(id=task_id).exclude(state=TaskState.CANCELLED).update(
        state=TaskState.RETRYING,
        eta=eta,
        runtime=runtime,
        error_type=error_type,
        error_message=error_message,
        traceback=traceback,
    )


def task_record_fail(*, task_id: str, error_type: str, error_message: str, traceback: str, runtime=None) -> None:
    TaskRecord.objects.filter(id=task_id).update(
        state=TaskState.FAILED,
        finished_at=timezone.now(),
        runtime=runtime,
        error_type=error_type,
        error_message=error_message,
        traceback=traceback,
    )


# --- What admins and ops do -------------------------------------------------------------------


def task_records_retry(*, records, user=None) -> int:
    """Run finished or cancelled tasks again with their stored arguments, recording who asked.

    Each gets a fresh set of attempts; the dispatcher publishes them after commit.
    """
    now = timezone.now()
    with transaction.atomic():
        # Lock only the ledger rows: the caller's queryset may join nullable relations (the admin's
        # does), and PostgreSQL refuses FOR UPDATE on the nullable side of an outer join.
        chosen = list(records.select_for_update(of=("self",)).exclude(state__in=OPEN_STATES))
        for record in chosen:
            record.state = TaskState.PENDING
            record.attempts = 0
            record.eta = None
            record.sent_at = record.started_at = record.finished_at = None
            record.manual_retries += 1
            record.retried_by = user
            record.retried_at = now
        TaskRecord.objects.bulk_update(
            chosen,
            [
                "state",
                "attempts",
                "eta",
                "sent_at",
                "started_at",
                "finished_at",
                "manual_retries",
                "retried_by",
                "retried_at",
            ],
            batch_size=BATCH_SIZE,
        )
    return len(chosen)


def task_records_cancel(*, records, user=None) -> int:
    """Cancel tasks that have not started: their record says `cancelled`, so no worker runs them
    (the worker checks the record before running); the messages are also revoked."""
    now = timezone.now()
    waiting = [TaskState.PENDING, TaskState.SENT, TaskState.RETRYING]
    with transaction.atomic():
        ids = list(records.select_for_update(of=("self",)).filter(state__in=waiting).values_list("id", flat=True))
        TaskRecord.objects.filter(id__in=ids).update(
            state=TaskState.CANCELLED, cancelled_by=user, cancelled_at=now, finished_at=now
        )
    if ids:
        try:
            app.control.revoke([str(task_id) for task_id in ids])
        except Exception as exc:  # the record already stops the run; revoking only spares a delivery
            log.warning("Could not broadcast revoke for %d cancelled tasks: %r", len(ids), exc)
    return len(ids)


def task_records_recover_stuck() -> int:
    """Fail rows still `started` well past their hard time limit: their worker died and nothing
    redelivered them. They are failed, not re-run, so an admin decides (the run may have done
    its work before dying); they show up among the dead letters."""
    cutoff = timezone.now() - timedelta(seconds=app.conf.task_time_limit + 5 * 60)
    stuck = TaskRecord.objects.filter(state=TaskState.STARTED, started_at__lt=cutoff)
    total = 0
    while ids := list(stuck.values_list("id", flat=True)[:BATCH_SIZE]):
        total += TaskRecord.objects.filter(id__in=ids, state=TaskState.STARTED).update(
            state=TaskState.FAILED,
            finished_at=timezone.now(),
            error_type="Lost",
            error_message="Still marked started long after its time limit: its worker was lost.",
        )
    return total


def task_records_purge_finished() -> int:
    """Delete finished rows older than the retention, a batch at a time."""
    cutoff = timezone.now() - timedelta(days=settings.TASKS_FINISHED_RETENTION_DAYS)
    old = TaskRecord.objects.finished_before(cutoff)
    total = 0
    while ids := list(old.values_list("id", flat=True)[:BATCH_SIZE]):
        total += TaskRecord.objects.filter(id__in=ids).delete()[0]
    return total
