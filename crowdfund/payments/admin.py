import json

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from crowdfund.payments.models import PaymentEvent, SandboxEvent, SandboxIntent


class ReadOnlyAdmin(admin.ModelAdmin):
    """Payment records change only through the services and the provider, never by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin):
    """The webhook inbox: every event as received, what processing made of it, and its task."""

    list_display = ["event_id", "type", "state", "amount", "currency", "intent_id", "received_at", "task_link"]
    list_filter = ["state", "type", "provider", "received_at"]
    search_fields = ["=event_id", "=intent_id", "=pledge__id", "outcome"]
    date_hierarchy = "received_at"
    show_full_result_count = False
    readonly_fields = [
        "id", "provider", "event_id", "type", "intent_id", "amount", "currency", "provider_created", "received_at",
        "state", "outcome", "processed_at", "pledge_link", "task_link", "raw_body_pretty",
    ]  # fmt: skip
    exclude = ["raw_body", "pledge", "task_id"]

    @admin.display(description="task")
    def task_link(self, event):
        if event.task_id is None:
            return "-"
        url = reverse("admin:tasks_taskrecord_change", args=[event.task_id])
        return format_html('<a href="{}">{}</a>', url, str(event.task_id)[:8])

    @admin.display(description="pledge")
    def pledge_link(self, event):
        if event.pledge_id is None:
            return "-"
        url = reverse("admin:pledges_pledge_change", args=[event.pledge_id])
        return format_html('<a href="{}">{}</a>', url, event.pledge_id)

    @admin.display(description="raw body")
    def raw_body_pretty(self, event):
        try:
            text = json.dumps(json.loads(event.raw_body), indent=2)
        except ValueError:
            text = event.raw_body
        return format_html('<pre style="white-space:pre-wrap">{}</pre>', text)


@admin.register(SandboxIntent)
class SandboxIntentAdmin(ReadOnlyAdmin):
    """The sandbox provider's intents; they change through its confirm endpoint and refunds."""

    list_display = ["intent_id", "amount", "currency", "status", "reference", "created_at"]
    list_filter = ["status", "currency"]
    search_fields = ["intent_id", "reference", "idempotency_key"]
    date_hierarchy = "created_at"


@admin.register(SandboxEvent)
class SandboxEventAdmin(ReadOnlyAdmin):
    """What the sandbox provider sent to the webhook, and how delivery went."""

    list_display = ["event_id", "type", "intent", "delivery_count", "failed_attempts", "last_status", "created_at"]
    list_filter = ["type", "last_status"]
    search_fields = ["=event_id", "intent__intent_id"]
    list_select_related = ["intent"]
