from django.urls import path

from crowdfund.accounts import api

urlpatterns = [
    path("auth/register", api.RegisterApi.as_view(), name="auth-register"),
    path("auth/token", api.TokenObtainApi.as_view(), name="auth-token"),
    path("auth/token/refresh", api.TokenRefreshApi.as_view(), name="auth-token-refresh"),
    path("me", api.MeApi.as_view(), name="me"),
    path("me/devices", api.DeviceRegisterApi.as_view(), name="me-devices"),
    path("me/notification-preferences", api.NotificationPreferencesApi.as_view(), name="me-notification-preferences"),
]
