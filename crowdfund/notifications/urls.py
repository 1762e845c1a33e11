from django.urls import path

from crowdfund.notifications import api

urlpatterns = [
    path("me/notifications", api.InAppNotificationListApi.as_view(), name="me-notifications"),
    path("me/notifications/read-all", api.InAppNotificationReadAllApi.as_view(), name="me-notifications-read-all"),
    path(
        "me/notifications/<int:notification_id>/read",
        api.InAppNotificationReadApi.as_view(),
        name="me-notification-read",
    ),
    path("notifications/unsubscribe/<str:token>", api.UnsubscribeView.as_view(), name="notifications-unsubscribe"),
]
