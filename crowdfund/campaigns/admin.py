from django.contrib import admin, messages

from crowdfund.campaigns import services
from crowdfund.campaigns.models import FROZEN_WHEN_LIVE, Campaign, CampaignStatus, CampaignUpdate, Reward
from crowdfund.common.errors import DomainError
from crowdfund.payments import services as payments


class RewardInline(admin.TabularInline):
    model = Reward
    fields = ["title", "minimum_amount", "quantity", "reserved_count"]
    readonly_fields = ["reserved_count"]
    extra = 0


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    """Status changes go through the lifecycle services (actions below), never a form field."""

    list_display = [
        "title",
        "creator",
        "status",
        "goal_amount",
        "pledged_amount",
        "currency",
        "backer_count",
        "deadline",
    ]
    list_filter = ["status", "currency"]
    search_fields = ["title", "description", "creator__email"]
    date_hierarchy = "created_at"
    raw_id_fields = ["creator"]
    inlines = [RewardInline]
    actions = ["publish", "cancel"]
    readonly_fields = [
        "status",
        "pledged_amount",
        "backer_count",
        "created_at",
        "updated_at",
        "published_at",
        "finished_at",
    ]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.status != CampaignStatus.DRAFT:
            return [*self.readonly_fields, *FROZEN_WHEN_LIVE]
        return self.readonly_fields

    @admin.action(description="Publish the selected draft campaigns")
    def publish(self, request, queryset):
        self._apply(request, queryset, services.campaign_publish, "published")

    @admin.action(description="Cancel the selected campaigns (refunding the paid pledges of live ones)")
    def cancel(self, request, queryset):
        self._apply(request, queryset, payments.campaign_cancel, "cancelled")

    def _apply(self, request, queryset, service, done: str) -> None:
        count = 0
        for campaign in queryset:
            try:
                service(campaign=campaign)
                count += 1
            except DomainError as exc:
                self.message_user(request, f"{campaign}: {exc.detail}", messages.WARNING)
        self.message_user(request, f"{count} campaign(s) {done}.")


@admin.register(Reward)
class RewardAdmin(admin.ModelAdmin):
    list_display = ["title", "campaign", "minimum_amount", "quantity", "reserved_count"]
    list_filter = ["campaign__status"]
    search_fields = ["title", "campaign__title"]
    raw_id_fields = ["campaign"]
    readonly_fields = ["reserved_count"]


@admin.register(CampaignUpdate)
class CampaignUpdateAdmin(admin.ModelAdmin):
    """Read-only: an update is posted through the API so that its backers are notified."""

    list_display = ["title", "campaign", "author", "created_at"]
    search_fields = ["title", "body", "campaign__title"]
    date_hierarchy = "created_at"
    raw_id_fields = ["campaign", "author"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
