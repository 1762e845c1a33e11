"""Quorum queues (CELERY_QUEUE_TYPE=quorum) against the real RabbitMQ, in a vhost of their own (a
queue's type cannot change in place, so they cannot share the classic tests' vhost), with a real
worker: the queues are quorum queues behind topic exchanges, tasks run, and countdowns and retry
delays wait in RabbitMQ's native delayed delivery queues rather than in the worker."""

import subprocess
import uuid
from datetime import timedelta
from urllib.parse import urlsplit

import pytest

from config import queues
from config.celery import app
from crowdfund.accounts.models import User
from tasks.models import TaskRecord, TaskState
from tasks.services import task_enqueue
from tests import probe_tasks
from tests.tasks import quorum_probes
from tests.workers import CELERY, ROOT, ChildProcess, Dispatcher, Worker, wait_for

DELAY_QUEUES = [f"celery_delayed_{level}" for level in range(28)]  # kombu's native delayed delivery
# What Celery caches from the queue declarations; set aside while this process publishes as quorum.
AMQP_CACHE = ("queues", "router", "default_queue", "default_exchange")


def rabbitmqctl_rows(*args: str) -> dict[str, str]:
    """The first two columns of a `rabbitmqctl list_...` answer, as a dict."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", *args, "--no-table-headers"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return dict(line.split("\t")[:2] for line in out.splitlines() if "\t" in line)


def queue_types(vhost: str) -> dict[str, str]:
    return rabbitmqctl_rows("list_queues", "-p", vhost, "name", "type")


def exchange_types(vhost: str) -> dict[str, str]:
    return rabbitmqctl_rows("list_exchanges", "-p", vhost, "name", "type")


def delayed_messages() -> int:
    """Messages waiting in RabbitMQ's delay queues (passive declares only read the counts)."""
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        return sum(channel.queue_declare(name, passive=True).message_count for name in DELAY_QUEUES)


def record_of(record) -> TaskRecord:
    return TaskRecord.objects.get(id=record.id)


class QuorumWorker(Worker):
    """A worker like tests.workers.Worker that also knows the quorum probe task."""

    def __init__(self, *, env: dict):
        self.hostname = f"quorum-{uuid.uuid4().hex[:8]}@localhost"
        self.queues, self.concurrency = queues.ALL, 2
        command = [
            CELERY, "-A", "config", "worker", "--queues", ",".join(queues.ALL), "--concurrency", "2",
            "--hostname", self.hostname, "--loglevel", "INFO", "--without-mingle", "--without-gossip",
            "--include", "tests.probe_tasks,tests.tasks.quorum_probes",
        ]  # fmt: skip
        ChildProcess.__init__(self, command, name=self.hostname.split("@")[0], env=env)
        self.dispatcher = Dispatcher(name=f"{self.hostname.split('@')[0]}-dispatcher", env=env)


@pytest.fixture(scope="module")
def quorum_vhost():
    """A fresh vhost next to the tests' own (`<vhost>_quorum`), and its broker URL."""
    tests_url = urlsplit(app.conf.broker_url)
    vhost = f"{tests_url.path.lstrip('/') or 'crowdfund_test'}_quorum"
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)  # an earlier run's
    subprocess.run([str(ROOT / "bin" / "ensure-test-broker"), vhost], check=True, timeout=60)
    return vhost, tests_url._replace(path=f"/{vhost}").geturl()


@pytest.fixture
def quorum_broker(quorum_vhost, transactional_db):
    """This process publishes as web and beat do with CELERY_QUEUE_TYPE=quorum (native delayed
    delivery is decided when publishing), to the quorum vhost. Celery caches its broker URLs, pools
    and queue declarations: they are set aside here and put back exactly as they were."""
    vhost, url = quorum_vhost
    changes = {
        "broker_read_url": url,
        "broker_write_url": url,
        "task_queues": queues.task_queues("quorum"),
        "task_default_exchange_type": queues.exchange_type_for("quorum"),
    }
    saved_changes = {key: app.conf.changes[key] for key in changes if key in app.conf.changes}
    saved_cache = {key: app.amqp.__dict__.pop(key) for key in AMQP_CACHE if key in app.amqp.__dict__}
    saved_pools, saved_rtable = (app._pool, app.amqp._producer_pool), app.amqp._rtable
    app.conf.changes.update(changes)
    app._pool = app.amqp._producer_pool = app.amqp._rtable = None
    try:
        yield vhost, url
    finally:
        for key in changes:
            app.conf.changes.pop(key, None)
        app.conf.changes.update(saved_changes)
        for key in AMQP_CACHE:
            app.amqp.__dict__.pop(key, None)
        app.amqp.__dict__.update(saved_cache)
        (app._pool, app.amqp._producer_pool), app.amqp._rtable = saved_pools, saved_rtable


