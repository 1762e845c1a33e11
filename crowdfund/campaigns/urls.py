from django.urls import path

from crowdfund.campaigns import api

urlpatterns = [
    path("campaigns", api.CampaignCollectionApi.as_view(), name="campaigns"),
    path("campaigns/<uuid:campaign_id>", api.CampaignDetailApi.as_view(), name="campaign"),
    path("campaigns/<uuid:campaign_id>/publish", api.CampaignPublishApi.as_view(), name="campaign-publish"),
    path("campaigns/<uuid:campaign_id>/cancel", api.CampaignCancelApi.as_view(), name="campaign-cancel"),
    path("campaigns/<uuid:campaign_id>/rewards", api.RewardCollectionApi.as_view(), name="campaign-rewards"),
    path("campaigns/<uuid:campaign_id>/updates", api.CampaignUpdateCollectionApi.as_view(), name="campaign-updates"),
]
