"""The worker's consumer (Celery's `worker_consumer` setting): Celery's own, except that its
monitoring events are published without waiting for RabbitMQ's confirm."""

from celery.worker.consumer import Consumer as CeleryConsumer


class Consumer(CeleryConsumer):
    """Task messages are confirmed (the dispatcher's own publisher, and a retry through Celery's
    producer with the broker transport option `confirm_publish`). The worker's events (received,
    started, succeeded, heartbeats) are monitoring for Flower, and the ledger records every run
    anyway: waiting for a confirm of each of them blocked the worker's main process three times
    per task: plain Celery drained one-insert tasks at 444–495/s with those waits and 562–837/s
    without, measured side by side on the drain benchmark (bench/platform_bench.py).

    In Celery's consumer this connection serves only the events (the Events bootstep).
    """

    def connection_for_write(self, url=None, heartbeat=None):
        connection = self.app.connection_for_write(
            url=url, heartbeat=heartbeat, transport_options={"confirm_publish": False}
        )
        return self.ensure_connected(connection)
