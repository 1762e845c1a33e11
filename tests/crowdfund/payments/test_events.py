"""Applying payment events to pledges: only forward moves, whatever the order and repetition."""

import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crowdfund.notifications.models import NotificationKind, OutboxMessage
from crowdfund.payments import services
from crowdfund.payments.models import PaymentEvent, PaymentEventState
from crowdfund.pledges.models import PledgeStatus
from crowdfund.pledges.services import pledge_create
from tasks.models import TaskRecord
from tests.crowdfund.payments.conftest import event_body, post_webhook
from tests.factories import CampaignFactory, RewardFactory, UserFactory

pytestmark = pytest.mark.django_db

TYPES = ["payment.succeeded", "payment.failed", "payment.refunded"]
FINAL_STATE = {
    "payment.failed": PledgeStatus.FAILED,
    "payment.succeeded": PledgeStatus.PAID,
    "payment.refunded": PledgeStatus.REFUNDED,
}
RANK = {PledgeStatus.PENDING: 0, PledgeStatus.FAILED: 1, PledgeStatus.PAID: 2, PledgeStatus.REFUNDED: 3}


def new_pledge(amount="25.00", **kwargs):
    campaign = kwargs.pop("campaign", None) or CampaignFactory(live=True)
    return pledge_create(
        backer=kwargs.pop("backer", None) or UserFactory(),
        campaign=campaign,
        amount=Decimal(amount),
        idempotency_key=str(uuid.uuid4()),
        **kwargs,
    )


def deliver_and_apply(client, pledge, types: list[str]) -> None:
    for event_type in types:
        post_webhook(client, event_body(pledge, event_type))
        for event_id in PaymentEvent.objects.filter(state=PaymentEventState.RECEIVED).values_list("id", flat=True):
            services.payment_event_apply(event_id=event_id)


# Each distinct event (one per type at most, as a provider sends) may be delivered several times,
# in any order: a shuffled, duplicated sequence of deliveries of a set of event ids.
deliveries = st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True).flatmap(
    lambda kinds: st.lists(st.sampled_from(kinds), min_size=len(kinds), max_size=8).filter(
        lambda seq: set(seq) == set(kinds)
    )
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=deliveries)
def test_whatever_the_order_and_repetition_a_pledge_ends_in_the_state_of_the_furthest_forward_event(client, sequence):
    pledge = new_pledge()
    event_ids = {event_type: f"evt_{pledge.id}_{event_type}" for event_type in set(sequence)}

    for event_type in sequence:
        post_webhook(client, event_body(pledge, event_type, event_id=event_ids[event_type]))
        for event_id in PaymentEvent.objects.filter(pledge__isnull=True, state=PaymentEventState.RECEIVED).values_list(
            "id", flat=True
        ):
            services.payment_event_apply(event_id=event_id)

    expected = max((FINAL_STATE[event_type] for event_type in sequence), key=RANK.__getitem__)
    pledge.refresh_from_db()
    pledge.campaign.refresh_from_db()
    assert pledge.status == expected
    paid = expected == PledgeStatus.PAID
    assert pledge.campaign.pledged_amount == (pledge.amount if paid else Decimal("0.00"))
    assert pledge.campaign.backer_count == int(paid)
    assert PaymentEvent.objects.filter(pledge=pledge).count() == len(event_ids)  # each stored once
    assert not PaymentEvent.objects.filter(pledge=pledge, state=PaymentEventState.RECEIVED).exists()


def test_a_refund_seen_before_the_success_still_ends_refunded_and_is_never_counted(client):
    pledge = new_pledge()
    deliver_and_apply(client, pledge, ["payment.refunded", "payment.succeeded"])
    pledge.refresh_from_db()
    pledge.campaign.refresh_from_db()
    assert pledge.status == PledgeStatus.REFUNDED
    assert (pledge.campaign.pledged_amount, pledge.campaign.backer_count) == (Decimal("0.00"), 0)
    states = dict(PaymentEvent.objects.values_list("type", "state"))
    assert states == {"payment.refunded": PaymentEventState.PROCESSED, "payment.succeeded": PaymentEventState.IGNORED}


def test_a_failure_after_the_payment_is_recorded_and_ignored(client):
    pledge = new_pledge()
    deliver_and_apply(client, pledge, ["payment.succeeded", "payment.failed"])
    pledge.refresh_from_db()
    pledge.campaign.refresh_from_db()
    assert pledge.status == PledgeStatus.PAID
    assert pledge.campaign.pledged_amount == Decimal("25.00")
    failed = PaymentEvent.objects.get(type="payment.failed")
    assert failed.state == PaymentEventState.IGNORED
    assert failed.outcome == "failed does not move a paid pledge forward; recorded only."


def test_a_refund_after_the_payment_takes_it_out_of_the_totals_and_tells_the_backer(client):
    campaign = CampaignFactory(live=True)
    backer = UserFactory()
    kept = new_pledge(campaign=campaign, backer=backer, amount="10.00")
    refunded = new_pledge(campaign=campaign, backer=backer, amount="30.00")
    deliver_and_apply(client, kept, ["payment.succeeded"])
    deliver_and_apply(client, refunded, ["payment.succeeded", "payment.refunded"])
    campaign.refresh_from_db()
    assert (campaign.pledged_amount, campaign.backer_count) == (Decimal("10.00"), 1)
    notices = OutboxMessage.objects.about(kind=NotificationKind.REFUND_ISSUED, subject=f"pledge:{refunded.id}")
    assert notices.exists()


def test_a_failed_payment_gives_the_reward_slot_back_and_tells_the_backer(client):
    reward = RewardFactory(quantity=1, minimum_amount=Decimal("20.00"))
    pledge = new_pledge(campaign=reward.campaign, reward_id=reward.id)
    reward.refresh_from_db()
    assert reward.slots_left == 0
    deliver_and_apply(client, pledge, ["payment.failed"])
    reward.refresh_from_db()
    pledge.refresh_from_db()
    assert (pledge.status, reward.slots_left) == (PledgeStatus.FAILED, 1)
    assert OutboxMessage.objects.about(kind=NotificationKind.PAYMENT_FAILED, subject=f"pledge:{pledge.id}").exists()


def test_a_payment_arriving_after_its_campaign_failed_is_refunded(client):
    pledge = new_pledge()
    type(pledge.campaign).objects.filter(id=pledge.campaign_id).update(status="failed")
    deliver_and_apply(client, pledge, ["payment.succeeded"])
    event = PaymentEvent.objects.get()
    assert event.outcome == "pending → paid after its campaign failed: refunding."
    assert TaskRecord.objects.filter(name="crowdfund.payments.tasks.pledge_refund", kwargs__pledge_id=str(pledge.id))
