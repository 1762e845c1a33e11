"""The dispatcher: the process that publishes the task ledger's `pending` rows to RabbitMQ.

Enqueueing only writes a row, in the caller's transaction. When such a transaction commits, a
trigger on the ledger (migration 0003) sends a PostgreSQL notification naming each row; the
dispatcher, which LISTENs for them, wakes and publishes those rows in batches
(services.task_records_publish_notified), each batch confirmed by RabbitMQ. It also makes a full
pass over the ledger every `poll_seconds` (services.task_records_publish_pending): for rows whose
delay comes due, retries the broker never took, rows left while RabbitMQ or the dispatcher itself
was down, and databases that cannot notify (the SQLite fallback).

Several dispatchers may run at once (one per host, for availability): a row is locked by the pass
publishing it and skipped by the others. A dispatcher that dies mid-batch leaves its rows
`pending` (its transaction rolls back), so the next pass publishes them again; a message published
twice is run once (the worker's claim skips the copy).
"""

import contextlib
import logging
import os
import select
import signal
import time
import uuid

import psycopg
from django.db import DEFAULT_DB_ALIAS, DatabaseError, close_old_connections, connection, connections

from tasks import services

log = logging.getLogger(__name__)

# The channel the ledger's trigger notifies (migration 0003).
CHANNEL = "tasks_pending"
# After a database error, the dispatcher waits this long before trying again.
RECONNECT_SECONDS = 2.0
# Woken by a notification within this long of the last one, the dispatcher waits this much longer
# before its pass: under load, a pass then publishes many tasks instead of one (a pass costs about
# 2 ms of CPU whatever its size; measured at 400 webhooks/s). A task arriving after a quiet spell
# (the next link of a chain, say) is published at once.
GATHER_SECONDS = 0.02
# How often the dispatcher logs how many tasks it published.
REPORT_EVERY_SECONDS = 60.0


class Dispatcher:
    def __init__(self, *, poll_seconds: float):
        self.poll_seconds = poll_seconds
        self._listener = None  # a DatabaseWrapper of its own, LISTENing on CHANNEL
        self._stopping = False
        # SIGTERM and SIGINT write here, which ends the wait at once (select() would otherwise be
        # resumed after the handler, and the stop would wait for the poll timeout).
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._published_since_report = 0
        self._last_report = time.monotonic()
        self._last_woken = 0.0  # when a notification last woke it

    def run(self) -> None:
        """Publish until SIGTERM or SIGINT; the batch in progress is finished first."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        log.info("Dispatcher started: waking on %r notifications, and every %.0f s", CHANNEL, self.poll_seconds)
        next_full_pass = 0.0
        while not self._stopping:
            try:
                if self._listen():
                    next_full_pass = 0.0  # rows committed before it listened were announced to nobody
                # After a failed publish the broker is left alone for a few seconds: notifications
                # in the meantime would only find publishing paused. They are read after it.
                self._wait(services.publish_pause_remaining(), notifications=False)
                if time.monotonic() >= next_full_pass:
                    self._count(services.task_records_publish_pending(keep_going=self._keep_going))
                    next_full_pass = time.monotonic() + self.poll_seconds
                notified = self._wait(next_full_pass - time.monotonic())
                if notified:
                    self._count(services.task_records_publish_notified(notified, keep_going=self._keep_going))
                    if services.publish_pause_remaining():
                        next_full_pass = 0.0  # what the pause left unsent, once it is over
            except (DatabaseError, psycopg.Error) as exc:
                log.warning("The database is unreachable (%s); trying again in %.0f s", exc, RECONNECT_SECONDS)
                self._close_listener()
                close_old_connections()
                self._wait(RECONNECT_SECONDS, notifications=False)
        self._close_listener()
        connection.close()
        services.publishing_stop()
        self._report(force=True)
        log.info("Dispatcher stopped")

    def _stop(self, signum, frame) -> None:
        self._stopping = True
        os.write(self._wake_write, b"x")

    def _keep_going(self) -> bool:
        return not self._stopping

    def _count(self, published: int) -> None:
        self._published_since_report += published
        self._report()

    def _report(self, *, force: bool = False) -> None:
        if force or time.monotonic() - self._last_report >= REPORT_EVERY_SECONDS:
            if self._published_since_report:
                log.info("Published %d tasks", self._published_since_report)
            self._published_since_report = 0
            self._last_report = time.monotonic()

    def _listen(self) -> bool:
        """Start listening if not yet (True when it just did)."""
        if self._listener is not None or connection.vendor != "postgresql":
            return False  # listening already, or the database cannot notify: polling only
        listener = connections.create_connection(DEFAULT_DB_ALIAS)
        listener.ensure_connection()  # autocommit, as Django leaves it
        listener.connection.execute(f"LISTEN {CHANNEL}")
        self._listener = listener
        return True

    def _wait(self, timeout: float, *, notifications: bool = True) -> list[str]:
        """Until notifications (if `notifications`), a stop signal or `timeout` seconds; returns
        the task ids the notifications named, in the order their transactions committed."""
        if self._stopping or timeout <= 0:
            return []
        watched = [self._wake_read]
        if self._listener is not None and notifications:
            watched.append(self._listener.connection.pgconn.socket)
        ready, _, _ = select.select(watched, [], [], timeout)
        if len(watched) == 1 or not ready or self._wake_read in ready:
            return []
        if time.monotonic() - self._last_woken < GATHER_SECONDS:
            # Busy (woken again within moments): let the commits right behind this one arrive
            # too, so that one pass publishes them all.
            select.select([self._wake_read], [], [], GATHER_SECONDS)
        self._last_woken = time.monotonic()
        return self._read_notifications()

    def _read_notifications(self) -> list[str]:
        """Every notification that has arrived, without waiting for more."""
        pgconn = self._listener.connection.pgconn
        pgconn.consume_input()  # raises if the connection broke
        task_ids = []
        while (notification := pgconn.notifies()) is not None:
            payload = notification.extra.decode(errors="replace")
            try:
                task_ids.append(str(uuid.UUID(payload)))
            except ValueError:  # not the trigger's; the next full pass publishes whatever is waiting
                log.warning("Ignored a %r notification that names no task: %r", CHANNEL, payload[:100])
        return task_ids

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(DatabaseError):  # already broken
                self._listener.close()
            self._listener = None
