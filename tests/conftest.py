import uuid

import pytest

from config.celery import app
from tests.workers import Dispatcher, Worker


@pytest.fixture
def broker(transactional_db):
    """Empty queues on the tests' RabbitMQ vhost; data committed so real workers can see it."""
    _purge()
    yield app
    _purge()


def _purge() -> None:
    # On a connection of its own: the app's pooled ones may be stale after a test restarted RabbitMQ.
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=3)
        app.control.purge(connection=conn)


@pytest.fixture
def worker(broker):
    """A real worker process consuming every queue."""
    process = Worker().wait_ready()
    yield process
    process.stop()


@pytest.fixture
def dispatcher(broker):
    """A real dispatcher process (manage.py run_dispatcher), publishing what the test enqueues."""
    process = Dispatcher(name=f"dispatcher-{uuid.uuid4().hex[:8]}")
    yield process
    process.stop()
