import uuid

from django.db import models

from crowdfund.campaigns.models import MONEY

# --- The project's side: the webhook inbox ------------------------------------------------------


class PaymentEventType(models.TextChoices):
    SUCCEEDED = "payment.succeeded", "Payment succeeded"
    FAILED = "payment.failed", "Payment failed"
    REFUNDED = "payment.refunded", "Payment refunded"


class PaymentEventState(models.TextChoices):
    RECEIVED = "received", "Received (processing enqueued)"
    PROCESSED = "processed", "Processed (the pledge moved)"
    IGNORED = "ignored", "Ignored (no forward move, or no such pledge)"
    FLAGGED = "flagged", "Flagged for an admin"


class PaymentEvent(models.Model):
    """A webhook event a provider sent, stored once (unique on provider and event id) with its raw
    body, before anything is done with it; processed by a task (`task_id`, the ledger row)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.CharField(max_length=32)
    event_id = models.CharField(max_length=128)
    type = models.CharField(max_length=32, choices=PaymentEventType.choices)
    intent_id = models.CharField(max_length=64)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    provider_created = models.DateTimeField()
    raw_body = models.TextField()
    received_at = models.DateTimeField()
    state = models.CharField(max_length=16, choices=PaymentEventState.choices, default=PaymentEventState.RECEIVED)
    outcome = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    task_id = models.UUIDField(null=True, blank=True)
    pledge = models.ForeignKey(
        "pledges.Pledge", on_delete=models.PROTECT, null=True, blank=True, related_name="payment_events"
    )

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            models.Index(fields=["intent_id"]),
            models.Index(fields=["state", "-received_at"]),
        ]
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="payment_event_unique_per_provider"),
        ]

    def __str__(self):
        return f"{self.provider} {self.event_id} {self.type}"


# --- The sandbox provider's side: what a real provider keeps on its servers ----------------------


class SandboxIntentStatus(models.TextChoices):
    REQUIRES_CONFIRMATION = "requires_confirmation", "Requires confirmation"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REFUNDED = "refunded", "Refunded"
    CANCELED = "canceled", "Canceled (abandoned)"


class SandboxIntent(models.Model):
    """The sandbox provider's own record of a payment intent, standing in for a real provider's
    servers during development and tests. Nothing else in the project reads it directly."""

    intent_id = models.CharField(max_length=64, unique=True)
    client_secret = models.CharField(max_length=128)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    reference = models.CharField(max_length=200, blank=True)
    status = models.CharField(
        max_length=32, choices=SandboxIntentStatus.choices, default=SandboxIntentStatus.REQUIRES_CONFIRMATION
    )
    idempotency_key = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self):
        return self.intent_id


class SandboxRefund(models.Model):
    """A refund the sandbox made: one per intent (refunds are in full), found again by its key."""

    intent = models.OneToOneField(SandboxIntent, on_delete=models.CASCADE, related_name="refund")
    idempotency_key = models.CharField(max_length=255, unique=True)
    amount = models.DecimalField(**MONEY)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"refund of {self.intent_id}"


class SandboxEvent(models.Model):
    """An event the sandbox sends to the project's webhook (its outbox), with how delivery went."""

    event_id = models.CharField(max_length=64, unique=True)
    intent = models.ForeignKey(SandboxIntent, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=32)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    delivery_count = models.PositiveIntegerField(default=0)
    failed_attempts = models.PositiveIntegerField(default=0)
    last_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.event_id} {self.type}"
