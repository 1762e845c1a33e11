from django.urls import path

from crowdfund.pledges import api

urlpatterns = [
    path("campaigns/<uuid:campaign_id>/pledges", api.PledgeCreateApi.as_view(), name="campaign-pledges"),
    path("pledges", api.PledgeListApi.as_view(), name="pledges"),
    path("pledges/<uuid:pledge_id>", api.PledgeDetailApi.as_view(), name="pledge"),
    path("pledges/<uuid:pledge_id>/cancel", api.PledgeCancelApi.as_view(), name="pledge-cancel"),
]
