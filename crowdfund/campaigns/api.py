import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticatedOrReadOnly
from rest_framework.response import Response

from crowdfund.campaigns import selectors, services
from crowdfund.campaigns.models import Campaign, CampaignStatus
from crowdfund.campaigns.serializers import (
    CampaignCreateSerializer,
    CampaignEditSerializer,
    CampaignSerializer,
    CampaignUpdateCreateSerializer,
    CampaignUpdateSerializer,
    RewardCreateSerializer,
    RewardSerializer,
)
from crowdfund.common.errors import DomainError
from crowdfund.payments import services as payments


class CampaignFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=CampaignStatus.choices)
    creator = django_filters.NumberFilter(field_name="creator_id", min_value=1, max_value=2**63 - 1)

    class Meta:
        model = Campaign
        fields = ["status", "creator"]


def campaign_for_creator(request, campaign_id) -> Campaign:
    campaign = selectors.campaign_get(campaign_id=campaign_id, user=request.user)
    if campaign.creator_id != request.user.id:
        raise DomainError("not_campaign_creator", "Only the campaign's creator may do this.", status=403)
    return campaign


class CampaignCollectionApi(GenericAPIView):
    """Browse campaigns (drafts only your own), or start one as a draft."""

    permission_classes = [IsAuthenticatedOrReadOnly]
    serializer_class = CampaignSerializer
    filter_backends = [django_filters.rest_framework.DjangoFilterBackend, SearchFilter, OrderingFilter]
    filterset_class = CampaignFilter
    search_fields = ["title", "description"]
    ordering_fields = ["created_at", "deadline", "goal_amount", "pledged_amount", "backer_count", "title"]
    ordering = ["-created_at"]

    def get_queryset(self):
        return selectors.campaign_list(user=self.request.user)

    @extend_schema(responses=CampaignSerializer(many=True), tags=["campaigns"])
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(CampaignSerializer(page, many=True).data)

    @extend_schema(request=CampaignCreateSerializer, responses={201: CampaignSerializer}, tags=["campaigns"])
    def post(self, request):
        serializer = CampaignCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        campaign = services.campaign_create(creator=request.user, **serializer.validated_data)
        return Response(CampaignSerializer(campaign).data, status=status.HTTP_201_CREATED)


class CampaignDetailApi(GenericAPIView):
    permission_classes = [IsAuthenticatedOrReadOnly]
    serializer_class = CampaignSerializer
    extra_error_statuses = (409,)

    @extend_schema(tags=["campaigns"])
    def get(self, request, campaign_id):
        campaign = selectors.campaign_get(campaign_id=campaign_id, user=request.user)
        return Response(CampaignSerializer(campaign).data)

    @extend_schema(request=CampaignEditSerializer, responses={200: CampaignSerializer}, tags=["campaigns"])
    def patch(self, request, campaign_id):
        campaign = campaign_for_creator(request, campaign_id)
        serializer = CampaignEditSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        campaign = services.campaign_edit(campaign=campaign, **serializer.validated_data)
        return Response(CampaignSerializer(campaign).data)


class CampaignPublishApi(GenericAPIView):
    serializer_class = CampaignSerializer
    extra_error_statuses = (409,)

    @extend_schema(request=None, responses={200: CampaignSerializer}, tags=["campaigns"])
    def post(self, request, campaign_id):
        campaign = services.campaign_publish(campaign=campaign_for_creator(request, campaign_id))
        return Response(CampaignSerializer(campaign).data)


class CampaignCancelApi(GenericAPIView):
    """Cancel a draft or live campaign; a live one's paid pledges are refunded (in the background)."""

    serializer_class = CampaignSerializer
    extra_error_statuses = (409,)

    @extend_schema(request=None, responses={200: CampaignSerializer}, tags=["campaigns"])
    def post(self, request, campaign_id):
        campaign = payments.campaign_cancel(campaign=campaign_for_creator(request, campaign_id))
        return Response(CampaignSerializer(campaign).data)


class RewardCollectionApi(GenericAPIView):
    """A campaign's reward tiers, cheapest first, with the slots left of limited ones."""

    permission_classes = [IsAuthenticatedOrReadOnly]
    serializer_class = RewardSerializer
    filter_backends = []
    extra_error_statuses = (409,)

    @extend_schema(responses=RewardSerializer(many=True), tags=["campaigns"])
    def get(self, request, campaign_id):
        campaign = selectors.campaign_get(campaign_id=campaign_id, user=request.user)
        page = self.paginate_queryset(selectors.reward_list(campaign=campaign))
        return self.get_paginated_response(RewardSerializer(page, many=True).data)

    @extend_schema(request=RewardCreateSerializer, responses={201: RewardSerializer}, tags=["campaigns"])
    def post(self, request, campaign_id):
        campaign = campaign_for_creator(request, campaign_id)
        serializer = RewardCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        reward = services.reward_create(campaign=campaign, **serializer.validated_data)
        return Response(RewardSerializer(reward).data, status=status.HTTP_201_CREATED)


class CampaignUpdateCollectionApi(GenericAPIView):
    """A campaign's updates, newest first; the creator posts them and every backer is notified."""

    permission_classes = [IsAuthenticatedOrReadOnly]
    serializer_class = CampaignUpdateSerializer
    filter_backends = []
    extra_error_statuses = (409,)

    @extend_schema(responses=CampaignUpdateSerializer(many=True), tags=["campaigns"])
    def get(self, request, campaign_id):
        campaign = selectors.campaign_get(campaign_id=campaign_id, user=request.user)
        page = self.paginate_queryset(campaign.updates.all())
        return self.get_paginated_response(CampaignUpdateSerializer(page, many=True).data)

    @extend_schema(
        request=CampaignUpdateCreateSerializer, responses={201: CampaignUpdateSerializer}, tags=["campaigns"]
    )
    def post(self, request, campaign_id):
        campaign = campaign_for_creator(request, campaign_id)
        serializer = CampaignUpdateCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        update = services.campaign_update_create(campaign=campaign, author=request.user, **serializer.validated_data)
        return Response(CampaignUpdateSerializer(update).data, status=status.HTTP_201_CREATED)
