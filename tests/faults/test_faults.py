"""Fault injection against the real stack (gunicorn, workers, beat, PostgreSQL, RabbitMQ) under a
steady stream of pledges and payment webhooks: whatever breaks, every scenario ends with the same
audit (tests/faults/audit.py): each webhook applied once, exact totals, one receipt per paid
pledge, no task left behind.

Scenarios 2 to 4 stop the machine's RabbitMQ or PostgreSQL; they always bring it back."""

import os
import signal
import time
from itertools import pairwise

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from crowdfund.accounts.models import User
from tasks.models import TaskRecord, TaskState
from tasks.services import task_enqueue
from tests import probe_tasks
from tests.faults.audit import audit, drain
from tests.faults.load import PledgeStream
from tests.faults.outages import postgres_restart, rabbitmq_down, rabbitmq_start, rabbitmq_stop, retrying_outages
from tests.workers import Worker, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

LEADER = "This beat is now the leader"
TICK_INTERVAL = 2


def settle(stack, stream: PledgeStream) -> None:
    """Let the stream make its last pledges, stop beat (no new periodic runs), wait for the
    backlog to drain, then audit."""
    payments = stream.finish()
    stack.stop_beats()
    drain(payments=payments)
    audit(payments=payments)


def state_of(record) -> str:
    return retrying_outages(lambda: TaskRecord.objects.get(id=record.id).state)


def running_on(worker: Worker, *, name_prefix: str = "crowdfund.") -> bool:
    started = TaskRecord.objects.filter(state=TaskState.STARTED, worker=worker.hostname, name__startswith=name_prefix)
    return started.exists()


def kill_children(worker: Worker) -> None:
    for pid in worker.child_pids():
        os.kill(pid, signal.SIGKILL)


def kill_children_mid_task(worker: Worker, *, timeout: float = 10) -> None:
    """SIGKILL the worker's pool processes as soon as one of them runs a payment or notification
    task (payments are quick: the kill may still land just after one; the slow probe makes sure of
    at least one kill mid-run)."""
    deadline = time.monotonic() + timeout
    while not running_on(worker) and time.monotonic() < deadline:
        time.sleep(0.01)
    kill_children(worker)


def slow_probes(count: int, *, seconds: float, tag: str) -> list[TaskRecord]:
    return [
        task_enqueue(probe_tasks.sleep_then_create_user, args=[f"{tag}{n}@probe.test", seconds]) for n in range(count)
    ]


def test_no_payment_is_lost_or_applied_twice_when_workers_are_killed_mid_task(stack, pledge_stream):
    stream = pledge_stream(count=50, seconds=30)
    [probe] = slow_probes(1, seconds=3, tag="killed")
    wait_for(lambda: state_of(probe) == TaskState.STARTED, timeout=30, message="the slow probe to start")

    kill_children(stack.worker)
    # The probe runs again once, after this one kill; the later kills must not catch it as well.
    wait_for(lambda: state_of(probe) == TaskState.SUCCEEDED, timeout=60, message="the killed probe to run again")
    for kills in (1, 2):
        stream.wait_for_payments(10 * kills + 5)
        kill_children_mid_task(stack.worker)
    stream.wait_for_payments(35)
    stack.worker.kill()  # the whole worker, main process included: its unacked messages go back
    stack.replace_worker(stack.worker)

    settle(stack, stream)
    probe.refresh_from_db()
    assert (probe.state, probe.attempts, probe.error_type) == (TaskState.SUCCEEDED, 2, "WorkerLostError")
    assert User.objects.filter(email="killed0@probe.test").count() == 1


def test_workers_and_web_reconnect_by_themselves_when_rabbitmq_restarts(stack, pledge_stream):
    stream = pledge_stream(count=50, seconds=30)
    stream.wait_for_payments(15)
    processes = [stack.web.process, *(worker.process for worker in stack.workers)]
    # Slow tasks are sure to be running when the connection drops: the worker cancels them (acks
    # late: their messages go back to the queue) and runs them again once reconnected.
    probes = slow_probes(2, seconds=5, tag="mq")
    wait_for(lambda: running_on(stack.worker, name_prefix="tests."), timeout=30, message="a probe to start")

    with rabbitmq_down():
        time.sleep(3)
    made_before_restart = len(stream.payments)

    stream.wait_for_payments(made_before_restart + 10)
    settle(stack, stream)
    # The same processes did it all: nobody restarted them after the broker came back.
    assert all(process.poll() is None for process in processes)
    for probe in probes:
        probe.refresh_from_db()
        assert probe.state == TaskState.SUCCEEDED
    assert User.objects.filter(email__startswith="mq", email__endswith="@probe.test").count() == 2


