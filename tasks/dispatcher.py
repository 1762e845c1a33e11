"""The dispatcher: the process that publishes the task ledger's `pending` rows to RabbitMQ.

Enqueueing only writes a row, in the caller's transaction. When such a transaction commits, a
trigger on the ledger (migration 0003) sends a PostgreSQL notification; the dispatcher, which
LISTENs for it, wakes and publishes every waiting row in batches (services.task_records_publish_pending),
each publish confirmed by RabbitMQ. It also makes a pass every `poll_seconds` without being woken:
for rows whose delay comes due, retries the broker never took, rows left while RabbitMQ or the
dispatcher itself was down, and databases that cannot notify (the SQLite fallback).

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

import psycopg
from django.db import DEFAULT_DB_ALIAS, DatabaseError, close_old_connections, connection, connections

from tasks import services

log = logging.getLogger(__name__)

# The channel the ledger's trigger notifies (migration 0003).
CHANNEL = "tasks_pending"
# After a database error, the dispatcher waits this long before trying again.
RECONNECT_SECONDS = 2.0
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

    def run(self) -> None:
        """Publish until SIGTERM or SIGINT; the batch in progress is finished first."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        log.info("Dispatcher started: waking on %r notifications, and every %.0f s", CHANNEL, self.poll_seconds)
        while not self._stopping:
            try:
                self._listen()
                self._pass()
                self._wait(self.poll_seconds)
            except (DatabaseError, psycopg.Error) as exc:
                log.warning("The database is unreachable (%s); trying again in %.0f s", exc, RECONNECT_SECONDS)
                self._close_listener()
                close_old_connections()
                self._wait(RECONNECT_SECONDS)
        self._close_listener()
        connection.close()
        services.publishing_stop()
        self._report(force=True)
        log.info("Dispatcher stopped")

    def _stop(self, signum, frame) -> None:
        self._stopping = True
        os.write(self._wake_write, b"x")

    def _pass(self) -> None:
        """Publish everything waiting. Listening starts before the pass, so a row committed during
        it is either seen by it or notified after it."""
        # After a failed publish the broker is left alone for a few seconds: each notification in
        # the meantime would only find publishing paused. They are read after it.
        self._wait(services.publish_pause_remaining(), notifications=False)
        published = services.task_records_publish_pending(keep_going=lambda: not self._stopping)
        self._published_since_report += published
        self._report()

    def _report(self, *, force: bool = False) -> None:
        if force or time.monotonic() - self._last_report >= REPORT_EVERY_SECONDS:
            if self._published_since_report:
                log.info("Published %d tasks", self._published_since_report)
            self._published_since_report = 0
            self._last_report = time.monotonic()

    def _listen(self) -> None:
        if self._listener is not None or connection.vendor != "postgresql":
            return  # listening already, or the database cannot notify: polling only
        listener = connections.create_connection(DEFAULT_DB_ALIAS)
        listener.ensure_connection()  # autocommit, as Django leaves it
        listener.connection.execute(f"LISTEN {CHANNEL}")
        self._listener = listener

    def _wait(self, timeout: float, *, notifications: bool = True) -> None:
        """Until a notification (if `notifications`), a stop signal or `timeout` seconds."""
        if self._stopping or timeout <= 0:
            return
        watched = [self._wake_read]
        if self._listener is not None and notifications:
            watched.append(self._listener.connection.pgconn.socket)
        ready, _, _ = select.select(watched, [], [], timeout)
        if len(watched) > 1 and ready and self._wake_read not in ready:
            self._drain_notifications()

    def _drain_notifications(self) -> None:
        """Read every notification that arrived: one pass publishes whatever they announced."""
        pgconn = self._listener.connection.pgconn
        pgconn.consume_input()  # raises if the connection broke
        while pgconn.notifies() is not None:
            pass

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(DatabaseError):  # already broken
                self._listener.close()
            self._listener = None
