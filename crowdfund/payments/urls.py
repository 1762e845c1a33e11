from django.conf import settings
from django.urls import path

from crowdfund.payments import api

urlpatterns = [
    path("payments/webhooks/sandbox", api.SandboxWebhookApi.as_view(), name="payments-webhook-sandbox"),
]

if settings.PAYMENTS_SANDBOX_ENABLED:  # never in production: anyone could mark a payment succeeded
    urlpatterns += [
        path(
            "payments/sandbox/intents/<str:intent_id>/confirm",
            api.SandboxIntentConfirmApi.as_view(),
            name="payments-sandbox-confirm",
        ),
    ]
