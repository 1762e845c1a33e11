"""The real stack for the fault-injection tests: gunicorn, a worker for payments, notifications
and default, one for reports, and beat, against the tests' PostgreSQL database and RabbitMQ vhost."""

import uuid
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from config.queues import DEFAULT, NOTIFICATIONS, PAYMENTS, REPORTS
from tests.crowdfund.payments.conftest import WEBHOOK_URL
from tests.factories import CampaignFactory, UserFactory
from tests.faults.load import PledgeStream
from tests.workers import CeleryProcess, WebServer, Worker, wait_for

# The audit's plain asserts explain themselves when they fail, as a test module's do.
pytest.register_assert_rewrite("tests.faults.audit")

MAIN_QUEUES = (PAYMENTS, NOTIFICATIONS, DEFAULT)
# The dispatchers (one beside each worker) pass over the ledger every second instead of every 5 s,
# so rows left pending by an outage are published soon after it.
DISPATCH_POLL_SECONDS = 1


@dataclass
class Stack:
    web: WebServer
    env: dict
    workers: list[Worker] = field(default_factory=list)
    beats: list[CeleryProcess] = field(default_factory=list)

    @property
    def worker(self) -> Worker:
        """The worker consuming payments, notifications and default."""
        return self.workers[0]

    def start_worker(self, *, queues=MAIN_QUEUES, concurrency: int = 3) -> Worker:
        worker = Worker(queues=queues, concurrency=concurrency, env=self.env)
        self.workers.append(worker)
        return worker

    def replace_worker(self, old: Worker) -> Worker:
        """Start a worker for `old`'s queues in its place (after it was killed or stopped)."""
        old.stop()  # already gone; this closes its log
        self.workers.remove(old)
        new = Worker(queues=old.queues, concurrency=old.concurrency, env=self.env)
        self.workers.insert(0, new)
        return new.wait_ready(timeout=60)

    def start_beat(self) -> CeleryProcess:
        beat = CeleryProcess(
            "beat", "--loglevel", "INFO", "--max-interval", "1", name=f"beat-{uuid.uuid4().hex[:8]}", env=self.env
        )
        self.beats.append(beat)
        return beat

    def stop_beats(self) -> None:
        for beat in self.beats:
            beat.stop()

    def stop(self) -> None:
        for process in [*self.beats, *self.workers, self.web]:
            process.stop()


@pytest.fixture
def stack(broker):
    """The whole stack, started and ready; everything it started is stopped afterwards, before the
    test database is emptied."""
    env = {"TASKS_DISPATCH_POLL_SECONDS": str(DISPATCH_POLL_SECONDS), "EMAIL_URL": "memorymail://"}
    web = WebServer(env=env)
    stack = Stack(web=web, env={**env, "PAYMENTS_SANDBOX_WEBHOOK_URL": web.url + WEBHOOK_URL})
    try:
        stack.start_worker()
        stack.start_worker(queues=(REPORTS,), concurrency=1)
        beat = stack.start_beat()
        web.wait_ready()
        for worker in stack.workers:
            worker.wait_ready(timeout=60)
        wait_for(lambda: "beat: Starting..." in beat.log(), timeout=30, message="beat to start")
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def campaigns(db):
    """Two live campaigns with goals no test reaches, so none closes during a run."""
    return [CampaignFactory(live=True, goal_amount=Decimal("1000000.00")) for _ in range(2)]


@pytest.fixture
def backers(db):
    return [UserFactory() for _ in range(8)]


@pytest.fixture
def pledge_stream(stack, campaigns, backers):
    """pledge_stream(count=, seconds=, ...) starts a PledgeStream against the stack's web process;
    a stream a failing test left running is stopped before the stack goes down."""
    streams = []

    def start(**options) -> PledgeStream:
        stream = PledgeStream(web_url=stack.web.url, campaigns=campaigns, backers=backers, **options)
        streams.append(stream)
        return stream.start()

    yield start
    for stream in streams:
        stream.stop()
