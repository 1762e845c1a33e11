import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class TaskState(models.TextChoices):
    PENDING = "pending", "Pending (recorded, not yet published)"
    SENT = "sent", "Sent"
    STARTED = "started", "Started"
    RETRYING = "retrying", "Retrying"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


# States in which a task may still run; the others are final until someone retries it.
OPEN_STATES = (TaskState.PENDING, TaskState.SENT, TaskState.STARTED, TaskState.RETRYING)
FINISHED_STATES = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


class TaskRecordQuerySet(models.QuerySet):
    def failed(self):
        return self.filter(state=TaskState.FAILED)

    def finished_before(self, moment):
        # created_at narrows the scan through its index; a row cannot finish before it was created.
        return self.filter(state__in=FINISHED_STATES, created_at__lt=moment, finished_at__lt=moment)


class TaskRecord(models.Model):
    """The ledger: one row per task, written in the enqueuing transaction, kept up to date by the
    worker. Rows in `failed` are the dead letters an admin can retry."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=100)
    state = models.CharField(max_length=16, choices=TaskState.choices, default=TaskState.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Runs started since the last enqueue or admin retry.")
    max_attempts = models.PositiveIntegerField(default=1)
    eta = models.DateTimeField(null=True, blank=True, help_text="When the task is due, if later than enqueued.")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    runtime = models.FloatField(null=True, blank=True, help_text="Seconds the last run took.")
    worker = models.CharField(max_length=200, blank=True)
    error_type = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    correlation_key = models.CharField(max_length=200, blank=True, help_text="What the task is about, e.g. pledge:42.")
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    manual_retries = models.PositiveIntegerField(default=0)
    # Not indexed: nothing looks records up by operator, and each index slows every state change.
    retried_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    retried_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)

    objects = TaskRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        # Every state change rewrites each index entry of the row (no HOT update), so the ledger
        # keeps only the indexes its readers need, partial where most rows would not match.
        indexes = [
            models.Index(fields=["state", "created_at"]),
            models.Index(fields=["name", "state"]),
            models.Index(fields=["queue", "state"]),
            models.Index(fields=["created_at"]),
            models.Index(fields=["correlation_key"], condition=~Q(correlation_key=""), name="tasks_record_correlation"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key"], condition=Q(idempotency_key__isnull=False), name="tasks_record_idempotency"
            ),
        ]
        permissions = [
            ("retry_taskrecord", "Can retry tasks"),
            ("cancel_taskrecord", "Can cancel tasks"),
        ]

    def __str__(self):
        return f"{self.name}[{self.id}]"

    @property
    def queue_wait(self):
        """Seconds between being due (sent, or its ETA) and starting."""
        due = max(filter(None, [self.sent_at, self.eta]), default=None)
        if due and self.started_at:
            return max((self.started_at - due).total_seconds(), 0.0)
        return None
