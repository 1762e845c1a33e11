from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from crowdfund.campaigns.api import campaign_for_creator
from crowdfund.common.errors import DomainError
from crowdfund.reports import selectors, services
from crowdfund.reports.models import CONTENT_TYPES, ReportState
from crowdfund.reports.serializers import ReportCreateSerializer, ReportSerializer, ReportStatusSerializer


class ReportCreateApi(GenericAPIView):
    """Ask for a report about your campaign; it is generated in the background. Poll
    GET /reports/{id} until `status` is `ready`, then download it. At most
    REPORTS_MAX_RUNNING_PER_USER pending or running at once (429 `too_many_reports`)."""

    serializer_class = ReportStatusSerializer
    extra_error_statuses = (409, 429)

    @extend_schema(request=ReportCreateSerializer, responses={202: ReportStatusSerializer}, tags=["reports"])
    def post(self, request, campaign_id):
        campaign = campaign_for_creator(request, campaign_id)
        serializer = ReportCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        report = services.report_request(requester=request.user, campaign=campaign, **serializer.validated_data)
        return Response(ReportStatusSerializer(report).data, status=status.HTTP_202_ACCEPTED)


class ReportDetailApi(GenericAPIView):
    """One of your reports (staff: any report); anyone else's is 404."""

    serializer_class = ReportSerializer

    @extend_schema(tags=["reports"])
    def get(self, request, report_id):
        report = selectors.report_get(report_id=report_id, user=request.user)
        return Response(ReportSerializer(report, context={"request": request}).data)


class ReportDownloadApi(GenericAPIView):
    """The report's file, streamed, once it is ready: 409 `report_not_ready` before (or
    `report_failed`), 410 `report_expired` after its expiry."""

    serializer_class = ReportSerializer
    extra_error_statuses = (409, 410)

    @extend_schema(
        responses={
            **{(200, media_type): OpenApiResponse(OpenApiTypes.BINARY) for media_type in CONTENT_TYPES.values()},
        },
        tags=["reports"],
    )
    def get(self, request, report_id):
        report = selectors.report_get(report_id=report_id, user=request.user)
        if report.is_expired:
            raise DomainError("report_expired", "This report has expired; ask for a new one.", status=410)
        if report.state == ReportState.FAILED:
            raise DomainError("report_failed", f"This report failed: {report.error}", status=409)
        if report.state != ReportState.READY:
            raise DomainError("report_not_ready", f"This report is {report.state} ({report.progress}%).", status=409)
        file = report.file.open("rb")
        return FileResponse(
            file, as_attachment=True, filename=report.download_filename, content_type=report.content_type
        )
