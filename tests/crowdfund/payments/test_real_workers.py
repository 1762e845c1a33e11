"""Payments against the real stack: HTTP webhooks to a live server, real workers over RabbitMQ,
real concurrency against PostgreSQL."""

import os
import signal
import threading
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from crowdfund.campaigns.models import CampaignStatus
from crowdfund.notifications.models import NotificationKind, OutboxMessage
from crowdfund.payments import services
from crowdfund.payments.models import PaymentEvent, PaymentEventState, SandboxEvent, SandboxRefund
from crowdfund.payments.providers.sandbox import sandbox_intent_confirm, sign
from crowdfund.pledges.models import Pledge, PledgeStatus
from crowdfund.pledges.services import pledge_create, pledge_mark_paid
from tasks.models import TaskRecord, TaskState
from tests.crowdfund.payments.conftest import WEBHOOK_URL, event_body
from tests.factories import CampaignFactory, UserFactory
from tests.workers import wait_for

pytestmark = pytest.mark.broker


def in_threads(function, items) -> list:
    """Run function(item) for every item at once, one thread (and database connection) each."""
    barrier = threading.Barrier(len(items))
    results = [None] * len(items)

    def run(index, item):
        try:
            barrier.wait()
            results[index] = function(item)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(index, item)) for index, item in enumerate(items)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_a_payment_confirmed_through_the_api_is_posted_over_http_and_a_worker_pays_the_pledge(
    start_worker, live_server, api_client, backer, live_campaign
):
    start_worker(env={"PAYMENTS_SANDBOX_WEBHOOK_URL": live_server.url + WEBHOOK_URL})
    created = api_client(backer).post(
        f"/api/v1/campaigns/{live_campaign.id}/pledges", {"amount": "25.00"}, HTTP_IDEMPOTENCY_KEY="e2e"
    )
    intent_id = created.json()["payment"]["intent_id"]

    confirmed = api_client().post(f"/api/v1/payments/sandbox/intents/{intent_id}/confirm", {"outcome": "succeeded"})

    assert confirmed.status_code == 202
    assert confirmed.json() == {"intent_id": intent_id, "status": "succeeded"}
    pledge = Pledge.objects.get(id=created.json()["id"])
    wait_for(lambda: Pledge.objects.get(id=pledge.id).status == PledgeStatus.PAID, timeout=30, message="paid")
    live_campaign.refresh_from_db()
    assert (live_campaign.pledged_amount, live_campaign.backer_count) == (Decimal("25.00"), 1)
    sent = SandboxEvent.objects.get(intent__intent_id=intent_id)
    assert (sent.delivery_count, sent.last_status) == (1, 200)
    received = PaymentEvent.objects.get(event_id=sent.event_id)
    assert received.raw_body == sent.body
    assert received.state == PaymentEventState.PROCESSED
    wait_for(lambda: TaskRecord.objects.get(id=received.task_id).state == TaskState.SUCCEEDED, message="task done")
    receipt = OutboxMessage.objects.about(kind=NotificationKind.PLEDGE_RECEIPT, subject=f"pledge:{pledge.id}")
    assert receipt.filter(recipient=backer).exists()


def test_fifty_concurrent_webhooks_for_one_campaign_leave_its_totals_exact(broker):
    campaign = CampaignFactory(live=True, goal_amount=Decimal("100000.00"))
    backers = [UserFactory() for _ in range(10)]
    pledges = [
        pledge_create(
            backer=backers[index % 10],
            campaign=campaign,
            amount=Decimal(10 + index),
            idempotency_key=str(uuid.uuid4()),
        )
        for index in range(50)
    ]
    outcomes = ["payment.failed" if index % 5 == 4 else "payment.succeeded" for index in range(50)]
    bodies = [event_body(pledge, outcome) for pledge, outcome in zip(pledges, outcomes, strict=True)]

    def post(body):  # the whole request path (Django's handler), 50 at once, each on its own connection
        return Client().post(WEBHOOK_URL, data=body, content_type="application/json", HTTP_SANDBOX_SIGNATURE=sign(body))

    statuses = [response.status_code for response in in_threads(post, bodies)]
    event_ids = list(PaymentEvent.objects.values_list("id", flat=True))
    in_threads(lambda event_id: services.payment_event_apply(event_id=event_id), event_ids)

    assert statuses == [200] * 50
    assert PaymentEvent.objects.filter(state=PaymentEventState.PROCESSED).count() == 50
    paid = [pledge for pledge, outcome in zip(pledges, outcomes, strict=True) if outcome == "payment.succeeded"]
    campaign.refresh_from_db()
    assert campaign.pledged_amount == sum(pledge.amount for pledge in paid)
    assert campaign.backer_count == len({pledge.backer_id for pledge in paid})
    assert Pledge.objects.filter(campaign=campaign, status=PledgeStatus.PAID).count() == 40
    call_command("payments_check_totals")  # raises on a mismatch


