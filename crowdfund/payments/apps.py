from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "crowdfund.payments"
    label = "payments"
