from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from crowdfund.campaigns import selectors as campaign_selectors
from crowdfund.common.errors import DomainError
from crowdfund.pledges import selectors, services
from crowdfund.pledges.serializers import IDEMPOTENCY_KEY_MAX_LENGTH, PledgeCreateSerializer, PledgeSerializer

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description=(
        "A key the app makes up per pledge (a UUID, say), at most 255 characters. Sending it again with "
        "the same body returns the same pledge; with a different body, 422 `idempotency_key_reused`."
    ),
)


def idempotency_key_from(request) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        message = f"Send an Idempotency-Key header of 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters."
        raise DomainError("idempotency_key_required", message, fields={"Idempotency-Key": [message]})
    return key


class PledgeCreateApi(GenericAPIView):
    serializer_class = PledgeSerializer
    extra_error_statuses = (409, 422)

    @extend_schema(
        request=PledgeCreateSerializer,
        responses={201: PledgeSerializer},
        parameters=[IDEMPOTENCY_KEY],
        tags=["pledges"],
    )
    def post(self, request, campaign_id):
        key = idempotency_key_from(request)
        serializer = PledgeCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        campaign = campaign_selectors.campaign_get(campaign_id=campaign_id, user=request.user)
        pledge = services.pledge_create(
            backer=request.user,
            campaign=campaign,
            amount=serializer.validated_data["amount"],
            reward_id=serializer.validated_data["reward"],
            idempotency_key=key,
        )
        return Response(PledgeSerializer(pledge).data, status=status.HTTP_201_CREATED)


class PledgeListApi(GenericAPIView):
    """The caller's pledges, newest first."""

    serializer_class = PledgeSerializer
    filter_backends = []

    @extend_schema(responses=PledgeSerializer(many=True), tags=["pledges"])
    def get(self, request):
        page = self.paginate_queryset(selectors.pledge_list(backer=request.user))
        return self.get_paginated_response(PledgeSerializer(page, many=True).data)


class PledgeDetailApi(GenericAPIView):
    """One of the caller's pledges; anyone else's is 404."""

    serializer_class = PledgeSerializer

    @extend_schema(tags=["pledges"])
    def get(self, request, pledge_id):
        return Response(PledgeSerializer(selectors.pledge_get(pledge_id=pledge_id, backer=request.user)).data)


class PledgeCancelApi(GenericAPIView):
    serializer_class = PledgeSerializer
    extra_error_statuses = (409,)

    @extend_schema(request=None, responses={200: PledgeSerializer}, tags=["pledges"])
    def post(self, request, pledge_id):
        pledge = selectors.pledge_get(pledge_id=pledge_id, backer=request.user)
        return Response(PledgeSerializer(services.pledge_cancel(pledge=pledge)).data)