def test_a_failed_campaign_refunds_every_paid_pledge_once_even_when_a_chunk_is_killed_midway(
    start_worker, live_server, settings
):
    campaign = CampaignFactory(live=True, goal_amount=Decimal("100000.00"))
    pledges = _paid_pledges(campaign, count=15, amount=Decimal("20.00"))
    campaign.deadline = timezone.now() - timedelta(minutes=1)
    campaign.save(update_fields=["deadline"])
    worker = start_worker(
        concurrency=1,
        env={
            "PAYMENTS_SANDBOX_WEBHOOK_URL": live_server.url + WEBHOOK_URL,
            "PAYMENTS_REFUND_CHUNK_SIZE": "10",
            "PAYMENTS_SANDBOX_LATENCY_SECONDS": "0.25",  # a slow provider, so the kill lands mid-chunk
        },
    )

    services.campaigns_close_due()
    wait_for(lambda: 2 <= SandboxRefund.objects.count() <= 6, timeout=30, message="the first chunk under way")
    [child] = worker.child_pids()
    os.kill(child, signal.SIGKILL)

    _assert_each_refunded_once(campaign, pledges, status=CampaignStatus.FAILED)
    assert SandboxEvent.objects.filter(type="payment.refunded").count() == 15  # one refund each, once
    chunks = TaskRecord.objects.filter(name="crowdfund.payments.tasks.campaign_refund_chunk").order_by("created_at")
    wait_for(lambda: all(chunk.state == TaskState.SUCCEEDED for chunk in chunks), message="chunks succeeded")
    first, second = chunks
    assert (first.attempts, first.error_type) == (2, "WorkerLostError")
    assert second.attempts == 1
    assert OutboxMessage.objects.filter(kind=NotificationKind.REFUND_ISSUED).values("subject").distinct().count() == 15
    call_command("payments_check_totals")


def test_a_campaign_its_creator_cancels_through_the_api_has_every_paid_pledge_refunded_once_by_a_worker(
    start_worker, live_server, api_client, creator, live_campaign
):
    pledges = _paid_pledges(live_campaign, count=7, amount=Decimal("15.00"))
    start_worker(env={"PAYMENTS_SANDBOX_WEBHOOK_URL": live_server.url + WEBHOOK_URL, "PAYMENTS_REFUND_CHUNK_SIZE": "3"})

    response = api_client(creator).post(f"/api/v1/campaigns/{live_campaign.id}/cancel")

    assert response.status_code == 200
    _assert_each_refunded_once(live_campaign, pledges, status=CampaignStatus.CANCELLED)
    chunks = TaskRecord.objects.filter(name="crowdfund.payments.tasks.campaign_refund_chunk")
    wait_for(lambda: chunks.count() == 3, message="three chunks (3 + 3 + 1)")
    wait_for(lambda: all(chunk.state == TaskState.SUCCEEDED for chunk in chunks), message="chunks succeeded")
    # The refunds' own webhooks came back over HTTP and changed nothing more.
    wait_for(lambda: PaymentEvent.objects.filter(type="payment.refunded").count() == 7, message="refund webhooks")
    wait_for(
        lambda: not PaymentEvent.objects.filter(state=PaymentEventState.RECEIVED).exists(), message="events applied"
    )
    assert Pledge.objects.filter(campaign=live_campaign, status=PledgeStatus.REFUNDED).count() == 7
    call_command("payments_check_totals")


def _paid_pledges(campaign, *, count: int, amount: Decimal) -> list:
    """`count` pledges paid at the sandbox, each by a new backer; the ledger and the sandbox's
    webhooks start empty after them (the confirmations are not the tests' business)."""
    pledges = []
    for _ in range(count):
        pledge = pledge_create(
            backer=UserFactory(), campaign=campaign, amount=amount, idempotency_key=str(uuid.uuid4())
        )
        sandbox_intent_confirm(intent_id=pledge.payment_intent_id, outcome="succeeded")
        pledges.append(pledge_mark_paid(pledge=pledge))
    SandboxEvent.objects.all().delete()
    TaskRecord.objects.all().delete()
    return pledges


def _assert_each_refunded_once(campaign, pledges: list, *, status: str) -> None:
    """Wait until every pledge is refunded, then check the campaign's status, its totals (zero)
    and that the sandbox refunded each pledge exactly once."""
    refunded = Pledge.objects.filter(id__in=[p.id for p in pledges], status=PledgeStatus.REFUNDED)
    wait_for(lambda: refunded.count() == len(pledges), timeout=45, message="every pledge refunded")
    campaign.refresh_from_db()
    assert campaign.status == status
    assert (campaign.pledged_amount, campaign.backer_count) == (Decimal("0.00"), 0)
    refunds = SandboxRefund.objects.filter(intent__intent_id__in=[p.payment_intent_id for p in pledges])
    assert refunds.count() == len(pledges)
