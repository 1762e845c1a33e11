"""The URLconf gunicorn serves during the HTTP benchmarks (bench/web.py): the project's URLs, plus
the endpoints the figures are compared with, which the product's API does not have.

- `bench/trivial`: a DRF APIView answering a small JSON, with the project's DRF settings (renderer,
  exception handler, middleware) and, like the webhook, no authentication: the ceiling of this
  stack on this machine.
- `bench/store-only`: the webhook's floor, the least any ingest that loses nothing does: the same
  signature check and parse, then the raw body stored by one INSERT that commits, no task enqueued
  (nothing would process it). What the webhook costs above this is its enqueue and publishing.
- `bench/sync-webhook`: the synchronous design the platform avoids, the same events verified,
  stored and applied inside the request after a (simulated) provider call.
"""

import json
import time

from django.db import connection
from django.http import JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from config import urls as project_urls
from crowdfund.payments import services
from crowdfund.payments.api import raw_body_within_limit
from crowdfund.payments.models import PaymentEvent
from crowdfund.payments.providers import get_provider

PROVIDER_CALL_SECONDS = 0.05
STORE_ONLY_TABLE = "bench_webhook_bodies"  # created by bench/payments_bench.py


class TrivialApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        return Response({"ok": True})


class StoreOnlyWebhookApi(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    def post(self, request):
        body = raw_body_within_limit(request)
        get_provider("sandbox").parse_webhook(body=body, headers=request.headers)
        with connection.cursor() as cursor:  # autocommit: committed once executed
            cursor.execute(f"INSERT INTO {STORE_ONLY_TABLE} (body) VALUES (%s)", [body.decode()])
        return Response({"received": True, "duplicate": False})


def sync_webhook(request):
    """Store the event and apply it inside the request, after a provider call (simulated): what
    the platform's asynchronous ingest avoids."""
    body = request.body
    services.webhook_receive(provider=get_provider("sandbox"), body=body, headers=request.headers)
    time.sleep(PROVIDER_CALL_SECONDS)  # e.g. retrieving the intent to double-check it
    event = PaymentEvent.objects.get(provider="sandbox", event_id=json.loads(body)["id"])
    services.payment_event_apply(event_id=event.id)
    return JsonResponse({"received": True})


urlpatterns = [
    path("bench/trivial", TrivialApi.as_view()),
    path("bench/store-only", StoreOnlyWebhookApi.as_view()),
    path("bench/sync-webhook", csrf_exempt(sync_webhook)),
    path("", include(project_urls)),
]

handler404 = project_urls.handler404
handler500 = project_urls.handler500
