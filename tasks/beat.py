"""Celery beat for the platform: django-celery-beat's database schedule (editable in the admin),
sent by exactly one beat process at a time, through the task ledger."""

import contextlib
import logging
import zlib

from django.db import connection
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry

from config.celery import app
from tasks.base import PlatformTask
from tasks.services import task_enqueue

log = logging.getLogger(__name__)

# The PostgreSQL advisory lock held by the one beat that sends jobs.
LEADER_LOCK_KEY = zlib.crc32(b"crowdfund-beat-leader")
# How often a standby beat asks for the lock.
STANDBY_INTERVAL = 5.0


def periodic_jobs_sync() -> None:
    """Write the jobs declared in config/schedule.py to the database (new ones, changed schedules),
    leaving each job's enabled flag as an admin last set it."""
    for name, fields in app.conf.beat_schedule.items():
        ModelEntry.from_entry(name, app=app, **fields)


class LeaderDatabaseScheduler(DatabaseScheduler):
    """Only the beat holding a PostgreSQL advisory lock sends jobs; a second beat started by
    mistake waits as a standby and takes over if the first dies (its lock dies with its
    connection). Each send also carries an idempotency key naming the period, so even two
    leaders at once could not enqueue the same run twice. Entries are saved after every send,
    so a new leader starts from the last run the old one recorded."""

    def __init__(self, *args, **kwargs):
        self._lock_connection = None
        kwargs.setdefault("sync_every_tasks", 1)
        super().__init__(*args, **kwargs)

    def tick(self, *args, **kwargs):
        if not self._hold_leadership():
            return STANDBY_INTERVAL
        return super().tick(*args, **kwargs)

    def _hold_leadership(self) -> bool:
        if connection.vendor != "postgresql":
            return True  # the SQLite fallback runs on one machine with one beat
        if self._lock_connection is not None:
            try:
                self._lock_connection.execute("SELECT 1")
                return True
            except Exception:
                log.warning("Beat lost its leader lock connection; standing by")
                self._drop_lock_connection()
        return self._try_become_leader()

    def _try_become_leader(self) -> bool:
        try:
            lock_connection = connection.get_new_connection(connection.get_connection_params())
            lock_connection.autocommit = True
            acquired = lock_connection.execute("SELECT pg_try_advisory_lock(%s)", [LEADER_LOCK_KEY]).fetchone()[0]
        except Exception as exc:
            log.warning("Beat could not reach PostgreSQL for its leader lock: %r", exc)
            return False
        if not acquired:
            lock_connection.close()
            return False
        log.info("This beat is now the leader and sends the periodic jobs")
        self._lock_connection = lock_connection
        self._initial_read = True  # reread every entry: the old leader may have sent jobs since
        self._heap = None
        return True

    def _drop_lock_connection(self) -> None:
        with contextlib.suppress(Exception):
            self._lock_connection.close()
        self._lock_connection = None

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        task = self.app.tasks.get(entry.task)
        if not isinstance(task, PlatformTask):
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        key = f"beat:{entry.name}:{entry.last_run_at.isoformat()}" if entry.last_run_at else None
        entry = self.reserve(entry) if advance else entry
        try:
            return task_enqueue(
                task, args=entry.args, kwargs=entry.kwargs, idempotency_key=key, correlation_key=f"beat:{entry.name}"
            )
        finally:
            self._tasks_since_sync += 1
            if self.should_sync():
                self._do_sync()
