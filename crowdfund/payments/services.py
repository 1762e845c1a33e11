"""Payments: the webhook inbox, applying payment events to pledges, refunds, closing campaigns at
their deadline and cancelling them (refunding failed and cancelled ones in resumable chunks), and
reconciliation with the provider."""

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from crowdfund.campaigns import services as campaigns
from crowdfund.campaigns.models import Campaign, CampaignStatus
from crowdfund.common.errors import DomainError
from crowdfund.payments import tasks
from crowdfund.payments.models import PaymentEvent, PaymentEventState, PaymentEventType
from crowdfund.payments.providers import PaymentProvider, ProviderError, get_provider
from crowdfund.pledges.models import Pledge, PledgeStatus
from crowdfund.pledges.services import pledge_advance, pledge_lock
from tasks.services import task_enqueue, task_enqueue_if_inserted

log = logging.getLogger(__name__)

EVENT_STATUS = {
    PaymentEventType.SUCCEEDED: PledgeStatus.PAID,
    PaymentEventType.FAILED: PledgeStatus.FAILED,
    PaymentEventType.REFUNDED: PledgeStatus.REFUNDED,
}
# A provider's intent status, as the pledge status it means (canceled: abandoned, never paid).
INTENT_STATUS = {
    "succeeded": PledgeStatus.PAID,
    "failed": PledgeStatus.FAILED,
    "refunded": PledgeStatus.REFUNDED,
    "canceled": PledgeStatus.FAILED,
}
# Campaigns closed per run of the closing job, and pledges checked per run of reconciliation.
CLOSE_BATCH_SIZE = 100
RECONCILE_BATCH_SIZE = 500


# --- The webhook inbox ----------------------------------------------------------------------------


_EVENT_INSERT_SQL = f"""
INSERT INTO {PaymentEvent._meta.db_table}
       (id, provider, event_id, type, intent_id, amount, currency, provider_created, raw_body, received_at,
        state, outcome, task_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'received', '', %s)
ON CONFLICT (provider, event_id) DO NOTHING
RETURNING id
"""


def webhook_receive(*, provider: PaymentProvider, body: bytes, headers) -> bool:
    """Verify and store a webhook event once, and enqueue its processing with it, in one statement
    (committed before the provider is answered). Returns False for a duplicate (stored before;
    acknowledged, not processed again): its processing task is not recorded either."""
    event = provider.parse_webhook(body=body, headers=headers)
    try:
        raw_body = body.decode()
    except UnicodeDecodeError:
        raise DomainError("webhook_malformed", "The body is not UTF-8.") from None
    event_pk, task_id = uuid.uuid4(), uuid.uuid4()
    params = [event_pk, event.provider, event.event_id, event.type, event.intent_id, event.amount, event.currency,
              event.created, raw_body, timezone.now(), task_id]  # fmt: skip
    return task_enqueue_if_inserted(
        tasks.payment_event_apply,
        insert_sql=_EVENT_INSERT_SQL,
        insert_params=params,
        kwargs={"event_id": str(event_pk)},
        correlation_key=f"intent:{event.intent_id}",
        task_id=task_id,
    )


# --- Applying events (and provider states) to pledges ---------------------------------------------


def payment_event_apply(*, event_id) -> PaymentEvent | None:
    """Apply a stored event to its pledge, once: the event is locked and only a `received` one is
    applied, so a rerun of the task (an admin's retry) changes nothing."""
    with transaction.atomic():
        event = PaymentEvent.objects.select_for_update().filter(id=event_id).first()
        if event is None or event.state != PaymentEventState.RECEIVED:
            return event
        pledges = Pledge.objects.filter(payment_provider=event.provider, payment_intent_id=event.intent_id)
        event.pledge_id = pledges.values_list("id", flat=True).first()
        if event.pledge_id is None:
            event.state, event.outcome = PaymentEventState.IGNORED, "No pledge has this intent."
        else:
            event.state, event.outcome = _pledge_outcome_apply(
                pledge_id=event.pledge_id,
                status=EVENT_STATUS[event.type],
                amount=event.amount,
                currency=event.currency,
            )
        event.processed_at = timezone.now()
        event.save(update_fields=["pledge", "state", "outcome", "processed_at"])
    return event


