from django.contrib import admin, messages

from crowdfund.notifications import services
from crowdfund.notifications.models import InAppNotification, OutboxMessage, ProviderRateLimit, SandboxPushDelivery


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    """Every message, sent or not. "Resend" goes through the service (new tasks, after commit)."""

    list_display = ["id", "kind", "subject", "recipient", "channel", "state", "attempts", "sent_at", "created_at"]
    list_filter = ["state", "channel", "kind"]
    search_fields = ["subject", "recipient__email", "provider_message_id", "error"]
    date_hierarchy = "created_at"
    list_select_related = ["recipient"]
    raw_id_fields = ["recipient"]
    actions = ["resend"]
    show_full_result_count = False  # COUNT(*) over millions of rows on every page costs seconds
    readonly_fields = [
        "recipient",
        "kind",
        "subject",
        "channel",
        "state",
        "context",
        "attempts",
        "claimed_by",
        "provider_message_id",
        "error",
        "created_at",
        "updated_at",
        "claimed_at",
        "sent_at",
    ]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Resend the selected messages")
    def resend(self, request, queryset):
        count = services.outbox_messages_resend(messages=queryset)
        self.message_user(request, f"{count} message(s) queued to be sent again.", messages.SUCCESS)


@admin.register(InAppNotification)
class InAppNotificationAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "kind", "title", "created_at", "read_at"]
    list_filter = ["kind"]
    search_fields = ["title", "subject", "user__email"]
    raw_id_fields = ["user", "outbox"]


@admin.register(SandboxPushDelivery)
class SandboxPushDeliveryAdmin(admin.ModelAdmin):
    list_display = ["message_id", "device_token", "title", "created_at"]
    search_fields = ["message_id", "device_token", "title"]


@admin.register(ProviderRateLimit)
class ProviderRateLimitAdmin(admin.ModelAdmin):
    list_display = ["provider", "rate", "capacity", "tokens", "updated_at"]
    search_fields = ["provider"]
