"""Two real `celery beat` processes at once against the test database: only the one holding the
leader lock sends, so each periodic job goes out once per period; the standby takes over when the
leader dies."""

import uuid
from itertools import pairwise

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tasks.models import TaskRecord, TaskState
from tests.tasks.broker import queue_take_all
from tests.workers import wait_for

INTERVAL = 2  # seconds between runs of the probe job
LEADER = "This beat is now the leader"


@pytest.fixture
def tick_every_two_seconds(broker):
    every = IntervalSchedule.objects.create(every=INTERVAL, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(name="every-two-seconds-tick", task="tests.probe.tick", interval=every)


@pytest.fixture
def two_beats(start_beat, tick_every_two_seconds):
    beats = [start_beat(f"beat-{uuid.uuid4().hex[:8]}") for _ in range(2)]
    for beat in beats:
        wait_for(lambda beat=beat: "beat: Starting..." in beat.log(), message=f"{beat.name} to start")
    return beats


def tick_sends() -> list:
    """When beat sent the probe job: one ledger row per send."""
    return list(
        TaskRecord.objects.filter(name="tests.probe.tick").order_by("created_at").values_list("created_at", flat=True)
    )


def shortest_gap(sends) -> float:
    return min((later - earlier).total_seconds() for earlier, later in pairwise(sends))


def the_leader(beats):
    [leader] = [beat for beat in beats if LEADER in beat.log()]
    return leader


@pytest.mark.broker
def test_it_sends_each_periodic_job_once_per_period_while_two_beats_run(two_beats, dispatcher):
    wait_for(lambda: len(tick_sends()) >= 6, timeout=40, message="six sends")

    the_leader(two_beats)  # exactly one of them ever led
    assert all(beat.process.poll() is None for beat in two_beats), "both beats ran all along"
    for beat in two_beats:
        beat.stop()
    sends = tick_sends()
    # A second sender would show as two sends within one period.
    assert shortest_gap(sends) >= INTERVAL * 0.75, sends
    elapsed = (sends[-1] - sends[0]).total_seconds()
    assert len(sends) <= elapsed / INTERVAL + 1
    # Each send is one message on the broker, not one per beat (the dispatcher publishes each row once).
    wait_for(lambda: not TaskRecord.objects.filter(state=TaskState.PENDING).exists(), message="all sends published")
    ticks = [message for message in queue_take_all() if message.headers["task"] == "tests.probe.tick"]
    assert len(ticks) == len(sends)


@pytest.mark.broker
def test_it_lets_the_standby_beat_take_over_when_the_leader_dies(two_beats):
    wait_for(lambda: len(tick_sends()) >= 2, timeout=30, message="the leader's first sends")
    leader = the_leader(two_beats)
    [standby] = [beat for beat in two_beats if beat is not leader]

    leader.kill()
    died_at = timezone.now()

    wait_for(lambda: LEADER in standby.log(), timeout=30, message="the standby to take the lead")
    wait_for(
        lambda: len([sent for sent in tick_sends() if sent > died_at]) >= 3,
        timeout=30,
        message="the new leader's sends",
    )
    standby.stop()
    sends = tick_sends()
    assert shortest_gap(sends) >= INTERVAL * 0.75, sends
