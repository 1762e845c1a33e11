"""The creator update fan-out run by real worker processes against RabbitMQ: 10,000 backers, each
told exactly once on every channel, even when a worker process is killed in the middle of a chunk."""

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from crowdfund.accounts.models import Device, User
from crowdfund.campaigns.services import campaign_update_create
from crowdfund.notifications.models import InAppNotification, OutboxMessage, OutboxState, SandboxPushDelivery
from crowdfund.notifications.services import CLAIM_GROUP
from crowdfund.pledges.models import Pledge, PledgeStatus
from tasks.models import TaskRecord
from tests.factories import CampaignFactory
from tests.workers import Worker, wait_for

BACKERS = 10_000


def seed_backers(campaign, count: int) -> None:
    """Bulk-inserted: creating 10,000 users through the API would take most of the test's minute."""
    users = User.objects.bulk_create(
        [User(email=f"fan{n}@example.com", password="!", display_name=f"Fan {n}") for n in range(count)],
        batch_size=2000,
    )
    Pledge.objects.bulk_create(
        [
            Pledge(
                campaign=campaign,
                backer=user,
                amount="10.00",
                currency=campaign.currency,
                status=PledgeStatus.PAID,
                idempotency_key=f"seed-{user.id}",
                request_fingerprint="seed",
            )
            for user in users
        ],
        batch_size=2000,
    )
    Device.objects.bulk_create([Device(user=user, platform="ios", token=f"tok-{user.id}") for user in users])


def emails_in(folder: Path) -> Counter:
    """Recipients of the emails the file backend wrote, one count per message."""
    recipients = Counter()
    for path in folder.iterdir():
        for line in path.read_text().splitlines():
            if line.startswith("To: "):
                recipients[line.removeprefix("To: ")] += 1
    return recipients


def outbox(channel: str, state: str) -> int:
    return OutboxMessage.objects.filter(channel=channel, state=state).count()


@pytest.mark.broker
def test_a_fanout_to_10000_backers_survives_a_killed_worker_and_tells_each_backer_once(broker, tmp_path):
    campaign = CampaignFactory(live=True, title="Solar Kettle")
    seed_backers(campaign, BACKERS)
    worker = Worker(
        queues=["notifications"],
        concurrency=2,
        env={"EMAIL_URL": f"filemail:///{tmp_path}", "NOTIFICATIONS_EMAIL_RATE": "0", "NOTIFICATIONS_PUSH_RATE": "0"},
    ).wait_ready()
    try:
        update = campaign_update_create(campaign=campaign, author=campaign.creator, title="Shipped", body="Boxes out.")
        wait_for(lambda: outbox("email", OutboxState.SENT) >= 300, timeout=30, message="the first chunk's emails")
        for child in worker.child_pids():  # mid-chunk: killed as the OOM killer would
            os.kill(child, signal.SIGKILL)

        wait_for(
            lambda: (
                InAppNotification.objects.count() == BACKERS
                and SandboxPushDelivery.objects.count() == BACKERS
                and outbox("email", OutboxState.SENT) + outbox("email", OutboxState.FAILED) == BACKERS
            ),
            timeout=90,
            interval=0.5,
            message="every backer told on every channel",
        )
    finally:
        worker.stop()

    killed = TaskRecord.objects.filter(name__endswith="fanout_chunk_send", error_type="WorkerLostError")
    assert killed.exists()  # a chunk really was interrupted, and ran again
    chunks = TaskRecord.objects.filter(name__endswith="fanout_chunk_send")
    assert chunks.count() == BACKERS // 500 + 1  # the last one finds nobody left; no forked chain
    assert set(chunks.values_list("state", flat=True)) == {"succeeded"}

    subject = f"update:{update.id}"
    assert OutboxMessage.objects.filter(subject=subject).count() == 3 * BACKERS
    assert outbox("push", OutboxState.SENT) == BACKERS
    assert outbox("in_app", OutboxState.SENT) == BACKERS
    tokens = Counter(SandboxPushDelivery.objects.values_list("device_token", flat=True))
    assert len(tokens) == BACKERS
    assert max(tokens.values()) == 1

    # Email leaves our database: a worker killed mid-send leaves the group of emails its run had
    # claimed in doubt (at most CLAIM_GROUP per killed run). They are recorded failed (an admin may
    # resend) and never sent twice; some of them may have gone out before the kill.
    emails = emails_in(tmp_path)
    in_doubt = outbox("email", OutboxState.FAILED)
    assert max(emails.values()) == 1
    assert in_doubt <= CLAIM_GROUP * len(killed)
    assert outbox("email", OutboxState.SENT) <= sum(emails.values()) <= outbox("email", OutboxState.SENT) + in_doubt
