from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "crowdfund.reports"
    label = "reports"
