"""The sandbox provider: a real provider living inside the project, for development and tests.

It keeps its intents, refunds and outgoing events in its own tables, as a real provider keeps them
on its servers, and delivers signed webhooks to PAYMENTS_SANDBOX_WEBHOOK_URL over real HTTP,
retrying on failure. Settings make it deliver duplicates and out of order, and answer slowly.
"""

import hashlib
import hmac
import json
import random
import re
import secrets
import time
from datetime import UTC, datetime
from decimal import Decimal

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from crowdfund.common.errors import DomainError
from crowdfund.payments.models import (
    PaymentEventType,
    SandboxEvent,
    SandboxIntent,
    SandboxIntentStatus,
    SandboxRefund,
)
from crowdfund.payments.providers.base import Intent, PaymentProvider, ProviderError, WebhookEvent
from tasks.services import task_enqueue

SIGNATURE_HEADER = "Sandbox-Signature"
# Fixed by the contract (API.md): older (or later) signatures are refused, so a captured request
# cannot be replayed for long.
SIGNATURE_TOLERANCE_SECONDS = 300
DELIVERY_TIMEOUT_SECONDS = 10
MONEY_PATTERN = re.compile(r"^\d{1,10}\.\d{2}$")
OUTCOMES = {"succeeded": PaymentEventType.SUCCEEDED, "failed": PaymentEventType.FAILED}


class SandboxDeliveryError(Exception):
    """The webhook endpoint answered with a non-2xx status: delivery is retried, as a provider does."""


