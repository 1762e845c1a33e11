from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "crowdfund.campaigns"
    label = "campaigns"
