from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from crowdfund.common.errors import DomainError
from crowdfund.payments import services
from crowdfund.payments.providers import get_provider
from crowdfund.payments.providers.sandbox import SIGNATURE_HEADER, sandbox_intent_confirm
from crowdfund.payments.serializers import SandboxConfirmSerializer, SandboxIntentSerializer, WebhookReceivedSerializer


def raw_body_within_limit(request) -> bytes:
    """The raw body, refused unread when it says it is too large (and refused if it was)."""
    limit = settings.PAYMENTS_WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit or len(body := request.body) > limit:
        raise DomainError("webhook_too_large", f"Webhook bodies are at most {limit} bytes.")
    return body


class SandboxWebhookApi(APIView):
    """The sandbox provider's webhook: no user, a signature on the raw body instead (CSRF-exempt,
    as every APIView without session authentication)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={200: WebhookReceivedSerializer},
        parameters=[OpenApiParameter(SIGNATURE_HEADER, OpenApiTypes.STR, OpenApiParameter.HEADER, required=True)],
        tags=["payments"],
        description="Called by the provider. Refused with 400 (and never processed) when the signature is "
        "missing, wrong or older than 300 seconds, or the body is not a known event.",
    )
    def post(self, request):
        created = services.webhook_receive(
            provider=get_provider("sandbox"), body=raw_body_within_limit(request), headers=request.headers
        )
        return Response({"received": True, "duplicate": not created})


class SandboxIntentConfirmApi(APIView):
    """Development only: act as the backer paying at the sandbox provider, which then posts the
    signed webhook to PAYMENTS_SANDBOX_WEBHOOK_URL."""

    authentication_classes = []
    permission_classes = [AllowAny]
    extra_error_statuses = (404, 409)

    @extend_schema(request=SandboxConfirmSerializer, responses={202: SandboxIntentSerializer}, tags=["payments"])
    def post(self, request, intent_id):
        serializer = SandboxConfirmSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        intent = sandbox_intent_confirm(intent_id=intent_id, outcome=serializer.validated_data["outcome"])
        return Response(SandboxIntentSerializer(intent).data, status=status.HTTP_202_ACCEPTED)
