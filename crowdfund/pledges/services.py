"""Pledges: idempotent creation with a reward slot reserved under a row lock, and cancellation."""

import hashlib
import json
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import Campaign, Reward
from crowdfund.common.errors import DomainError
from crowdfund.notifications.models import NotificationKind
from crowdfund.notifications.services import notification_send
from crowdfund.payments.providers import get_provider
from crowdfund.pledges.models import HOLDING_A_SLOT, Pledge, PledgeStatus, moves_forward

# What the backer is told when their pledge reaches each payment state.
NOTIFICATION_FOR = {
    PledgeStatus.PAID: NotificationKind.PLEDGE_RECEIPT,
    PledgeStatus.FAILED: NotificationKind.PAYMENT_FAILED,
    PledgeStatus.REFUNDED: NotificationKind.REFUND_ISSUED,
}


def pledge_create(*, backer: User, campaign: Campaign, amount: Decimal, reward_id=None, idempotency_key: str) -> Pledge:
    """Create a pending pledge with a payment intent, or return the pledge an earlier request with
    the same key and body created (a repeat after a timeout must never pledge twice).

    The pledge is committed before the provider is called, so no row lock is held over the
    network; if the provider fails, a repeat of the request attaches the intent then.
    """
    fingerprint = _fingerprint(campaign=campaign, amount=amount, reward_id=reward_id)
    pledge = _pledge_replayed(backer=backer, idempotency_key=idempotency_key, fingerprint=fingerprint)
    if pledge is None:
        try:
            pledge = _pledge_insert(
                backer=backer,
                campaign=campaign,
                amount=amount,
                reward_id=reward_id,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
            )
        except IntegrityError:
            # A concurrent request with the same key inserted first; answer as its repeat.
            pledge = _pledge_replayed(backer=backer, idempotency_key=idempotency_key, fingerprint=fingerprint)
            if pledge is None:
                raise
    return pledge_payment_attach(pledge=pledge)


def _fingerprint(*, campaign: Campaign, amount: Decimal, reward_id) -> str:
    body = {"campaign": str(campaign.id), "amount": str(amount.quantize(Decimal("0.01"))), "reward": str(reward_id)}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _pledge_replayed(*, backer: User, idempotency_key: str, fingerprint: str) -> Pledge | None:
    pledge = Pledge.objects.filter(backer=backer, idempotency_key=idempotency_key).first()
    if pledge is not None and pledge.request_fingerprint != fingerprint:
        raise DomainError(
            "idempotency_key_reused",
            "This Idempotency-Key was already used for a different pledge; use a new key.",
            status=422,
        )
    return pledge


def _pledge_insert(*, backer, campaign, amount, reward_id, idempotency_key, fingerprint) -> Pledge:
    _check_can_pledge(backer=backer, campaign=campaign)
    with transaction.atomic():
        reward = None if reward_id is None else _reward_reserve(campaign=campaign, reward_id=reward_id, amount=amount)
        return Pledge.objects.create(
            campaign=campaign,
            backer=backer,
            reward=reward,
            amount=amount,
            currency=campaign.currency,
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint,
        )


def _check_can_pledge(*, backer: User, campaign: Campaign) -> None:
    if campaign.creator_id == backer.id:
        raise DomainError("own_campaign", "You cannot pledge to your own campaign.", status=403)
    if not campaign.is_live:
        raise DomainError("campaign_not_live", "This campaign is not taking pledges.", status=409)


def _reward_reserve(*, campaign: Campaign, reward_id, amount: Decimal) -> Reward:
    """Take one slot of the reward. The row lock makes concurrent pledges for the last slot queue
    up here: the first takes it, the others then see none left."""
    reward = Reward.objects.select_for_update().filter(campaign=campaign, id=reward_id).first()
    if reward is None:
        raise DomainError("reward_not_found", "No such reward in this campaign.", fields={"reward": ["Unknown."]})
    if amount < reward.minimum_amount:
        message = f"At least {reward.minimum_amount} {campaign.currency} for this reward."
        raise DomainError("amount_below_reward_minimum", message, fields={"amount": [message]})
    if reward.slots_left == 0:
        raise DomainError("reward_sold_out", "This reward has no slots left.", status=409)
    reward.reserved_count = F("reserved_count") + 1
    reward.save(update_fields=["reserved_count"])
    reward.refresh_from_db(fields=["reserved_count"])
    return reward


def pledge_payment_attach(*, pledge: Pledge) -> Pledge:
    """Give the pledge its payment intent at the provider, once."""
    if pledge.payment_intent_id:
        return pledge
    provider = get_provider()
    intent = provider.create_intent(
        amount=pledge.amount,
        currency=pledge.currency,
        reference=f"pledge:{pledge.id}",
        idempotency_key=f"pledge:{pledge.id}",  # a retried attach gets the same intent back
    )
    pledge.payment_provider = intent.provider
    pledge.payment_intent_id = intent.intent_id
    pledge.payment_client_secret = intent.client_secret
    pledge.save(update_fields=["payment_provider", "payment_intent_id", "payment_client_secret", "updated_at"])
    return pledge


