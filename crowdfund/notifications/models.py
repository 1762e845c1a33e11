from django.conf import settings
from django.db import models
from django.db.models import Q


class NotificationKind(models.TextChoices):
    PLEDGE_RECEIPT = "pledge_receipt", "Receipt for a paid pledge"
    PAYMENT_FAILED = "payment_failed", "A pledge's payment failed"
    REFUND_ISSUED = "refund_issued", "A pledge was refunded"
    CAMPAIGN_SUCCEEDED = "campaign_succeeded", "A campaign I back or run succeeded"
    CAMPAIGN_FAILED = "campaign_failed", "A campaign I back or run failed"
    CAMPAIGN_CANCELLED = "campaign_cancelled", "A campaign I back or run was cancelled"
    CREATOR_UPDATE_POSTED = "creator_update_posted", "A campaign I back posted an update"
    REPORT_READY = "report_ready", "A report I asked for is ready"
    CREATOR_DAILY_DIGEST = "creator_daily_digest", "Daily digest of my live campaigns"


class NotificationChannel(models.TextChoices):
    EMAIL = "email", "Email"
    PUSH = "push", "Push"
    IN_APP = "in_app", "In the app"


# About money the user paid or gets back: always emailed, whatever the preferences say, and
# sent without an unsubscribe link.
TRANSACTIONAL_KINDS = frozenset(
    {NotificationKind.PLEDGE_RECEIPT, NotificationKind.PAYMENT_FAILED, NotificationKind.REFUND_ISSUED}
)

_ALL_CHANNELS = (NotificationChannel.EMAIL, NotificationChannel.PUSH, NotificationChannel.IN_APP)
# The channels each kind goes out on (before preferences).
KIND_CHANNELS = {
    NotificationKind.PLEDGE_RECEIPT: (NotificationChannel.EMAIL, NotificationChannel.IN_APP),
    NotificationKind.PAYMENT_FAILED: _ALL_CHANNELS,
    NotificationKind.REFUND_ISSUED: (NotificationChannel.EMAIL, NotificationChannel.IN_APP),
    NotificationKind.CAMPAIGN_SUCCEEDED: _ALL_CHANNELS,
    NotificationKind.CAMPAIGN_FAILED: _ALL_CHANNELS,
    NotificationKind.CAMPAIGN_CANCELLED: _ALL_CHANNELS,
    NotificationKind.CREATOR_UPDATE_POSTED: _ALL_CHANNELS,
    NotificationKind.REPORT_READY: _ALL_CHANNELS,
    NotificationKind.CREATOR_DAILY_DIGEST: (NotificationChannel.EMAIL,),
}


class OutboxState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped (preferences or no device)"


class OutboxMessageQuerySet(models.QuerySet):
    def about(self, *, kind: str, subject: str):
        return self.filter(kind=kind, subject=subject)


class OutboxMessage(models.Model):
    """One message to one user about one thing on one channel: the unit that is sent exactly once.

    Unique on (recipient, kind, subject, channel), so a retried or redelivered task, or a second
    call about the same event, finds the row instead of sending again. A sender claims a row by
    moving it from `pending` to `sending` in one conditional UPDATE; only the claimant sends.
    `context` holds the template data given by the caller; fan-out rows leave it empty and get
    theirs from the subject (see services._shared_context) instead of 100,000 copies.
    """

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32, choices=NotificationKind.choices)
    subject = models.CharField(max_length=120)
    channel = models.CharField(max_length=16, choices=NotificationChannel.choices)
    state = models.CharField(max_length=16, choices=OutboxState.choices, default=OutboxState.PENDING)
    context = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # The task run that claimed it: a redelivery of that same run recognises its own interrupted claims.
    claimed_by = models.CharField(max_length=64, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = OutboxMessageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "kind", "subject", "channel"], name="outbox_message_unique_per_channel"
            ),
        ]
        # Few indexes: each is written again at every change of state (claimed, sent). The unique
        # constraint's index (recipient first) serves "these recipients' rows about this"; one on
        # (kind, subject, recipient) was dropped: for a subject new to the statistics, PostgreSQL
        # used it for that lookup and scanned every row of the subject.
        # The state index holds settled rows only (what the admin's filters look for). With pending
        # rows in it, PostgreSQL, whose statistics say pending rows are rare, combined it with the
        # primary key for "these ids, if pending" during a fan-out, when they are not: each claim
        # then read every pending row's entry, and a 100,000-backer fan-out ran at half speed.
        indexes = [
            models.Index(
                fields=["state", "-created_at"], name="outbox_state_idx", condition=~Q(state__in=["pending", "sending"])
            ),
            models.Index(
                fields=["claimed_at"], name="outbox_sending_idx", condition=Q(state="sending")
            ),  # interrupted claims are looked for here
        ]

    def __str__(self):
        return f"{self.kind} {self.subject} → {self.recipient_id} by {self.channel} ({self.state})"


class InAppNotification(models.Model):
    """What the app lists under `GET /api/v1/me/notifications`: the in-app channel's delivery."""

    outbox = models.OneToOneField(OutboxMessage, on_delete=models.CASCADE, related_name="in_app")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="in_app_notifications")
    kind = models.CharField(max_length=32, choices=NotificationKind.choices)
    subject = models.CharField(max_length=120)
    title = models.CharField(max_length=255)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="in_app_user_idx")]

    def __str__(self):
        return self.title


class SandboxPushDelivery(models.Model):
    """What the sandbox push provider would have delivered (development and tests)."""

    device_token = models.CharField(max_length=255)
    title = models.CharField(max_length=255)
    body = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    message_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"{self.message_id} → {self.device_token}"


class ProviderRateLimit(models.Model):
    """A token bucket per provider shared by every worker process (see README: rate limits).

    `tokens` refills at `rate` per second up to `capacity`; a sender takes tokens with one atomic
    UPDATE (services.ratelimit), so the limit holds across processes and machines.
    """

    provider = models.CharField(max_length=64, primary_key=True)
    tokens = models.FloatField()
    capacity = models.FloatField()
    rate = models.FloatField()
    updated_at = models.DateTimeField()

    def __str__(self):
        return f"{self.provider}: {self.rate}/s"
