"""Closing campaigns at their deadline: succeeded or failed, a failed one's paid pledges refunded
through the provider in resumable chunks, backers and creator told."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError

from crowdfund.campaigns.models import Campaign, CampaignStatus
from crowdfund.notifications.models import NotificationKind, OutboxMessage
from crowdfund.payments import services, tasks
from crowdfund.payments.models import SandboxRefund
from crowdfund.payments.providers.sandbox import sandbox_intent_confirm
from crowdfund.pledges.models import Pledge, PledgeStatus
from crowdfund.pledges.services import pledge_create, pledge_mark_paid
from tasks.models import TaskRecord
from tests.factories import CampaignFactory, UserFactory

pytestmark = pytest.mark.django_db

CHUNK = "crowdfund.payments.tasks.campaign_refund_chunk"


def paid_pledge(campaign, amount="40.00", backer=None) -> Pledge:
    """A pledge paid as in real life: the backer confirms at the sandbox, the event is applied."""
    pledge = pledge_create(
        backer=backer or UserFactory(), campaign=campaign, amount=Decimal(amount), idempotency_key=str(uuid.uuid4())
    )
    sandbox_intent_confirm(intent_id=pledge.payment_intent_id, outcome="succeeded")
    return pledge_mark_paid(pledge=pledge)


def run_chunk_tasks() -> list[TaskRecord]:
    """Run the enqueued chunk tasks in order, as a worker would (each one enqueues the next)."""
    ran = []
    while (
        record := TaskRecord.objects.filter(name=CHUNK)
        .exclude(id__in=[r.id for r in ran])
        .order_by("created_at")
        .first()
    ):
        tasks.campaign_refund_chunk(**record.kwargs)
        ran.append(record)
    return ran


def test_a_campaign_past_its_deadline_that_met_its_goal_succeeds_and_everyone_is_told(creator):
    campaign = CampaignFactory(creator=creator, live=True, goal_amount=Decimal("50.00"))
    pledge = paid_pledge(campaign, "60.00")

    with time_machine.travel(campaign.deadline + timedelta(seconds=1)):
        assert services.campaigns_close_due() == 1

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SUCCEEDED
    pledge.refresh_from_db()
    assert pledge.status == PledgeStatus.PAID
    told = OutboxMessage.objects.about(kind=NotificationKind.CAMPAIGN_SUCCEEDED, subject=f"campaign:{campaign.id}")
    assert told.filter(recipient=creator).exists()
    assert TaskRecord.objects.filter(name="crowdfund.notifications.tasks.fanout_chunk_send").exists()  # the backers
    assert not TaskRecord.objects.filter(name=CHUNK).exists()


def test_a_live_campaign_before_its_deadline_is_left_alone():
    campaign = CampaignFactory(live=True)
    assert services.campaigns_close_due() == 0
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.LIVE


def test_a_failed_campaign_refunds_every_paid_pledge_exactly_once_in_chunks(settings, creator):
    settings.PAYMENTS_REFUND_CHUNK_SIZE = 2
    campaign = CampaignFactory(creator=creator, live=True, goal_amount=Decimal("1000.00"))
    paid = [paid_pledge(campaign) for _ in range(5)]
    pending = pledge_create(
        backer=UserFactory(), campaign=campaign, amount=Decimal("5.00"), idempotency_key="still-pending"
    )

    with time_machine.travel(campaign.deadline + timedelta(seconds=1)):
        services.campaigns_close_due()
        ran = run_chunk_tasks()
        run_chunk_tasks()  # a chunk redelivered (or run again by an admin) refunds nothing twice
        for record in ran:
            tasks.campaign_refund_chunk(**record.kwargs)

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.FAILED
    assert len(ran) == 3  # 2 + 2 + 1
    assert [record.kwargs["after"] for record in ran][0] is None
    assert {pledge.status for pledge in Pledge.objects.filter(id__in=[p.id for p in paid])} == {PledgeStatus.REFUNDED}
    assert SandboxRefund.objects.filter(intent__intent_id__in=[p.payment_intent_id for p in paid]).count() == 5
    pending.refresh_from_db()
    assert pending.status == PledgeStatus.PENDING
    assert (campaign.pledged_amount, campaign.backer_count) == (Decimal("0.00"), 0)
    refund_notices = OutboxMessage.objects.filter(kind=NotificationKind.REFUND_ISSUED)
    assert refund_notices.values("subject").distinct().count() == 5
    failed_notice = OutboxMessage.objects.about(
        kind=NotificationKind.CAMPAIGN_FAILED, subject=f"campaign:{campaign.id}"
    )
    assert failed_notice.filter(recipient=creator).exists()


def test_closing_twice_closes_once():
    campaign = CampaignFactory(live=True)
    with time_machine.travel(campaign.deadline + timedelta(seconds=1)):
        assert services.campaigns_close_due() == 1
        assert services.campaigns_close_due() == 0
    assert TaskRecord.objects.filter(name=CHUNK).count() == 1


def test_the_totals_check_passes_when_totals_equal_the_paid_pledges(capsys):
    campaign = CampaignFactory(live=True)
    paid_pledge(campaign, "12.00")
    call_command("payments_check_totals")
    assert "equal the sum of its paid pledges" in capsys.readouterr().out


def test_the_totals_check_fails_and_names_a_campaign_whose_totals_drifted(capsys):
    campaign = CampaignFactory(live=True, title="Drifted")
    paid_pledge(campaign, "12.00")
    Campaign.objects.filter(id=campaign.id).update(pledged_amount=Decimal("13.00"))
    with pytest.raises(CommandError):
        call_command("payments_check_totals")
    assert "'Drifted': pledged_amount 13.00 but paid pledges sum to 12.00" in capsys.readouterr().err
