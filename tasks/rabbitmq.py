"""RabbitMQ as ops see it: how many messages wait in each of our queues and who consumes them.

Read from RabbitMQ's management API (`rabbitmq-plugins enable rabbitmq_management`), which also
knows the unacknowledged messages; where it is not enabled, from a passive queue declare on the
broker connection, which knows only the ready ones.
"""

import logging
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import requests
from django.conf import settings

from config.celery import app
from config.queues import ALL as QUEUES

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 2


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    ready: int
    unacked: int | None  # None when only a passive declare could be made
    consumers: int
    source: str  # "management" or "declare"


def queue_depths() -> dict[str, QueueDepth]:
    """Depth of every queue in config/queues.py; empty if the broker cannot be reached at all."""
    try:
        return _from_management_api()
    except (requests.RequestException, ValueError, KeyError) as exc:
        log.debug("RabbitMQ management API unavailable (%r); falling back to passive declares", exc)
    try:
        return _from_passive_declare()
    except Exception as exc:  # the broker is down: the dashboard says so rather than failing
        log.warning("Could not read queue depths from RabbitMQ: %r", exc)
        return {}


def _vhost() -> str:
    path = urlsplit(settings.CELERY_BROKER_URL).path
    return path[1:] if len(path) > 1 else "/"


def _from_management_api() -> dict[str, QueueDepth]:
    if not settings.RABBITMQ_MANAGEMENT_URL:
        raise ValueError("no management URL configured")
    url = f"{settings.RABBITMQ_MANAGEMENT_URL.rstrip('/')}/api/queues/{quote(_vhost(), safe='')}"
    parts = urlsplit(url)
    auth = (parts.username or "guest", parts.password or "guest")
    plain_url = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()
    response = requests.get(plain_url, auth=auth, timeout=TIMEOUT_SECONDS, params={"columns": _COLUMNS})
    response.raise_for_status()
    found = {queue["name"]: queue for queue in response.json()}
    return {
        name: QueueDepth(
            queue=name,
            ready=found[name].get("messages_ready", 0),
            unacked=found[name].get("messages_unacknowledged", 0),
            consumers=found[name].get("consumers", 0),
            source="management",
        )
        for name in QUEUES
        if name in found
    }


_COLUMNS = "name,messages_ready,messages_unacknowledged,consumers"


def _from_passive_declare() -> dict[str, QueueDepth]:
    depths = {}
    with app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, timeout=TIMEOUT_SECONDS)
        channel = connection.default_channel
        for name in QUEUES:
            _, ready, consumers = channel.queue_declare(queue=name, passive=True)
            depths[name] = QueueDepth(queue=name, ready=ready, unacked=None, consumers=consumers, source="declare")
    return depths
