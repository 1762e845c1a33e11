"""The broker queues, one per kind of work, and which tasks go where: the one home for routing.

A slow report never delays a payment because each kind of work has its own queue, and each queue
can have its own worker processes (see README: adding workers).
"""

from kombu import Exchange, Queue

PAYMENTS = "payments"
NOTIFICATIONS = "notifications"
REPORTS = "reports"
DEFAULT = "default"

ALL = (PAYMENTS, NOTIFICATIONS, REPORTS, DEFAULT)

# Durable queues on a durable direct exchange; messages are persistent by default.
TASK_QUEUES = tuple(
    Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True) for name in ALL
)

# Routes by task-name prefix; anything unrouted goes to `default`.
TASK_ROUTES = {
    "crowdfund.payments.*": {"queue": PAYMENTS},
    "crowdfund.notifications.*": {"queue": NOTIFICATIONS},
    "crowdfund.reports.*": {"queue": REPORTS},
}