def pledge_cancel(*, pledge: Pledge) -> Pledge:
    """Withdraw a pending pledge while its campaign is live, giving its reward slot back.

    A paid pledge needs a refund; the payments issue extends this to paid pledges.
    """
    with transaction.atomic():
        pledge = Pledge.objects.select_for_update().select_related("campaign").get(id=pledge.id)
        if not pledge.campaign.is_live:
            message = "Pledges can be cancelled only while the campaign is live."
            raise DomainError("campaign_not_live", message, status=409)
        if pledge.status != PledgeStatus.PENDING:
            raise DomainError("pledge_not_cancellable", f"A {pledge.status} pledge cannot be cancelled.", status=409)
        _reward_release(pledge)
        pledge.status = PledgeStatus.CANCELLED
        pledge.cancelled_at = timezone.now()
        pledge.save(update_fields=["status", "cancelled_at", "updated_at"])
    return pledge


def _reward_release(pledge: Pledge) -> None:
    if pledge.reward_id is not None and pledge.status in HOLDING_A_SLOT:
        Reward.objects.filter(id=pledge.reward_id).update(reserved_count=F("reserved_count") - 1)


def pledge_lock(*, pledge_id) -> Pledge:
    """Lock the pledge's campaign, then the pledge, in the caller's transaction: the order every
    writer of payment states uses, so two of them never deadlock. `pledge.campaign` is the locked row."""
    campaign_id = Pledge.objects.values_list("campaign_id", flat=True).get(id=pledge_id)
    campaign = Campaign.objects.select_for_update().get(id=campaign_id)
    pledge = Pledge.objects.select_for_update().get(id=pledge_id)
    pledge.campaign = campaign
    return pledge


def pledge_advance(*, pledge: Pledge, status: str) -> bool:
    """Move a pledge locked with `pledge_lock` to `status` if that is a move forward (see
    PAYMENT_RANK), keeping its reward slot, its campaign's totals and the backer's notification in
    step, all in the caller's transaction. Returns whether it moved.

    Events arrive out of order and twice; ranking the states makes the pledge end in the state of
    the furthest-forward event whatever the order, and a repeat is a no-op.
    """
    if not moves_forward(pledge.status, status):
        return False
    previous, pledge.status = pledge.status, status
    if status == PledgeStatus.PAID:
        pledge.paid_at = timezone.now()
    pledge.save(update_fields=["status", "paid_at", "updated_at"])
    _reward_slot_follow(pledge, previous=previous)
    _campaign_totals_follow(pledge, previous=previous)
    notification_send(
        kind=NOTIFICATION_FOR[status],
        recipient=pledge.backer,
        subject=f"pledge:{pledge.id}",
        context={"pledge_id": str(pledge.id), "amount": f"{pledge.amount:.2f}", "currency": pledge.currency},
    )
    return True


def _reward_slot_follow(pledge: Pledge, *, previous: str) -> None:
    held, holds = previous in HOLDING_A_SLOT, pledge.status in HOLDING_A_SLOT
    if pledge.reward_id is None or held == holds:
        return
    rewards = Reward.objects.filter(id=pledge.reward_id)
    if held:
        rewards.update(reserved_count=F("reserved_count") - 1)
    else:
        # Paid after a failure: the money is taken, so the pledge stands; it gets its slot back
        # only if one is left (the database refuses overselling).
        rewards.filter(Q(quantity__isnull=True) | Q(reserved_count__lt=F("quantity"))).update(
            reserved_count=F("reserved_count") + 1
        )


def _campaign_totals_follow(pledge: Pledge, *, previous: str) -> None:
    """Add the pledge to its campaign's totals when it becomes paid, take it out when it stops
    being paid; a backer counts once however many paid pledges they have. F expressions, under
    the campaign's lock: the totals always equal the sum of the paid pledges."""
    delta = int(pledge.status == PledgeStatus.PAID) - int(previous == PledgeStatus.PAID)
    if delta == 0:
        return
    other_paid = Pledge.objects.filter(campaign=pledge.campaign_id, backer=pledge.backer_id, status=PledgeStatus.PAID)
    backer_delta = 0 if other_paid.exclude(id=pledge.id).exists() else delta
    Campaign.objects.filter(id=pledge.campaign_id).update(
        pledged_amount=F("pledged_amount") + delta * pledge.amount, backer_count=F("backer_count") + backer_delta
    )


def _pledge_move(*, pledge: Pledge, status: str) -> Pledge:
    with transaction.atomic():
        pledge = pledge_lock(pledge_id=pledge.id)
        pledge_advance(pledge=pledge, status=status)
    return pledge


def pledge_mark_paid(*, pledge: Pledge) -> Pledge:
    """Pending (or failed) → paid, adding the pledge to its campaign's totals; a no-op otherwise.
    The payments flow goes through `pledge_advance` under its own lock; the demo data uses this."""
    return _pledge_move(pledge=pledge, status=PledgeStatus.PAID)


def pledge_mark_failed(*, pledge: Pledge) -> Pledge:
    """Pending → failed, giving the reward slot back."""
    return _pledge_move(pledge=pledge, status=PledgeStatus.FAILED)


def pledge_mark_refunded(*, pledge: Pledge) -> Pledge:
    """→ refunded (after the provider refunded it), taking it out of its campaign's totals."""
    return _pledge_move(pledge=pledge, status=PledgeStatus.REFUNDED)
