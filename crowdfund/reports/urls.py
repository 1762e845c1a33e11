from django.urls import path

from crowdfund.reports import api

urlpatterns = [
    path("campaigns/<uuid:campaign_id>/reports", api.ReportCreateApi.as_view(), name="campaign-reports"),
    path("reports/<uuid:report_id>", api.ReportDetailApi.as_view(), name="report"),
    path("reports/<uuid:report_id>/download", api.ReportDownloadApi.as_view(), name="report-download"),
]
