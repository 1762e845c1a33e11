import secrets

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from tasks.health import broker_check, database_check
from tasks.metrics import metrics_text


@require_GET
def health(request):
    """200 when the database and the broker both answer, 503 naming what is down."""
    checks = {"database": database_check(), "broker": broker_check()}
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)


@require_GET
def metrics(request):
    """Prometheus metrics; behind a bearer token when METRICS_TOKEN is set (always in production)."""
    if settings.METRICS_TOKEN:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not secrets.compare_digest(given, settings.METRICS_TOKEN):
            return JsonResponse(
                {"code": "not_authenticated", "detail": "A valid metrics token is required."}, status=401
            )
    elif not settings.DEBUG:
        return JsonResponse({"code": "metrics_disabled", "detail": "Set METRICS_TOKEN to serve metrics."}, status=403)
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
