import json
from decimal import Decimal
from types import SimpleNamespace

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured

from crowdfund.payments import tasks
from crowdfund.payments.models import SandboxEvent, SandboxIntent, SandboxRefund
from crowdfund.payments.providers import ProviderError, get_provider, sandbox
from crowdfund.payments.providers.sandbox import SandboxProvider, sandbox_intent_confirm
from tasks.models import TaskRecord

pytestmark = pytest.mark.django_db


def test_the_provider_named_in_settings_is_used(settings):
    settings.PAYMENTS_PROVIDER = "sandbox"
    assert isinstance(get_provider(), SandboxProvider)


def test_an_unknown_provider_is_a_configuration_error(settings):
    settings.PAYMENTS_PROVIDER = "acme"
    with pytest.raises(ImproperlyConfigured):
        get_provider()


def test_the_sandbox_returns_the_same_intent_for_the_same_idempotency_key():
    provider = get_provider("sandbox")
    first = provider.create_intent(amount=Decimal("25.00"), currency="EUR", reference="pledge:1", idempotency_key="k")
    again = provider.create_intent(amount=Decimal("25.00"), currency="EUR", reference="pledge:1", idempotency_key="k")
    assert first == again
    assert first.status == "requires_confirmation"
    assert first.client_secret.startswith(f"{first.intent_id}_secret_")
    stored = SandboxIntent.objects.get()
    assert (stored.intent_id, stored.amount, stored.reference) == (first.intent_id, Decimal("25.00"), "pledge:1")


def intent(amount="25.00"):
    return get_provider("sandbox").create_intent(
        amount=Decimal(amount), currency="EUR", reference="pledge:1", idempotency_key=f"k-{amount}"
    )


def test_the_sandbox_tells_the_current_state_of_an_intent():
    created = intent()
    sandbox_intent_confirm(intent_id=created.intent_id, outcome="succeeded")
    now = get_provider("sandbox").retrieve_intent(intent_id=created.intent_id)
    assert (now.status, now.amount, now.currency) == ("succeeded", Decimal("25.00"), "EUR")


def test_the_sandbox_refuses_to_retrieve_an_unknown_intent():
    with pytest.raises(ProviderError) as refused:
        get_provider("sandbox").retrieve_intent(intent_id="pi_nobody")
    assert (refused.value.code, refused.value.status) == ("intent_not_found", 404)


def test_confirming_an_intent_stores_the_outgoing_event_and_enqueues_its_delivery():
    created = intent()
    sandbox_intent_confirm(intent_id=created.intent_id, outcome="failed")
    event = SandboxEvent.objects.get()
    body = json.loads(event.body)
    assert body["type"] == event.type == "payment.failed"
    assert body["data"] == {"intent_id": created.intent_id, "amount": "25.00", "currency": "EUR"}
    assert body["id"] == event.event_id
    [task] = TaskRecord.objects.filter(name="crowdfund.payments.tasks.sandbox_event_deliver")
    assert task.kwargs == {"event_id": event.id}
    assert task.queue == "payments"


def test_the_sandbox_delivers_duplicates_late_when_settings_ask(settings):
    settings.PAYMENTS_SANDBOX_DUPLICATE_DELIVERIES = 2
    settings.PAYMENTS_SANDBOX_MAX_DELIVERY_DELAY_SECONDS = 30
    sandbox_intent_confirm(intent_id=intent().intent_id, outcome="succeeded")
    deliveries = TaskRecord.objects.filter(name="crowdfund.payments.tasks.sandbox_event_deliver")
    assert deliveries.count() == 3
    assert all(delivery.eta is not None for delivery in deliveries)


def test_an_intent_is_confirmed_only_once():
    created = intent()
    sandbox_intent_confirm(intent_id=created.intent_id, outcome="succeeded")
    with pytest.raises(ProviderError) as refused:
        sandbox_intent_confirm(intent_id=created.intent_id, outcome="failed")
    assert (refused.value.code, refused.value.status) == ("intent_not_confirmable", 409)


def test_a_refund_with_the_same_key_refunds_once_and_emits_one_refunded_event():
    created = intent()
    sandbox_intent_confirm(intent_id=created.intent_id, outcome="succeeded")
    provider = get_provider("sandbox")
    provider.refund(intent_id=created.intent_id, idempotency_key="refund-1")
    provider.refund(intent_id=created.intent_id, idempotency_key="refund-1")
    assert SandboxRefund.objects.get().amount == Decimal("25.00")
    assert provider.retrieve_intent(intent_id=created.intent_id).status == "refunded"
    assert SandboxEvent.objects.filter(type="payment.refunded").count() == 1


def test_the_sandbox_refuses_to_refund_an_unpaid_intent():
    with pytest.raises(ProviderError) as refused:
        get_provider("sandbox").refund(intent_id=intent().intent_id, idempotency_key="refund-1")
    assert refused.value.code == "intent_not_refundable"
    assert not SandboxRefund.objects.exists()


def test_cancelling_an_unconfirmed_intent_makes_it_unpayable():
    created = intent()
    assert get_provider("sandbox").cancel_intent(intent_id=created.intent_id).status == "canceled"
    with pytest.raises(ProviderError):
        sandbox_intent_confirm(intent_id=created.intent_id, outcome="succeeded")


def test_a_delivery_answered_with_a_non_2xx_status_is_recorded_and_raised_for_a_retry(monkeypatch, settings):
    sandbox_intent_confirm(intent_id=intent().intent_id, outcome="succeeded")
    event = SandboxEvent.objects.get()
    posted = []

    def answer_503(url, data, headers, timeout):
        posted.append((url, data, headers))
        return SimpleNamespace(status_code=503, text="busy")

    monkeypatch.setattr(sandbox.requests, "post", answer_503)
    with pytest.raises(sandbox.SandboxDeliveryError):
        sandbox.sandbox_event_deliver(event=event)

    [(url, data, headers)] = posted
    assert url == settings.PAYMENTS_SANDBOX_WEBHOOK_URL
    assert data == event.body.encode()
    assert headers["Sandbox-Signature"] == sandbox.sign(data, timestamp=int(headers["Sandbox-Signature"][2:12]))
    event.refresh_from_db()
    assert (event.failed_attempts, event.last_status, event.delivery_count) == (1, 503, 0)


def test_the_delivery_task_retries_non_2xx_answers_and_connection_errors():
    assert sandbox.SandboxDeliveryError in tasks.sandbox_event_deliver.transient_errors
    assert issubclass(requests.ConnectionError, tasks.sandbox_event_deliver.transient_errors)
    assert tasks.sandbox_event_deliver.max_retries >= 5
