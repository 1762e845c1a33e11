from django.contrib import admin, messages

from crowdfund.common.errors import DomainError
from crowdfund.reports import services
from crowdfund.reports.models import Report


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    """Read-only: reports change through the services (the "generate again" action)."""

    list_display = [
        "id",
        "kind",
        "format",
        "state",
        "progress",
        "requester",
        "campaign",
        "row_count",
        "created_at",
        "expires_at",
    ]
    list_filter = ["state", "kind", "format"]
    search_fields = ["id", "requester__email", "campaign__title"]
    list_select_related = ["requester", "campaign"]
    date_hierarchy = "created_at"
    actions = ["generate_again"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_generate_again_permission(self, request):
        return request.user.has_perm("reports.change_report")

    @admin.action(description="Generate the selected reports again", permissions=["generate_again"])
    def generate_again(self, request, queryset):
        count = 0
        for report in queryset:
            try:
                services.report_regenerate(report=report)
                count += 1
            except DomainError as exc:
                self.message_user(request, f"{report.id}: {exc.detail}", messages.WARNING)
        if count:
            self.message_user(request, f"{count} report(s) will be generated again.", messages.SUCCESS)
