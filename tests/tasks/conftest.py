import pytest

from tasks import services
from tests.workers import CeleryProcess, Worker


@pytest.fixture(autouse=True)
def _publishing_not_paused(monkeypatch):
    """A publish that failed in an earlier test pauses publishing in this process for a few
    seconds; each test starts with the broker assumed reachable."""
    monkeypatch.setattr(services, "_publish_paused_until", 0.0)


@pytest.fixture
def start_worker(broker):
    """Start real worker processes (`start_worker(concurrency=1)`); all are stopped afterwards,
    before the test database is emptied."""
    started = []

    def start(**options) -> Worker:
        worker = Worker(**options)
        started.append(worker)
        return worker.wait_ready()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def start_beat(broker):
    """Start real `celery beat` processes against the test database; all are stopped afterwards."""
    started = []

    def start(name: str) -> CeleryProcess:
        beat = CeleryProcess("beat", "--loglevel", "INFO", "--max-interval", "1", name=name)
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()
