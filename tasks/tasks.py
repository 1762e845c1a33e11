"""The task platform's own maintenance jobs, run periodically by beat (see config/schedule.py).
Pending rows are published by the dispatcher (tasks.dispatcher), not by a job."""

from celery import shared_task

from tasks import services
from tasks.base import PlatformTask


@shared_task(base=PlatformTask, name="tasks.tasks.task_records_recover_stuck")
def task_records_recover_stuck():
    return services.task_records_recover_stuck()


@shared_task(base=PlatformTask, name="tasks.tasks.task_records_purge_finished")
def task_records_purge_finished():
    return services.task_records_purge_finished()
