from django.contrib import admin, messages

from crowdfund.common.errors import DomainError
from crowdfund.payments import services as payment_services
from crowdfund.pledges import services
from crowdfund.pledges.models import Pledge


@admin.register(Pledge)
class PledgeAdmin(admin.ModelAdmin):
    """Read-only: money and reward slots change only through the services (the actions here)."""

    list_display = ["id", "backer", "campaign", "amount", "currency", "status", "reward", "created_at"]
    list_filter = ["status", "currency", "payment_provider"]
    search_fields = ["id", "backer__email", "campaign__title", "payment_intent_id", "idempotency_key"]
    list_select_related = ["backer", "campaign", "reward"]
    date_hierarchy = "created_at"
    actions = ["cancel", "check_with_provider", "refund"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_cancel_permission(self, request):
        return request.user.has_perm("pledges.change_pledge")

    @admin.action(description="Cancel the selected pending pledges", permissions=["cancel"])
    def cancel(self, request, queryset):
        count = 0
        for pledge in queryset:
            try:
                services.pledge_cancel(pledge=pledge)
                count += 1
            except DomainError as exc:
                self.message_user(request, f"{pledge.id}: {exc.detail}", messages.WARNING)
        self.message_user(request, f"{count} pledge(s) cancelled.")

    def has_refund_permission(self, request):
        return request.user.has_perm("pledges.change_pledge")

    @admin.action(description="Check the selected pending pledges with the provider", permissions=["cancel"])
    def check_with_provider(self, request, queryset):
        for pledge in queryset.exclude(payment_intent_id=""):
            try:
                note = payment_services.pledge_check_with_provider(pledge=pledge)
            except DomainError as exc:
                note = exc.detail
            self.message_user(request, f"{pledge.id}: {note}")

    @admin.action(description="Refund the selected paid pledges", permissions=["refund"])
    def refund(self, request, queryset):
        count = 0
        for pledge in queryset:
            try:
                payment_services.pledge_refund(pledge=pledge)
                count += 1
            except DomainError as exc:
                self.message_user(request, f"{pledge.id}: {exc.detail}", messages.WARNING)
        self.message_user(request, f"{count} pledge(s) refunded.")
