"""The broker queues, one per kind of work, and which tasks go where: the one home for routing.

A slow report never delays a payment because each kind of work has its own queue, and each queue
can have its own worker processes (see README: adding workers).

`CELERY_QUEUE_TYPE` (settings) makes the same queues classic or quorum (replicated over a RabbitMQ
cluster). A queue's type cannot change in place: see docs/operations.md before switching.
"""

from django.conf import settings
from kombu import Exchange, Queue

PAYMENTS = "payments"
NOTIFICATIONS = "notifications"
REPORTS = "reports"
DEFAULT = "default"

ALL = (PAYMENTS, NOTIFICATIONS, REPORTS, DEFAULT)

QUEUE_TYPES = ("classic", "quorum")


def exchange_type_for(queue_type: str) -> str:
    """Quorum queues take countdowns and retry delays through Celery's native delayed delivery,
    which re-routes a due message through a topic exchange to the queue's own exchange: it cannot
    reach a queue behind a direct exchange (the worker would hold the message until it is due)."""
    return "topic" if queue_type == "quorum" else "direct"


def task_queues(queue_type: str) -> tuple[Queue, ...]:
    """Durable queues, each on a durable exchange of its own; messages are persistent by default."""
    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"CELERY_QUEUE_TYPE must be one of {QUEUE_TYPES}, not {queue_type!r}")
    exchange_type = exchange_type_for(queue_type)
    return tuple(
        Queue(
            name,
            Exchange(name, type=exchange_type, durable=True),
            routing_key=name,
            durable=True,
            # Classic queues keep the declaration they always had (no argument), so an existing
            # queue is declared again as is.
            queue_arguments={"x-queue-type": "quorum"} if queue_type == "quorum" else None,
        )
        for name in ALL
    )


QUEUE_TYPE = settings.CELERY_QUEUE_TYPE
EXCHANGE_TYPE = exchange_type_for(QUEUE_TYPE)
TASK_QUEUES = task_queues(QUEUE_TYPE)

# Routes by task-name prefix; anything unrouted goes to `default`.
TASK_ROUTES = {
    "crowdfund.payments.*": {"queue": PAYMENTS},
    "crowdfund.notifications.*": {"queue": NOTIFICATIONS},
    "crowdfund.reports.*": {"queue": REPORTS},
}
