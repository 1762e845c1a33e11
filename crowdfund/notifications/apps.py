from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "crowdfund.notifications"
    label = "notifications"
