"""A creator update fanned out to 100,000 backers on every sandbox channel (email through Django's
dummy backend, sandbox push, in-app), by one prefork worker with 2 processes, beside the drain rate
of plain no-op Celery tasks measured in the same run on the same worker settings.

The backers (users, paid pledges, one device each) are bulk-inserted once and reused. Figures:
wall time from the update's commit to the last message recorded, messages per second (a message is
one outbox row sent on one channel), and the peak resident memory (VmHWM) of every worker process.
Run alone: `.venv/bin/python -m bench.notifications_bench` (writes the "Notifications" section of
docs/benchmarks.md).
"""

import os
import time
from pathlib import Path

# A database of its own when run alone: 100,000 seeded backers are not wanted by other benchmarks.
os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crowdfund_bench_notifications")

from bench.harness import machine, run_alone, start_worker  # noqa: E402

BACKERS = int(os.environ.get("BENCH_BACKERS", "100000"))
NOOP_TASKS = int(os.environ.get("BENCH_NOOP_TASKS", "20000"))
CONCURRENCY = 2
TARGET_RATIO = 5.0
MEMORY_LIMIT_MB = 300
SEED_BATCH = 5000


def _seed_campaign():
    """The campaign and its backers, inserted in bulk the first time, found the next."""
    from django.db import connection, transaction

    from crowdfund.accounts.models import Device, User
    from crowdfund.campaigns.models import Campaign
    from crowdfund.pledges.models import Pledge, PledgeStatus

    campaign = Campaign.objects.filter(title="Bench fan-out").first()
    if campaign and Pledge.objects.filter(campaign=campaign).count() == BACKERS:
        return campaign
    with transaction.atomic():
        campaign = campaign or _campaign_create()
        # Seeded before with another BENCH_BACKERS: start again (pledges protect their backers).
        Pledge.objects.filter(campaign=campaign).delete()
        User.objects.filter(email__endswith=f".{campaign.id.hex[:6]}@bench.test").delete()
        for start in range(0, BACKERS, SEED_BATCH):
            users = User.objects.bulk_create(
                [
                    User(email=f"fan{start + n}.{campaign.id.hex[:6]}@bench.test", password="!")
                    for n in range(min(SEED_BATCH, BACKERS - start))
                ]
            )
            Pledge.objects.bulk_create(
                Pledge(campaign=campaign, backer=user, amount="10.00", currency=campaign.currency,
                       status=PledgeStatus.PAID, idempotency_key="bench", request_fingerprint="bench")
                for user in users
            )  # fmt: skip
            Device.objects.bulk_create(Device(user=user, platform="ios", token=f"bench-{user.id}") for user in users)
    # As autovacuum would have by the time such a campaign posts an update (it is off on some of
    # these machines): without statistics, PostgreSQL plans the fan-out's reads as for empty tables.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE accounts_user, accounts_device, pledges_pledge")
    return campaign


def _campaign_create():
    from datetime import timedelta

    from django.utils import timezone

    from crowdfund.accounts.models import User
    from crowdfund.campaigns.models import Campaign, CampaignStatus

    creator, _ = User.objects.get_or_create(email="bench-fanout-creator@bench.test")
    return Campaign.objects.create(
        creator=creator,
        title="Bench fan-out",
        goal_amount="1000.00",
        currency="EUR",
        deadline=timezone.now() + timedelta(days=30),
        status=CampaignStatus.LIVE,
        published_at=timezone.now(),
    )


def _reset() -> None:
    from django.db import connection

    from config.celery import app

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE notifications_inappnotification, notifications_outboxmessage, "
            "notifications_sandboxpushdelivery, notifications_providerratelimit, tasks_taskrecord"
        )
    app.control.purge()


def _queue_depth(queue: str) -> int:
    from config.celery import app

    with app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(queue=queue, passive=True).message_count


def _noop_rate() -> float:
    """Plain Celery no-op tasks per second, published first, drained by a fresh worker."""
    from bench import bench_tasks
    from config.celery import app

    with app.producer_or_acquire() as producer:
        for n in range(NOOP_TASKS):
            bench_tasks.plain_noop.apply_async(args=(n,), producer=producer, queue="default")
    worker = start_worker(queues="default", concurrency=CONCURRENCY, hostname="bench-noop")
    started = time.monotonic()
    try:
        while _queue_depth("default") > 0:
            time.sleep(0.05)
        return NOOP_TASKS / (time.monotonic() - started)
    finally:
        worker.stop()


