import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from crowdfund.campaigns.models import MONEY, Campaign, Reward


class PledgeStatus(models.TextChoices):
    PENDING = "pending", "Pending (awaiting payment)"
    PAID = "paid", "Paid"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    REFUNDED = "refunded", "Refunded"


# Pledges in these states hold their reward's slot.
HOLDING_A_SLOT = (PledgeStatus.PENDING, PledgeStatus.PAID)

# How far along its payment a pledge is. Payment events arrive out of order and more than once; a
# pledge only ever moves up this ranking, so it ends in the state of the furthest-forward event
# (a refund seen before the success still ends refunded). Cancelled pledges are outside it.
PAYMENT_RANK = {PledgeStatus.PENDING: 0, PledgeStatus.FAILED: 1, PledgeStatus.PAID: 2, PledgeStatus.REFUNDED: 3}


def moves_forward(current: str, target: str) -> bool:
    return current in PAYMENT_RANK and target in PAYMENT_RANK and PAYMENT_RANK[target] > PAYMENT_RANK[current]


class Pledge(models.Model):
    """A backer's promise to pay `amount` to a campaign, optionally for a reward tier.

    Created pending with a payment intent at the provider; the payments flow moves it to paid,
    failed or refunded (only ever forward, see PAYMENT_RANK). `idempotency_key` is the client's Idempotency-Key,
    unique per backer; `request_fingerprint` tells a replay from a different request reusing it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="pledges")
    backer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="pledges")
    reward = models.ForeignKey(Reward, on_delete=models.PROTECT, null=True, blank=True, related_name="pledges")
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=PledgeStatus.choices, default=PledgeStatus.PENDING)
    idempotency_key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64)
    payment_provider = models.CharField(max_length=32, blank=True)
    payment_intent_id = models.CharField(max_length=64, blank=True)
    # Handed to the app (only the backer sees it) so it can confirm the payment with the provider.
    payment_client_secret = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["backer", "-created_at"]),
            models.Index(fields=["campaign", "status"]),
            # A fan-out pages through a campaign's backers in id order (notifications.selectors):
            # without it, each page read and sorted every pledge of the campaign.
            models.Index(fields=["campaign", "backer"]),
            models.Index(fields=["payment_intent_id"]),
        ]
        constraints = [
            models.UniqueConstraint(fields=["backer", "idempotency_key"], name="pledge_idempotency_key_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="pledge_amount_positive"),
        ]

    def __str__(self):
        return f"{self.amount} {self.currency} to {self.campaign_id} ({self.status})"