def _pledge_outcome_apply(*, pledge_id, status: str, amount, currency: str) -> tuple[str, str]:
    """The one transition code, for webhook events and reconciliation alike (caller's transaction):
    lock the campaign then the pledge, check the money, move the pledge forward if it is a move
    forward. Returns the event state it amounts to and a note for the admin."""
    pledge = pledge_lock(pledge_id=pledge_id)
    if (amount, currency) != (pledge.amount, pledge.currency):
        note = f"{amount} {currency} does not match the pledge's {pledge.amount} {pledge.currency}; not applied."
        log.warning("Payment for pledge %s flagged: %s", pledge.id, note)
        return PaymentEventState.FLAGGED, note
    if pledge.status == PledgeStatus.CANCELLED and status == PledgeStatus.PAID:
        return PaymentEventState.FLAGGED, "Paid for a cancelled pledge: refund it at the provider."
    previous = pledge.status
    if not pledge_advance(pledge=pledge, status=status):
        return PaymentEventState.IGNORED, f"{status} does not move a {previous} pledge forward; recorded only."
    if status == PledgeStatus.PAID and pledge.campaign.status in (CampaignStatus.FAILED, CampaignStatus.CANCELLED):
        # Paid after its campaign failed (the chunks refunding it may have passed by): refund it.
        task_enqueue(
            tasks.pledge_refund, kwargs={"pledge_id": str(pledge.id)}, idempotency_key=f"pledge_refund:{pledge.id}"
        )
        return PaymentEventState.PROCESSED, f"{previous} → paid after its campaign {pledge.campaign.status}: refunding."
    return PaymentEventState.PROCESSED, f"{previous} → {status}"


def pledge_refund(*, pledge: Pledge) -> Pledge:
    """Refund a paid pledge through its provider, then mark it refunded (out of the totals).

    The idempotency key names the pledge, so a rerun after a crash refunds it once. The provider
    is called outside any row lock: a real one is a network call.
    """
    if pledge.status != PledgeStatus.PAID:
        raise DomainError("pledge_not_refundable", f"A {pledge.status} pledge cannot be refunded.", status=409)
    get_provider(pledge.payment_provider).refund(
        intent_id=pledge.payment_intent_id, amount=pledge.amount, idempotency_key=f"refund:pledge:{pledge.id}"
    )
    with transaction.atomic():
        pledge = pledge_lock(pledge_id=pledge.id)
        pledge_advance(pledge=pledge, status=PledgeStatus.REFUNDED)
    return pledge


def pledge_check_with_provider(*, pledge: Pledge) -> str:
    """Bring a pending pledge up to date with its intent at the provider (for a webhook that never
    came); an intent abandoned for too long is cancelled and its pledge fails. Returns a note."""
    provider = get_provider(pledge.payment_provider)
    intent = provider.retrieve_intent(intent_id=pledge.payment_intent_id)
    abandoned_before = timezone.now() - timedelta(hours=settings.PAYMENTS_INTENT_ABANDONED_AFTER_HOURS)
    if intent.status == "requires_confirmation" and pledge.created_at < abandoned_before:
        intent = provider.cancel_intent(intent_id=pledge.payment_intent_id)
    status = INTENT_STATUS.get(intent.status)
    if status is None:
        return f"Still {intent.status} at the provider."
    with transaction.atomic():
        _, note = _pledge_outcome_apply(
            pledge_id=pledge.id, status=status, amount=intent.amount, currency=intent.currency
        )
    return note


