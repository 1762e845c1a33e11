import json
import secrets
import time
from decimal import Decimal

import pytest

from crowdfund.payments.providers.sandbox import sign
from crowdfund.pledges.services import pledge_create
from tasks import services as task_services

WEBHOOK_URL = "/api/v1/payments/webhooks/sandbox"


@pytest.fixture(autouse=True)
def _publishing_not_paused(monkeypatch):
    """A publish that failed in an earlier test pauses publishing in this process for a few seconds."""
    monkeypatch.setattr(task_services, "_publish_paused_until", 0.0)


@pytest.fixture
def pledge(backer, live_campaign):
    """A pending pledge of 25.00 EUR with its intent at the sandbox, made as the app makes it."""
    return pledge_create(backer=backer, campaign=live_campaign, amount=Decimal("25.00"), idempotency_key="k-1")


def event_body(pledge, type="payment.succeeded", *, event_id=None, amount=None, currency=None) -> bytes:
    """A sandbox event as API.md describes it, for `pledge`'s intent."""
    return json.dumps(
        {
            "id": event_id or f"evt_{secrets.token_hex(8)}",
            "type": type,
            "created": int(time.time()),
            "data": {
                "intent_id": pledge.payment_intent_id,
                "amount": amount or f"{pledge.amount:.2f}",
                "currency": currency or pledge.currency,
            },
        }
    ).encode()


def post_webhook(client, body: bytes, *, signature: str | None = None, timestamp: int | None = None):
    """POST `body` to the webhook, signed now with the configured secret unless told otherwise."""
    headers = {} if signature == "" else {"HTTP_SANDBOX_SIGNATURE": signature or sign(body, timestamp=timestamp)}
    return client.post(WEBHOOK_URL, data=body, content_type="application/json", **headers)


@pytest.fixture
def start_worker(broker):
    """Start real worker processes (`start_worker(env={...})`); all are stopped before the test
    database is emptied."""
    from tests.workers import Worker

    started = []

    def start(**options):
        worker = Worker(**options)
        started.append(worker)
        return worker.wait_ready()

    yield start
    for worker in started:
        worker.stop()
