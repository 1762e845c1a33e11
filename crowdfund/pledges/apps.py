from django.apps import AppConfig


class PledgesConfig(AppConfig):
    name = "crowdfund.pledges"
    label = "pledges"
