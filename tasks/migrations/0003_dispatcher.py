"""The dispatcher (tasks.dispatcher) publishes pending rows: a trigger wakes it when a transaction
that made a row `pending` commits, and its polling replaces the periodic sweeper job."""

from django.db import migrations

# A notification sent inside a transaction is delivered when it commits (never for a rollback).
# It names the row, so the dispatcher finds it by primary key instead of scanning the pending rows.
# Row-level with WHEN, so that the worker's claims and successes (never `pending`) do not call the
# function at all.
CREATE_TRIGGER = """
CREATE OR REPLACE FUNCTION tasks_taskrecord_notify_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tasks_pending', NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER tasks_taskrecord_notify_pending
    AFTER INSERT OR UPDATE OF state ON tasks_taskrecord
    FOR EACH ROW WHEN (NEW.state = 'pending')
    EXECUTE FUNCTION tasks_taskrecord_notify_pending();
"""
DROP_TRIGGER = """
DROP TRIGGER IF EXISTS tasks_taskrecord_notify_pending ON tasks_taskrecord;
DROP FUNCTION IF EXISTS tasks_taskrecord_notify_pending();
"""
# Declared in config/schedule.py until the dispatcher took its work over.
SWEEPER_JOB = "every-minute-publish-pending-tasks"


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":  # elsewhere the dispatcher only polls
        schema_editor.execute(CREATE_TRIGGER)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRIGGER)


def remove_sweeper_job(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=SWEEPER_JOB).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0002_lean_indexes"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(create_trigger, drop_trigger),
        # Not put back on the way down: beat's start-up sync writes the declared jobs again.
        migrations.RunPython(remove_sweeper_job, migrations.RunPython.noop),
    ]
