from django.urls import reverse
from rest_framework import serializers

from crowdfund.reports.models import Report, ReportFormat, ReportKind

# The kinds a creator may ask for about a campaign; the platform report is built by the schedule.
CAMPAIGN_KINDS = [(kind.value, kind.label) for kind in (ReportKind.BACKERS, ReportKind.SUMMARY)]


class ReportCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=CAMPAIGN_KINDS)
    format = serializers.ChoiceField(choices=ReportFormat.choices)


class ReportStatusSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(source="state", choices=Report._meta.get_field("state").choices, read_only=True)
    progress = serializers.IntegerField(min_value=0, max_value=100, read_only=True, help_text="Percent done.")

    class Meta:
        model = Report
        fields = ["id", "status", "progress"]


class ReportSerializer(ReportStatusSerializer):
    download_url = serializers.SerializerMethodField(help_text="Where to download it; null until it is ready.")
    expires_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="When the file is deleted.")

    class Meta:
        model = Report
        fields = ["id", "kind", "format", "status", "progress", "download_url", "expires_at"]

    def get_download_url(self, report) -> str | None:
        if report.state != "ready" or report.is_expired:
            return None
        return self.context["request"].build_absolute_uri(reverse("report-download", args=[report.id]))
