from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "crowdfund.accounts"
    label = "accounts"
