"""Looking at RabbitMQ itself, as the tests' witness of what was (not) published."""

from contextlib import contextmanager

from django.test import override_settings

from config.celery import app
from config.queues import DEFAULT

# Nothing listens on port 1: connecting is refused at once, as when RabbitMQ is down.
REFUSED_BROKER_URL = "amqp://guest:guest@127.0.0.1:1//"


def queue_depth(queue: str = DEFAULT) -> int:
    """Messages ready in `queue` (a passive declare only reads the count)."""
    with app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(queue, passive=True).message_count


def queue_take_all(queue: str = DEFAULT) -> list:
    """Remove and return every ready message of `queue`, raw as RabbitMQ holds it."""
    messages = []
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            messages.append(message)
    return messages


@contextmanager
def broker_refusing_publishes():
    """The app publishes to a broker that refuses connections, without stopping the RabbitMQ that
    other people share. Celery reads its CELERY_-prefixed Django settings live, but caches its
    producer pool, so the pool is set aside for the duration and put back after."""
    saved = app._pool, app.amqp._producer_pool
    with override_settings(CELERY_BROKER_WRITE_URL=REFUSED_BROKER_URL):
        app._pool = app.amqp._producer_pool = None
        try:
            yield
        finally:
            app._pool, app.amqp._producer_pool = saved
