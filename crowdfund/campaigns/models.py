import uuid
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from crowdfund.common.errors import DomainError

# A campaign runs at most this long; longer ones lose momentum and tie up backers' money.
MAX_CAMPAIGN_DURATION = timedelta(days=90)
MONEY = {"max_digits": 12, "decimal_places": 2}


class Currency(models.TextChoices):
    """ISO 4217 currencies the platform takes; all of them have two decimal places."""

    USD = "USD"
    EUR = "EUR"
    GBP = "GBP"
    CAD = "CAD"
    AUD = "AUD"
    CHF = "CHF"
    SEK = "SEK"
    NOK = "NOK"
    DKK = "DKK"
    NZD = "NZD"


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    LIVE = "live", "Live"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TRANSITIONS = {
    CampaignStatus.DRAFT: {CampaignStatus.LIVE, CampaignStatus.CANCELLED},
    CampaignStatus.LIVE: {CampaignStatus.SUCCEEDED, CampaignStatus.FAILED, CampaignStatus.CANCELLED},
}
FINISHED = (CampaignStatus.SUCCEEDED, CampaignStatus.FAILED, CampaignStatus.CANCELLED)
# Once live, backers have pledged against these; changing them would change the deal.
FROZEN_WHEN_LIVE = ("goal_amount", "currency", "deadline")


class CampaignQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Drafts are private to their creator; every other campaign is public."""
        public = ~Q(status=CampaignStatus.DRAFT)
        return self.filter(public | Q(creator=user)) if user.is_authenticated else self.filter(public)


class Campaign(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    creator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="campaigns")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    goal_amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, choices=Currency.choices)
    deadline = models.DateTimeField()
    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    # Totals of paid pledges, kept by the payments flow (a later issue) so lists never aggregate.
    pledged_amount = models.DecimalField(**MONEY, default=Decimal("0.00"))
    backer_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    published_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = CampaignQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["creator", "-created_at"]),
            models.Index(fields=["status", "deadline"]),  # the closing job: live campaigns past deadline
        ]
        constraints = [
            models.CheckConstraint(condition=Q(goal_amount__gt=0), name="campaign_goal_positive"),
            models.CheckConstraint(condition=Q(pledged_amount__gte=0), name="campaign_pledged_not_negative"),
        ]

    def __str__(self):
        return self.title

    @property
    def is_live(self) -> bool:
        return self.status == CampaignStatus.LIVE and self.deadline > timezone.now()

    def transition_to(self, status: str) -> None:
        if status not in TRANSITIONS.get(self.status, ()):
            raise DomainError("invalid_transition", f"A {self.status} campaign cannot become {status}.", status=409)
        self.status = status


class Reward(models.Model):
    """A reward tier: backers pledging at least `minimum_amount` get it; `quantity` None is unlimited.

    `reserved_count` counts pending and paid pledges holding a slot; it only changes under a
    row lock (see crowdfund.pledges.services), and the database refuses more than `quantity`.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="rewards")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    minimum_amount = models.DecimalField(**MONEY)
    quantity = models.PositiveIntegerField(null=True, blank=True)
    reserved_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["minimum_amount", "created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(minimum_amount__gt=0), name="reward_minimum_positive"),
            models.CheckConstraint(
                condition=Q(quantity__isnull=True) | Q(reserved_count__lte=F("quantity")),
                name="reward_not_oversold",
            ),
        ]

    def __str__(self):
        return f"{self.title} ({self.minimum_amount})"

    @property
    def slots_left(self) -> int | None:
        return None if self.quantity is None else max(self.quantity - self.reserved_count, 0)


class CampaignUpdate(models.Model):
    """News a creator posts to a campaign; every backer is notified."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="updates")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    title = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["campaign", "-created_at"])]

    def __str__(self):
        return self.title
