"""Closing campaigns at their deadline: succeeded or failed, a failed one's paid pledges refunded
through the provider in resumable chunks, backers and creator told. Cancelling a live campaign
refunds its paid pledges through the same chunks."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError

from crowdfund.campaigns.models import Campaign, CampaignStatus
from crowdfund.common.errors import DomainError
from crowdfund.notifications.models import NotificationKind, OutboxMessage
from crowdfund.payments import services, tasks
from crowdfund.payments.models import PaymentEvent, SandboxRefund
from crowdfund.payments.providers.sandbox import sandbox_intent_confirm
from crowdfund.pledges.models import Pledge, PledgeStatus
from crowdfund.pledges.services import pledge_create, pledge_mark_paid
from tasks.models import TaskRecord
from tests.crowdfund.payments.conftest import event_body, post_webhook
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


# --- Cancelling -------------------------------------------------------------------------------------


def test_cancelling_a_live_campaign_refunds_every_paid_pledge_exactly_once_in_chunks(settings, creator):
    settings.PAYMENTS_REFUND_CHUNK_SIZE = 2
    campaign = CampaignFactory(creator=creator, live=True, goal_amount=Decimal("1000.00"))
    paid = [paid_pledge(campaign, amount) for amount in ("10.00", "20.00", "30.00", "40.00", "50.00")]
    pending = pledge_create(
        backer=UserFactory(), campaign=campaign, amount=Decimal("5.00"), idempotency_key="still-pending"
    )
    campaign.refresh_from_db()
    assert campaign.pledged_amount == Decimal("150.00")

    services.campaign_cancel(campaign=campaign)
    ran = run_chunk_tasks()
    for record in ran:  # a chunk redelivered (or run again by an admin) refunds nothing twice
        tasks.campaign_refund_chunk(**record.kwargs)

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    assert len(ran) == 3  # 2 + 2 + 1
    assert ran[0].kwargs == {"campaign_id": str(campaign.id), "after": None}
    assert {pledge.status for pledge in Pledge.objects.filter(id__in=[p.id for p in paid])} == {PledgeStatus.REFUNDED}
    refunds = SandboxRefund.objects.filter(intent__intent_id__in=[p.payment_intent_id for p in paid])
    assert sorted(refunds.values_list("amount", flat=True)) == [Decimal(a) for a in ("10", "20", "30", "40", "50")]
    pending.refresh_from_db()
    assert pending.status == PledgeStatus.PENDING
    assert (campaign.pledged_amount, campaign.backer_count) == (Decimal("0.00"), 0)
    assert OutboxMessage.objects.filter(kind=NotificationKind.REFUND_ISSUED).values("subject").distinct().count() == 5
    cancelled_notice = OutboxMessage.objects.about(
        kind=NotificationKind.CAMPAIGN_CANCELLED, subject=f"campaign:{campaign.id}"
    )
    assert cancelled_notice.filter(recipient=creator).exists()
    call_command("payments_check_totals")


def test_cancelling_marks_the_campaign_and_enqueues_the_first_chunk_in_one_transaction(monkeypatch):
    campaign = CampaignFactory(live=True)
    paid_pledge(campaign)

    def ledger_write_fails(*args, **kwargs):
        raise RuntimeError("the task ledger refused the row")

    monkeypatch.setattr(services, "task_enqueue", ledger_write_fails)
    with pytest.raises(RuntimeError):
        services.campaign_cancel(campaign=campaign)

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.LIVE  # rolled back with the enqueue
    assert not TaskRecord.objects.filter(name=CHUNK).exists()


def test_cancelling_a_draft_enqueues_no_refunds(draft_campaign):
    services.campaign_cancel(campaign=draft_campaign)
    draft_campaign.refresh_from_db()
    assert draft_campaign.status == CampaignStatus.CANCELLED
    assert not TaskRecord.objects.filter(name=CHUNK).exists()


def test_cancelling_a_finished_campaign_is_refused_and_enqueues_nothing():
    campaign = CampaignFactory(status=CampaignStatus.FAILED)
    with pytest.raises(DomainError) as refused:
        services.campaign_cancel(campaign=campaign)
    assert refused.value.code == "invalid_transition"
    assert not TaskRecord.objects.filter(name=CHUNK).exists()


def test_a_cancelled_campaign_takes_no_new_pledges(api_client, backer, live_campaign):
    services.campaign_cancel(campaign=live_campaign)
    response = api_client(backer).post(
        f"/api/v1/campaigns/{live_campaign.id}/pledges", {"amount": "5.00"}, HTTP_IDEMPOTENCY_KEY="late"
    )
    assert (response.status_code, response.json()["code"]) == (409, "campaign_not_live")
    assert not Pledge.objects.filter(campaign=live_campaign).exists()


def test_a_pending_pledge_paid_after_its_campaign_was_cancelled_is_refunded(client, live_campaign):
    pledge = pledge_create(
        backer=UserFactory(), campaign=live_campaign, amount=Decimal("25.00"), idempotency_key="paid-late"
    )
    services.campaign_cancel(campaign=live_campaign)
    run_chunk_tasks()  # the pledge was not paid yet: the chunk passes it by

    sandbox_intent_confirm(intent_id=pledge.payment_intent_id, outcome="succeeded")  # the backer pays late
    post_webhook(client, event_body(pledge, "payment.succeeded"))
    services.payment_event_apply(event_id=PaymentEvent.objects.get().id)
    assert PaymentEvent.objects.get().outcome == "pending → paid after its campaign cancelled: refunding."
    [refund] = TaskRecord.objects.filter(name="crowdfund.payments.tasks.pledge_refund")
    tasks.pledge_refund(**refund.kwargs)

    pledge.refresh_from_db()
    live_campaign.refresh_from_db()
    assert pledge.status == PledgeStatus.REFUNDED
    assert SandboxRefund.objects.filter(intent__intent_id=pledge.payment_intent_id).count() == 1
    assert (live_campaign.pledged_amount, live_campaign.backer_count) == (Decimal("0.00"), 0)
