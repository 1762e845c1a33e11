"""The periodic jobs, declared once. Beat syncs them into django-celery-beat's tables, where the
admin can disable, re-enable or run them; a later sync never undoes an admin's enable/disable."""

from celery.schedules import crontab

BEAT_SCHEDULE = {
    "every-five-minutes-recover-stuck-tasks": {
        "task": "tasks.tasks.task_records_recover_stuck",
        "schedule": 300.0,
    },
    "every-minute-close-due-campaigns": {
        "task": "crowdfund.payments.tasks.campaigns_close_due",
        "schedule": 60.0,
    },
    "every-five-minutes-reconcile-pending-payments": {
        "task": "crowdfund.payments.tasks.pledges_reconcile",
        "schedule": 300.0,
    },
    "every-day-purge-finished-tasks": {
        "task": "tasks.tasks.task_records_purge_finished",
        "schedule": crontab(hour=3, minute=30),
    },
    "every-day-creator-digest": {
        "task": "crowdfund.notifications.tasks.creator_digests_send",
        "schedule": crontab(hour=7, minute=0),
    },
    "every-day-platform-report": {
        "task": "crowdfund.reports.tasks.platform_report_build",
        "schedule": crontab(hour=0, minute=30),
    },
    "every-hour-expire-reports": {
        "task": "crowdfund.reports.tasks.reports_expire",
        "schedule": crontab(minute=15),
    },
    "every-ten-minutes-fail-lost-reports": {
        "task": "crowdfund.reports.tasks.reports_fail_lost",
        "schedule": 600.0,
    },
}