def pledges_reconcile() -> int:
    """Check pledges pending longer than the threshold with the provider (oldest first, a batch per
    run). Returns how many were checked."""
    cutoff = timezone.now() - timedelta(minutes=settings.PAYMENTS_RECONCILE_AFTER_MINUTES)
    stale = Pledge.objects.filter(status=PledgeStatus.PENDING, created_at__lt=cutoff).exclude(payment_intent_id="")
    checked = 0
    for pledge in stale.order_by("created_at")[:RECONCILE_BATCH_SIZE]:
        try:
            note = pledge_check_with_provider(pledge=pledge)
        except ProviderError as exc:
            note = f"provider refused: {exc.detail}"
        log.info("Reconciled pledge %s: %s", pledge.id, note)
        checked += 1
    return checked


# --- Closing campaigns at their deadline, or cancelling them --------------------------------------


def campaigns_close_due() -> int:
    """Close live campaigns past their deadline (succeeded or failed); a failed one's paid pledges
    are refunded by a chain of chunk tasks. Safe to run twice at once: each campaign is closed
    under its row lock, skipped by a second run."""
    due = Campaign.objects.filter(status=CampaignStatus.LIVE, deadline__lte=timezone.now())
    closed = 0
    for campaign_id in due.order_by("deadline").values_list("id", flat=True)[:CLOSE_BATCH_SIZE]:
        with transaction.atomic():
            campaign = Campaign.objects.select_for_update(skip_locked=True).filter(id=campaign_id).first()
            if campaign is None or campaign.status != CampaignStatus.LIVE:
                continue
            campaign = campaigns.campaign_close(campaign=campaign)
            if campaign.status == CampaignStatus.FAILED:
                _refund_chunk_enqueue(campaign=campaign, after=None)
        closed += 1
    return closed


def campaign_cancel(*, campaign: Campaign) -> Campaign:
    """Cancel a draft or live campaign (its creator or an admin). A live one's paid pledges are
    refunded by the same chain of chunk tasks as a failed one's, its first chunk enqueued in the
    transaction that cancels it: no cancelled campaign is left holding backers' money. A pledge
    paid afterwards is refunded when its payment is applied (see _pledge_outcome_apply)."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(id=campaign.id)
        was_live = campaign.status == CampaignStatus.LIVE
        campaign = campaigns.campaign_cancel(campaign=campaign)
        if was_live:
            _refund_chunk_enqueue(campaign=campaign, after=None)
    return campaign


def _refund_chunk_enqueue(*, campaign: Campaign, after: str | None) -> None:
    task_enqueue(
        tasks.campaign_refund_chunk,
        kwargs={"campaign_id": str(campaign.id), "after": after},
        correlation_key=f"campaign:{campaign.id}",
        # Names the cursor: a chunk rerun after a crash enqueues the same next chunk, not a second one.
        idempotency_key=f"campaign_refund_chunk:{campaign.id}:{after or 'start'}",
    )


def campaign_refund_chunk(*, campaign: Campaign, after: str | None) -> int:
    """Refund the paid pledges among the next N pledges (by id, after the cursor) of a failed or
    cancelled campaign, then enqueue the next chunk. The window counts refunded pledges too, so a rerun
    after a crash covers exactly the same pledges and refunds only those still paid."""
    size = settings.PAYMENTS_REFUND_CHUNK_SIZE
    window = campaign.pledges.filter(status__in=[PledgeStatus.PAID, PledgeStatus.REFUNDED]).order_by("id")
    if after is not None:
        window = window.filter(id__gt=after)
    pledges = list(window[:size])
    refunded = 0
    for pledge in pledges:
        if pledge.status == PledgeStatus.PAID:
            try:
                pledge_refund(pledge=pledge)
                refunded += 1
            except ProviderError as exc:  # a refusal, not an outage: leave it to an admin, go on
                log.error("Refund of pledge %s refused by the provider: %s", pledge.id, exc.detail)
    if len(pledges) == size:
        with transaction.atomic():
            _refund_chunk_enqueue(campaign=campaign, after=str(pledges[-1].id))
    return refunded
