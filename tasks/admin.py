import json
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from tasks.dashboard import dashboard_data
from tasks.models import TaskRecord, TaskState
from tasks.services import task_records_cancel, task_records_retry


class DistinctValuesFilter(admin.SimpleListFilter):
    """Filter on the values a column actually holds (task names and queues are open-ended), with
    a short query parameter that the dashboard's links use."""

    field = ""

    def lookups(self, request, model_admin):
        values = TaskRecord.objects.order_by(self.field).values_list(self.field, flat=True).distinct()
        return [(value, value) for value in values]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


class TaskNameFilter(DistinctValuesFilter):
    title = "task name"
    parameter_name = field = "name"


class QueueFilter(DistinctValuesFilter):
    title = "queue"
    parameter_name = field = "queue"


@admin.register(TaskRecord)
class TaskRecordAdmin(admin.ModelAdmin):
    """Every task, searchable and filterable; failed ones are the dead letters to retry."""

    list_display = [
        "short_id",
        "name",
        "state_badge",
        "queue",
        "attempts_of",
        "correlation_key",
        "created_at",
        "runtime",
    ]
    list_filter = ["state", TaskNameFilter, QueueFilter, "created_at", "error_type"]
    search_fields = ["=id", "name", "correlation_key", "args", "kwargs", "error_message"]
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) over the whole ledger on every page
    actions = ["retry_selected", "cancel_selected"]
    readonly_fields = [
        "id", "name", "state", "queue", "attempts", "max_attempts", "args_pretty", "kwargs_pretty", "eta",
        "created_at", "sent_at", "started_at", "finished_at", "runtime", "worker", "correlation_key",
        "idempotency_key", "error_type", "error_message", "traceback_pretty", "manual_retries", "retried_by",
        "retried_at", "cancelled_by", "cancelled_at", "flower_link",
    ]  # fmt: skip
    fieldsets = [
        (None, {"fields": ["id", "name", "state", "queue", "flower_link", "correlation_key", "idempotency_key"]}),
        ("Arguments", {"fields": ["args_pretty", "kwargs_pretty"]}),
        ("Runs", {"fields": ["attempts", "max_attempts", "eta", "created_at", "sent_at", "started_at",
                             "finished_at", "runtime", "worker"]}),
        ("Last error", {"fields": ["error_type", "error_message", "traceback_pretty"]}),
        ("Operators", {"fields": ["manual_retries", "retried_by", "retried_at", "cancelled_by", "cancelled_at"]}),
    ]  # fmt: skip
    change_list_template = "admin/tasks/taskrecord/change_list.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # records are written by the platform; operators act through the actions

    def has_retry_permission(self, request):
        return request.user.has_perm("tasks.retry_taskrecord")

    def has_cancel_permission(self, request):
        return request.user.has_perm("tasks.cancel_taskrecord")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("retried_by", "cancelled_by")

    @admin.display(description="id", ordering="id")
    def short_id(self, record):
        return str(record.id)[:8]

    @admin.display(description="state", ordering="state")
    def state_badge(self, record):
        colours = {TaskState.FAILED: "#ba2121", TaskState.SUCCEEDED: "#2e7d32", TaskState.CANCELLED: "#777"}
        return format_html('<b style="color:{}">{}</b>', colours.get(record.state, "#b26a00"), record.state)

    @admin.display(description="attempts")
    def attempts_of(self, record):
        return f"{record.attempts}/{record.max_attempts}"

    @admin.display(description="args")
    def args_pretty(self, record):
        return format_html("<pre>{}</pre>", json.dumps(record.args, indent=2))

    @admin.display(description="kwargs")
    def kwargs_pretty(self, record):
        return format_html("<pre>{}</pre>", json.dumps(record.kwargs, indent=2, sort_keys=True))

    @admin.display(description="traceback")
    def traceback_pretty(self, record):
        return format_html('<pre style="white-space:pre-wrap">{}</pre>', record.traceback or "-")

    @admin.display(description="Flower")
    def flower_link(self, record):
        url = f"{settings.FLOWER_URL.rstrip('/')}/task/{record.id}"
        return format_html('<a href="{}" target="_blank" rel="noopener">open in Flower</a>', url)

    @admin.action(description="Retry selected tasks", permissions=["retry"])
    def retry_selected(self, request, queryset):
        count = task_records_retry(records=queryset, user=request.user)
        self.message_user(request, f"Retrying {count} task(s); tasks still running were left alone.")

    @admin.action(description="Cancel selected tasks", permissions=["cancel"])
    def cancel_selected(self, request, queryset):
        count = task_records_cancel(records=queryset, user=request.user)
        self.message_user(request, f"Cancelled {count} task(s); tasks already started or finished were left alone.")

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("retry-failed/", view(self.retry_failed_view), name="tasks_taskrecord_retry_failed"),
            path("dashboard/", view(self.dashboard_view), name="tasks_dashboard"),
            path("dashboard/data/", view(self.dashboard_data_view), name="tasks_dashboard_data"),
            *super().get_urls(),
        ]

    def dashboard_view(self, request):
        """The platform at a glance: queues, throughput, latencies, failures, workers, beat."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Task platform dashboard",
            "opts": self.model._meta,
            "data": self._dashboard_with_links(request),
            "data_url": reverse("admin:tasks_dashboard_data"),
        }
        return TemplateResponse(request, "admin/tasks/dashboard.html", context)

    def dashboard_data_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        return JsonResponse(self._dashboard_with_links(request))

    def _dashboard_with_links(self, request) -> dict:
        data = dashboard_data()
        changelist = reverse("admin:tasks_taskrecord_changelist")
        retry_failed = reverse("admin:tasks_taskrecord_retry_failed")
        for cause in data["failure_causes"]:
            filters = {"state__exact": "failed", "name": cause["name"], "error_type__exact": cause["error_type"]}
            query = urlencode(filters)
            cause["list_url"] = f"{changelist}?{query}"
            cause["retry_url"] = f"{retry_failed}?{query}" if self.has_retry_permission(request) else None
        for job in data["periodic_jobs"]:
            record_id = job["last_record_id"]
            job["record_url"] = reverse("admin:tasks_taskrecord_change", args=[record_id]) if record_id else None
        data["changelist_url"] = changelist
        data["periodic_tasks_url"] = reverse("admin:django_celery_beat_periodictask_changelist")
        return data

    def retry_failed_view(self, request):
        """Retry every failed task matching the changelist's current filters, after confirmation."""
        if not self.has_retry_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        failed = changelist.get_queryset(request).filter(state=TaskState.FAILED)
        changelist_url = reverse("admin:tasks_taskrecord_changelist") + "?" + request.GET.urlencode()
        if request.method == "POST":
            count = task_records_retry(records=failed, user=request.user)
            self.message_user(request, f"Retrying {count} failed task(s).", messages.SUCCESS)
            return redirect(changelist_url)
        context = {
            **self.admin_site.each_context(request),
            "title": "Retry failed tasks",
            "opts": self.model._meta,
            "count": failed.count(),
            "names": failed.values_list("name", flat=True).distinct()[:20],
            "changelist_url": changelist_url,
        }
        return TemplateResponse(request, "admin/tasks/taskrecord/retry_failed.html", context)

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_retry": self.has_retry_permission(request),
            "dashboard_url": reverse("admin:tasks_dashboard"),
        }
        return super().changelist_view(request, extra_context)
