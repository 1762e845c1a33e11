from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_periodic_jobs(sender, **kwargs):
    from tasks.beat import periodic_jobs_sync

    periodic_jobs_sync()


class TasksConfig(AppConfig):
    name = "tasks"
    verbose_name = "Task platform"

    def ready(self):
        # The admin lists the declared periodic jobs right after migrate, before beat first runs.
        post_migrate.connect(_sync_periodic_jobs, sender=self)