def test_webhooks_keep_being_accepted_while_rabbitmq_is_down_and_are_processed_once_it_is_back(stack, pledge_stream):
    stream = pledge_stream(count=60, seconds=50, deliver_directly=True)
    stream.wait_for_payments(10)
    try:
        rabbitmq_stop()
        down_at = time.monotonic()
        time.sleep(30)
    finally:
        up_at = time.monotonic()
        rabbitmq_start()

    during = [delivery for delivery in stream.deliveries if down_at < delivery.at < up_at]
    # Accepted and stored, with their processing recorded in the ledger, broker or not. (A worker's
    # delivery may beat the stream's own for a payment made just before the broker went down.)
    assert {delivery.status for delivery in during} == {200}
    assert len([delivery for delivery in during if not delivery.duplicate]) >= 10
    settle(stack, stream)


def test_tasks_interrupted_by_a_postgresql_restart_retry_and_complete(stack, pledge_stream):
    stream = pledge_stream(count=50, seconds=30)
    stream.wait_for_payments(10)
    # Slow tasks are sure to be running when the database goes away under them.
    probes = slow_probes(2, seconds=2, tag="pg-restart")
    wait_for(lambda: running_on(stack.worker, name_prefix="tests."), timeout=30, message="a probe to start")
    postgres_restart()
    # Then down for a few seconds, as during a failover: the runs fail, and so do their first
    # retries and the worker's attempts to record them.
    stream.wait_for_payments(25)
    probes += slow_probes(2, seconds=1, tag="pg-down")
    wait_for(lambda: running_on(stack.worker, name_prefix="tests."), timeout=30, message="a probe to start")
    postgres_restart(down_for=4)

    settle(stack, stream)
    for probe in probes:
        probe.refresh_from_db()
        assert probe.state == TaskState.SUCCEEDED
    assert User.objects.filter(email__startswith="pg-", email__endswith="@probe.test").count() == 4


def test_a_worker_stopped_with_sigterm_finishes_its_running_tasks_and_returns_the_others(stack, pledge_stream):
    stream = pledge_stream(count=50, seconds=30)
    stream.wait_for_payments(10)
    probes = slow_probes(5, seconds=4, tag="term")
    wait_for(lambda: running_on(stack.worker, name_prefix="tests."), timeout=30, message="a probe to start")
    worker = stack.worker

    worker.process.send_signal(signal.SIGTERM)
    worker.process.wait(timeout=30)  # a warm shutdown: it waits for its running tasks, then leaves
    ran_there = {probe.id for probe in TaskRecord.objects.filter(id__in=[p.id for p in probes], worker=worker.hostname)}
    stack.replace_worker(worker)

    settle(stack, stream)
    assert ran_there, "a probe was running when SIGTERM landed"
    for probe in probes:
        probe.refresh_from_db()
        # Each ran once: the running ones finished before the worker left, the others waited in the queue.
        assert (probe.state, probe.attempts) == (TaskState.SUCCEEDED, 1)
    assert User.objects.filter(email__startswith="term", email__endswith="@probe.test").count() == 5


@pytest.fixture
def tick_every_two_seconds(broker):
    every = IntervalSchedule.objects.create(every=TICK_INTERVAL, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(name="every-two-seconds-tick", task="tests.probe.tick", interval=every)


def sends_of(job: str) -> list:
    rows = TaskRecord.objects.filter(correlation_key=f"beat:{job}").order_by("created_at")
    return list(rows.values_list("created_at", flat=True))


def test_two_beats_at_once_send_each_periodic_job_once_per_period(tick_every_two_seconds, stack, pledge_stream):
    stream = pledge_stream(count=40, seconds=30)
    first = stack.beats[0]
    second = stack.start_beat()
    wait_for(lambda: "beat: Starting..." in second.log(), timeout=30, message="the second beat to start")
    wait_for(lambda: len(sends_of("every-two-seconds-tick")) >= 4, timeout=30, message="ticks")

    # The leader dies: the standby takes over, from the last run the leader recorded.
    [leader] = [beat for beat in (first, second) if LEADER in beat.log()]
    [standby] = [beat for beat in (first, second) if beat is not leader]
    leader.kill()
    wait_for(lambda: LEADER in standby.log(), timeout=30, message="the standby to take the lead")
    stack.start_beat()  # and a second beat runs again for the rest of the run

    settle(stack, stream)
    ticks = sends_of("every-two-seconds-tick")
    assert len(ticks) >= 10
    # A second sender would show as two sends within one period.
    assert min((later - earlier).total_seconds() for earlier, later in pairwise(ticks)) >= TICK_INTERVAL * 0.75
    assert len(ticks) <= (ticks[-1] - ticks[0]).total_seconds() / TICK_INTERVAL + 1
    for job in ("every-minute-close-due-campaigns", "every-five-minutes-reconcile-pending-payments"):
        sends = sends_of(job)
        assert len(sends) <= 2, (job, sends)  # the run lasts about a minute
        assert all((later - earlier).total_seconds() >= 45 for earlier, later in pairwise(sends)), (job, sends)