def _peak_memory_mb(process) -> dict[int, float]:
    """VmHWM (peak resident set) of the worker's main process and each pool process."""
    import subprocess

    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    peaks = {}
    for pid in [process.pid, *map(int, children)]:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks[pid] = int(line.split()[1]) / 1024
    return peaks


def _fanout(campaign) -> dict:
    from django.db.models import Max

    from crowdfund.campaigns.services import campaign_update_create
    from crowdfund.notifications.models import OutboxMessage, OutboxState
    from tasks.models import OPEN_STATES, TaskRecord

    os.environ.update(EMAIL_URL="dummymail://", NOTIFICATIONS_EMAIL_RATE="0", NOTIFICATIONS_PUSH_RATE="0")
    worker = start_worker(queues="notifications", concurrency=CONCURRENCY, hostname="bench-notify")
    try:
        update = campaign_update_create(campaign=campaign, author=campaign.creator, title="Bench", body="Shipped.")
        # Done when the chain of chunk tasks has ended: the ledger's few rows are polled, not the
        # outbox's 300,000 (counting those every second took PostgreSQL CPU from the fan-out).
        deadline = time.monotonic() + 3600
        while TaskRecord.objects.filter(state__in=OPEN_STATES).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the fan-out did not end within an hour")
            time.sleep(0.5)
        memory = _peak_memory_mb(worker.worker)
    finally:
        worker.stop()
    expected = 3 * BACKERS
    settled = OutboxMessage.objects.exclude(state__in=[OutboxState.PENDING, OutboxState.SENDING]).count()
    if settled != expected:
        raise RuntimeError(f"{settled} of {expected} messages settled; see var/bench-notify.log")
    last = OutboxMessage.objects.aggregate(last=Max("updated_at"))["last"]
    seconds = (last - update.created_at).total_seconds()
    sent = OutboxMessage.objects.filter(state=OutboxState.SENT).count()
    return {"seconds": seconds, "sent": sent, "rate": sent / seconds, "memory": memory}


def run() -> str:
    print(f"Notifications: fan-out to {BACKERS:,} backers, and {NOOP_TASKS:,} no-op tasks", flush=True)
    campaign = _seed_campaign()
    _reset()
    noop = _noop_rate()
    print(f"  no-op drain: {noop:,.0f} tasks/s", flush=True)
    result = _fanout(campaign)
    print(f"  fan-out: {result['sent']:,} messages in {result['seconds']:.0f} s, {result['rate']:,.0f}/s", flush=True)
    peak = max(result["memory"].values())
    ratio = result["rate"] / noop
    memory = ", ".join(f"{mb:.0f}" for mb in result["memory"].values())
    lines = [
        "## Notifications",
        "",
        f"A creator update fanned out to {BACKERS:,} backers (bulk-inserted: users, paid pledges, one device each) "
        f"on three channels: email (Django's dummy backend), sandbox push and in-app, so {3 * BACKERS:,} outbox rows. "
        f"One prefork worker with {CONCURRENCY} processes on the `notifications` queue; chunks of 500 backers, "
        "each chunk task inserting its rows in one statement and enqueuing the next. Beside it, in the same run, "
        f"{NOOP_TASKS:,} plain Celery no-op tasks drained by the same kind of worker. "
        "Command: `.venv/bin/python -m bench.notifications_bench`.",
        "",
        f"Machine: {machine()}; shared with other work, so the figures are a floor.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| messages sent | {result['sent']:,} |",
        f"| total time (update committed → last message recorded) | {result['seconds']:.0f} s |",
        f"| messages/s | {result['rate']:,.0f} |",
        f"| no-op task drain (tasks/s) | {noop:,.0f} |",
        f"| ratio messages/s ÷ no-op tasks/s | {ratio:.1f} (target ≥ {TARGET_RATIO:.0f}: "
        f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}) |",
        f"| peak memory per worker process, MB (main, pool…) | {memory} (limit {MEMORY_LIMIT_MB}: "
        f"{'met' if peak <= MEMORY_LIMIT_MB else 'NOT met'}) |",
        "",
        "How it is fast (profiled in-process, 500 backers × 3 channels): each template is rendered once per "
        "(kind, subject, channel) in a chunk, with markers where the recipient's name and unsubscribe link go, "
        "filled in per message; email rows are claimed (pending → sending, committed) ten per round trip by "
        "the statement that also records the previous ten's outcomes, so a worker dying mid-send leaves at "
        "most ten emails in doubt (recorded failed, never sent twice); push and in-app go out in one "
        "transaction per chunk.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_alone(run)
