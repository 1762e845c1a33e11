"""The Celery app: JSON only, late acks, bounded redelivery, durable queues, confirmed publishes."""

import os

from celery import Celery

# Before config.queues, which reads the queue type (CELERY_QUEUE_TYPE) from the settings.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config import queues, schedule  # noqa: E402

app = Celery("crowdfund")
# CELERY_-prefixed Django settings (broker URL, concurrency, time limits, transport options).
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    event_serializer="json",
    # No result backend: outcomes live in the task ledger (tasks.models.TaskRecord).
    task_ignore_result=True,
    result_expires=None,  # nothing to clean up, so beat gets no celery.backend_cleanup job
    task_store_errors_even_if_ignored=False,
    # A task is acknowledged only once it has finished; if its worker process dies, Celery sends
    # it again as a retry, so max_retries bounds the redeliveries (a message that kills its
    # worker every time ends failed instead of looping forever).
    task_acks_late=True,
    task_retry_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_queues=queues.TASK_QUEUES,
    task_default_queue=queues.DEFAULT,
    task_default_exchange=queues.DEFAULT,
    task_default_exchange_type=queues.EXCHANGE_TYPE,
    task_default_routing_key=queues.DEFAULT,
    task_create_missing_queues=False,
    task_routes=queues.TASK_ROUTES,
    task_default_delivery_mode="persistent",
    broker_connection_retry_on_startup=True,
    broker_connection_timeout=4,
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1},
    # Workers send task events for Flower. No "task-sent" event: it would double the cost of every
    # publish, and the ledger already records when each task was sent.
    worker_send_task_events=True,
    task_send_sent_event=False,
    # Celery's consumer, publishing those events without waiting for the broker's confirm.
    worker_consumer="tasks.consumer:Consumer",
    worker_cancel_long_running_tasks_on_connection_loss=True,
    beat_schedule=schedule.BEAT_SCHEDULE,
    beat_scheduler="tasks.beat:LeaderDatabaseScheduler",
    timezone="UTC",
)
app.autodiscover_tasks()