def sign(body: bytes, *, timestamp: int | None = None, secret: str | None = None) -> str:
    """The `Sandbox-Signature` header value for `body`."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    secret = settings.PAYMENTS_SANDBOX_WEBHOOK_SECRET if secret is None else secret
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _refuse(code: str, detail: str):
    raise DomainError(code, detail, status=400)


class SandboxProvider(PaymentProvider):
    name = "sandbox"

    def create_intent(self, *, amount: Decimal, currency: str, reference: str, idempotency_key: str) -> Intent:
        _simulate_latency()
        intent_id = f"pi_{secrets.token_hex(12)}"
        intent, _ = SandboxIntent.objects.get_or_create(
            idempotency_key=idempotency_key,
            defaults={
                "intent_id": intent_id,
                "client_secret": f"{intent_id}_secret_{secrets.token_urlsafe(18)}",
                "amount": amount,
                "currency": currency,
                "reference": reference,
            },
        )
        return self._intent(intent)

    def retrieve_intent(self, *, intent_id: str) -> Intent:
        _simulate_latency()
        return self._intent(_intent_get(intent_id))

    def refund(self, *, intent_id: str, amount: Decimal | None = None, idempotency_key: str) -> None:
        _simulate_latency()
        with transaction.atomic():
            if SandboxRefund.objects.filter(idempotency_key=idempotency_key).exists():
                return  # a retried call: refunded once already
            intent = _intent_get(intent_id, lock=True)
            if intent.status != SandboxIntentStatus.SUCCEEDED:
                message = f"A {intent.status} intent cannot be refunded."
                raise ProviderError("intent_not_refundable", message, status=409)
            if amount is not None and amount != intent.amount:
                raise ProviderError("partial_refund_unsupported", "The sandbox refunds in full only.", status=400)
            SandboxRefund.objects.create(intent=intent, idempotency_key=idempotency_key, amount=intent.amount)
            intent.status = SandboxIntentStatus.REFUNDED
            intent.save(update_fields=["status", "updated_at"])
            sandbox_event_emit(intent=intent, type=PaymentEventType.REFUNDED)

    def cancel_intent(self, *, intent_id: str) -> Intent:
        _simulate_latency()
        with transaction.atomic():
            intent = _intent_get(intent_id, lock=True)
            if intent.status == SandboxIntentStatus.REQUIRES_CONFIRMATION:
                intent.status = SandboxIntentStatus.CANCELED
                intent.save(update_fields=["status", "updated_at"])
        return self._intent(intent)

    def parse_webhook(self, *, body: bytes, headers) -> WebhookEvent:
        _verify_signature(body, headers.get(SIGNATURE_HEADER, ""))
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            _refuse("webhook_malformed", "The body is not valid JSON.")
        return _event_from(payload)

    def _intent(self, intent: SandboxIntent) -> Intent:
        return Intent(
            provider=self.name,
            intent_id=intent.intent_id,
            client_secret=intent.client_secret,
            status=intent.status,
            amount=intent.amount,
            currency=intent.currency,
        )


def _simulate_latency() -> None:
    if settings.PAYMENTS_SANDBOX_LATENCY_SECONDS:
        time.sleep(settings.PAYMENTS_SANDBOX_LATENCY_SECONDS)


def _intent_get(intent_id: str, *, lock: bool = False) -> SandboxIntent:
    intents = SandboxIntent.objects.select_for_update() if lock else SandboxIntent.objects
    intent = intents.filter(intent_id=intent_id).first()
    if intent is None:
        raise ProviderError("intent_not_found", f"No intent {intent_id}.", status=404)
    return intent


def _verify_signature(body: bytes, header: str) -> None:
    if not header:
        _refuse("webhook_signature_missing", f"The {SIGNATURE_HEADER} header is missing.")
    parts = dict(item.strip().split("=", 1) for item in header.split(",") if "=" in item)
    timestamp, given = parts.get("t", ""), parts.get("v1", "")
    secret = settings.PAYMENTS_SANDBOX_WEBHOOK_SECRET
    if not (timestamp.isdigit() and given and secret):
        _refuse("webhook_signature_invalid", "The signature does not match the body.")
    expected = sign(body, timestamp=int(timestamp), secret=secret).split("v1=", 1)[1]
    if not hmac.compare_digest(expected, given):
        _refuse("webhook_signature_invalid", "The signature does not match the body.")
    if abs(time.time() - int(timestamp)) > SIGNATURE_TOLERANCE_SECONDS:
        _refuse("webhook_signature_stale", f"The signature is older than {SIGNATURE_TOLERANCE_SECONDS} seconds.")


def _event_from(payload) -> WebhookEvent:
    try:
        data = payload["data"]
        event_id, event_type, created = payload["id"], payload["type"], payload["created"]
        intent_id, amount, currency = data["intent_id"], data["amount"], data["currency"]
    except (KeyError, TypeError):
        _refuse("webhook_malformed", "The event lacks id, type, created or data.intent_id/amount/currency.")
    if event_type not in PaymentEventType.values:
        _refuse("webhook_event_type_unknown", f"Unknown event type {str(event_type)[:64]!r}.")
    valid = (
        isinstance(event_id, str)
        and 0 < len(event_id) <= 128
        and isinstance(intent_id, str)
        and 0 < len(intent_id) <= 64
        and isinstance(amount, str)
        and MONEY_PATTERN.match(amount)
        and isinstance(currency, str)
        and len(currency) == 3
        and isinstance(created, int)
        and not isinstance(created, bool)
        and 0 <= created < 2**40
    )
    if not valid:
        _refuse("webhook_malformed", "The event's fields have the wrong types or formats.")
    return WebhookEvent(
        provider=SandboxProvider.name,
        event_id=event_id,
        type=event_type,
        intent_id=intent_id,
        amount=Decimal(amount),
        currency=currency,
        created=datetime.fromtimestamp(created, tz=UTC),
    )


# --- The sandbox's own behaviour: confirming intents and delivering events ------------------------


def sandbox_intent_confirm(*, intent_id: str, outcome: str) -> SandboxIntent:
    """Behave as if the backer paid (or the card was declined), then tell the project by webhook."""
    with transaction.atomic():
        intent = _intent_get(intent_id, lock=True)
        if intent.status != SandboxIntentStatus.REQUIRES_CONFIRMATION:
            raise ProviderError("intent_not_confirmable", f"A {intent.status} intent cannot be confirmed.", status=409)
        intent.status = outcome
        intent.save(update_fields=["status", "updated_at"])
        sandbox_event_emit(intent=intent, type=OUTCOMES[outcome])
    return intent


def sandbox_event_emit(*, intent: SandboxIntent, type: str) -> SandboxEvent:
    """Store the outgoing event and enqueue its delivery (more than once, and late, when the
    settings ask for duplicates and disorder)."""
    from crowdfund.payments import tasks  # the tasks module imports this one

    event_id = f"evt_{secrets.token_hex(12)}"
    body = {
        "id": event_id,
        "type": type,
        "created": int(time.time()),
        "data": {"intent_id": intent.intent_id, "amount": f"{intent.amount:.2f}", "currency": intent.currency},
    }
    event = SandboxEvent.objects.create(event_id=event_id, intent=intent, type=type, body=json.dumps(body))
    max_delay = settings.PAYMENTS_SANDBOX_MAX_DELIVERY_DELAY_SECONDS
    for _ in range(1 + settings.PAYMENTS_SANDBOX_DUPLICATE_DELIVERIES):
        task_enqueue(
            tasks.sandbox_event_deliver,
            kwargs={"event_id": event.id},
            correlation_key=f"intent:{intent.intent_id}",
            countdown=random.uniform(0, max_delay) if max_delay else None,
        )
    return event


def sandbox_event_deliver(*, event: SandboxEvent) -> None:
    """POST the event, freshly signed, to the webhook URL; a non-2xx answer or a connection error
    raises, so the task retries with backoff."""
    body = event.body.encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body)}
    try:
        response = requests.post(
            settings.PAYMENTS_SANDBOX_WEBHOOK_URL, data=body, headers=headers, timeout=DELIVERY_TIMEOUT_SECONDS
        )
    except requests.RequestException as exc:
        _delivery_failed(event, status=None, error=repr(exc))
        raise
    if not 200 <= response.status_code < 300:
        _delivery_failed(event, status=response.status_code, error=response.text[:500])
        raise SandboxDeliveryError(f"{settings.PAYMENTS_SANDBOX_WEBHOOK_URL} answered {response.status_code}")
    SandboxEvent.objects.filter(id=event.id).update(
        delivery_count=F("delivery_count") + 1, last_status=response.status_code, delivered_at=timezone.now()
    )


def _delivery_failed(event: SandboxEvent, *, status: int | None, error: str) -> None:
    SandboxEvent.objects.filter(id=event.id).update(
        failed_attempts=F("failed_attempts") + 1, last_status=status, last_error=error
    )