@pytest.fixture
def quorum_worker(quorum_broker):
    """A real worker process started with CELERY_QUEUE_TYPE=quorum on the quorum vhost."""
    _, url = quorum_broker
    worker = QuorumWorker(env={"CELERY_BROKER_URL": url, "CELERY_QUEUE_TYPE": "quorum"})
    try:
        yield worker.wait_ready()
    finally:
        worker.stop()


def test_the_queue_type_setting_keeps_classic_queues_on_direct_exchanges_by_default(settings):
    assert settings.CELERY_QUEUE_TYPE == "classic"
    for queue in queues.task_queues("classic"):
        assert queue.exchange.type == "direct"
        assert not queue.queue_arguments
    for queue in queues.task_queues("quorum"):
        assert queue.exchange.type == "topic"
        assert queue.queue_arguments == {"x-queue-type": "quorum"}
    with pytest.raises(ValueError, match="CELERY_QUEUE_TYPE"):
        queues.task_queues("stream")


@pytest.mark.broker
def test_a_quorum_worker_declares_quorum_queues_on_topic_exchanges_and_runs_a_task(quorum_broker, quorum_worker):
    vhost, _ = quorum_broker

    # The delayed-delivery bootstep declares its queues after the worker answers pings.
    def types_once_delay_queues_exist():
        found = queue_types(vhost)
        return found if set(DELAY_QUEUES) <= set(found) else None

    types = wait_for(types_once_delay_queues_exist, timeout=30, interval=0.5, message="the delay queues")
    assert {name: types.get(name) for name in queues.ALL} == dict.fromkeys(queues.ALL, "quorum")
    assert {types[name] for name in DELAY_QUEUES} == {"quorum"}
    exchanges = exchange_types(vhost)
    assert {name: exchanges.get(name) for name in queues.ALL} == dict.fromkeys(queues.ALL, "topic")
    assert exchanges["celery_delayed_delivery"] == "topic"
    # Quorum queues refuse global QoS: the worker's prefetch is per consumer, and static.
    assert "Global QoS is disabled. Prefetch count is now static." in quorum_worker.log()

    record = task_enqueue(probe_tasks.create_user, args=["quorum@probe.test"])

    wait_for(lambda: record_of(record).state == TaskState.SUCCEEDED, message="succeeded")
    assert record_of(record).attempts == 1
    assert User.objects.filter(email="quorum@probe.test").exists()


@pytest.mark.broker
def test_a_countdown_waits_in_rabbitmqs_delay_queues_not_in_the_worker_then_runs(quorum_worker):
    record = task_enqueue(probe_tasks.create_user, args=["later@probe.test"], countdown=3)

    wait_for(lambda: delayed_messages() == 1, timeout=2, message="the message in a celery_delayed_* queue")
    assert record_of(record).state == TaskState.SENT
    assert not User.objects.filter(email="later@probe.test").exists()

    wait_for(lambda: record_of(record).state == TaskState.SUCCEEDED, timeout=15, message="the delayed run")
    record.refresh_from_db()
    assert record.started_at >= record.eta - timedelta(milliseconds=100)
    assert delayed_messages() == 0
    assert "Direct exchanges are not supported" not in quorum_worker.log()


@pytest.mark.broker
def test_a_transient_failure_is_retried_through_the_delay_queues_and_ends_succeeded(quorum_worker):
    record = task_enqueue(quorum_probes.transient_once, args=["retried@probe.test"])

    wait_for(lambda: record_of(record).state == TaskState.SUCCEEDED, timeout=20, message="the retried run")
    record.refresh_from_db()
    assert record.attempts == 2
    assert record.error_type == "ProbeTransientError"  # what the first attempt ended with
    # The retry was published with its backoff (base 2 s: at least 1 s), not left for the dispatcher's lost-retry pass.
    assert (record.started_at - record.created_at).total_seconds() >= 1
    assert "not published; the dispatcher will send it" not in quorum_worker.log()
    assert User.objects.filter(email="retried@probe.test").count() == 1


@pytest.mark.broker
def test_a_countdown_under_a_second_is_published_a_second_ahead_not_refused(quorum_worker, caplog):
    # Celery's native delayed delivery refuses delays under a second; the platform rounds them up.
    record = task_enqueue(probe_tasks.create_user, args=["soon@probe.test"], countdown=0.3)

    wait_for(lambda: record_of(record).state == TaskState.SUCCEEDED, timeout=10, message="the run due in 0.3 s")
    record.refresh_from_db()
    assert record.started_at >= record.eta
    assert "Publishing paused" not in caplog.text
