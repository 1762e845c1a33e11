"""The webhook endpoint: verified on the raw body, stored once, processing enqueued in the same
transaction; anything else refused with 400 and a stable code, never stored."""

import json
import time
from decimal import Decimal

import pytest
import time_machine
from django.test import Client

from crowdfund.notifications.models import KIND_CHANNELS, NotificationKind, OutboxMessage
from crowdfund.payments import services
from crowdfund.payments.models import PaymentEvent, PaymentEventState
from crowdfund.payments.providers.sandbox import sign
from crowdfund.pledges.models import PledgeStatus
from tasks.models import TaskRecord
from tests.crowdfund.payments.conftest import event_body, post_webhook

pytestmark = pytest.mark.django_db


def apply_all_received() -> None:
    """What the worker does: run every enqueued processing task."""
    for event_id in PaymentEvent.objects.filter(state=PaymentEventState.RECEIVED).values_list("id", flat=True):
        services.payment_event_apply(event_id=event_id)


def test_a_correctly_signed_event_is_stored_with_its_raw_body_and_its_processing_enqueued(client, pledge):
    body = event_body(pledge, event_id="evt_good")

    response = post_webhook(client, body)

    assert response.status_code == 200
    assert response.json() == {"received": True, "duplicate": False}
    event = PaymentEvent.objects.get()
    assert (event.provider, event.event_id, event.type) == ("sandbox", "evt_good", "payment.succeeded")
    assert (event.intent_id, event.amount, event.currency) == (pledge.payment_intent_id, Decimal("25.00"), "EUR")
    assert event.raw_body == body.decode()
    assert event.state == PaymentEventState.RECEIVED
    task = TaskRecord.objects.get(id=event.task_id)
    assert task.name == "crowdfund.payments.tasks.payment_event_apply"
    assert task.queue == "payments"
    assert task.kwargs == {"event_id": str(event.id)}
    pledge.refresh_from_db()
    assert pledge.status == PledgeStatus.PENDING  # processing is the task's job, not the request's


def test_it_needs_no_user_and_no_csrf_token(pledge):
    response = post_webhook(Client(enforce_csrf_checks=True), event_body(pledge))
    assert response.status_code == 200
    assert PaymentEvent.objects.count() == 1


def test_processing_the_event_pays_the_pledge_and_queues_the_receipt(client, pledge):
    post_webhook(client, event_body(pledge))

    apply_all_received()

    pledge.refresh_from_db()
    pledge.campaign.refresh_from_db()
    assert pledge.status == PledgeStatus.PAID
    assert (pledge.campaign.pledged_amount, pledge.campaign.backer_count) == (Decimal("25.00"), 1)
    assert PaymentEvent.objects.get().state == PaymentEventState.PROCESSED
    receipt = OutboxMessage.objects.about(kind=NotificationKind.PLEDGE_RECEIPT, subject=f"pledge:{pledge.id}")
    assert set(receipt.values_list("recipient", flat=True)) == {pledge.backer_id}


@pytest.mark.parametrize(
    ("signature", "code"),
    [
        ("", "webhook_signature_missing"),
        ("t=1700000000", "webhook_signature_invalid"),
        ("v1=abc", "webhook_signature_invalid"),
        ("garbage", "webhook_signature_invalid"),
    ],
)
def test_it_refuses_a_missing_or_malformed_signature(client, pledge, signature, code):
    response = post_webhook(client, event_body(pledge), signature=signature)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert not PaymentEvent.objects.exists()
    assert not TaskRecord.objects.exists()


def test_it_refuses_a_signature_made_with_another_secret(client, pledge):
    body = event_body(pledge)
    response = post_webhook(client, body, signature=sign(body, secret="not-the-secret"))
    assert response.status_code == 400
    assert response.json() == {
        "code": "webhook_signature_invalid",
        "detail": "The signature does not match the body.",
        "fields": {},
    }
    assert not PaymentEvent.objects.exists()


def test_it_refuses_a_body_changed_after_signing(client, pledge):
    body = event_body(pledge)
    tampered = body.replace(b'"25.00"', b'"2500.00"')
    response = post_webhook(client, tampered, signature=sign(body))
    assert response.status_code == 400
    assert response.json()["code"] == "webhook_signature_invalid"
    assert not PaymentEvent.objects.exists()


def test_it_refuses_a_signature_older_than_five_minutes(client, pledge):
    body = event_body(pledge)
    signed_at = int(time.time())
    with time_machine.travel(signed_at + 301, tick=False):
        response = post_webhook(client, body, timestamp=signed_at)
    assert response.status_code == 400
    assert response.json()["code"] == "webhook_signature_stale"
    assert not PaymentEvent.objects.exists()


def test_it_accepts_a_signature_just_under_five_minutes_old(client, pledge):
    body = event_body(pledge)
    signed_at = int(time.time())
    with time_machine.travel(signed_at + 299, tick=False):
        response = post_webhook(client, body, timestamp=signed_at)
    assert response.status_code == 200
    assert PaymentEvent.objects.count() == 1


def test_it_refuses_a_signature_from_the_future(client, pledge):
    body = event_body(pledge)
    response = post_webhook(client, body, timestamp=int(time.time()) + 600)
    assert response.status_code == 400
    assert response.json()["code"] == "webhook_signature_stale"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "webhook_malformed"),
        (b"[]", "webhook_malformed"),
        (b'{"id": "evt_1", "type": "payment.succeeded"}', "webhook_malformed"),
        (
            b'{"id": "evt_1", "type": "payment.succeeded", "created": 1, '
            b'"data": {"intent_id": "pi_1", "amount": 25, "currency": "EUR"}}',
            "webhook_malformed",
        ),
        (
            b'{"id": "evt_1", "type": "charge.dispute", "created": 1, '
            b'"data": {"intent_id": "pi_1", "amount": "25.00", "currency": "EUR"}}',
            "webhook_event_type_unknown",
        ),
    ],
)
def test_it_refuses_signed_bodies_that_are_not_a_known_event(client, db, body, code):
    response = post_webhook(client, body)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert not PaymentEvent.objects.exists()


def test_it_refuses_an_oversized_body_unread(client, pledge, settings):
    settings.PAYMENTS_WEBHOOK_MAX_BODY_BYTES = 1024
    payload = json.loads(event_body(pledge))
    payload["padding"] = "x" * 2000
    response = post_webhook(client, json.dumps(payload).encode())
    assert response.status_code == 400
    assert response.json()["code"] == "webhook_too_large"
    assert not PaymentEvent.objects.exists()


def test_the_same_event_delivered_five_times_gives_one_transition_and_one_receipt(client, pledge):
    body = event_body(pledge, event_id="evt_five_times")

    answers = [post_webhook(client, body) for _ in range(5)]
    apply_all_received()
    apply_all_received()  # and the processing run again, as an admin's retry would

    assert [answer.status_code for answer in answers] == [200] * 5
    assert [answer.json()["duplicate"] for answer in answers] == [False, True, True, True, True]
    assert PaymentEvent.objects.count() == 1
    assert TaskRecord.objects.filter(name="crowdfund.payments.tasks.payment_event_apply").count() == 1
    pledge.refresh_from_db()
    pledge.campaign.refresh_from_db()
    assert pledge.status == PledgeStatus.PAID
    assert (pledge.campaign.pledged_amount, pledge.campaign.backer_count) == (Decimal("25.00"), 1)
    receipts = OutboxMessage.objects.about(kind=NotificationKind.PLEDGE_RECEIPT, subject=f"pledge:{pledge.id}")
    assert sorted(receipts.values_list("channel", flat=True)) == sorted(KIND_CHANNELS[NotificationKind.PLEDGE_RECEIPT])
    sending = TaskRecord.objects.filter(queue="notifications", correlation_key=f"pledge:{pledge.id}")
    assert sending.count() == 1


def test_an_amount_mismatch_is_flagged_for_an_admin_and_not_paid(client, pledge):
    post_webhook(client, event_body(pledge, amount="2.50"))

    apply_all_received()

    event = PaymentEvent.objects.get()
    assert event.state == PaymentEventState.FLAGGED
    assert "2.50 EUR does not match the pledge's 25.00 EUR" in event.outcome
    pledge.refresh_from_db()
    pledge.campaign.refresh_from_db()
    assert pledge.status == PledgeStatus.PENDING
    assert pledge.campaign.pledged_amount == Decimal("0.00")
    assert not OutboxMessage.objects.filter(kind=NotificationKind.PLEDGE_RECEIPT).exists()


def test_a_currency_mismatch_is_flagged_too(client, pledge):
    post_webhook(client, event_body(pledge, currency="USD"))
    apply_all_received()
    assert PaymentEvent.objects.get().state == PaymentEventState.FLAGGED
    pledge.refresh_from_db()
    assert pledge.status == PledgeStatus.PENDING


def test_an_event_for_an_unknown_intent_is_recorded_and_ignored(client, db):
    body = json.dumps(
        {
            "id": "evt_x",
            "type": "payment.succeeded",
            "created": int(time.time()),
            "data": {"intent_id": "pi_nobody", "amount": "1.00", "currency": "EUR"},
        }
    ).encode()
    assert post_webhook(client, body).status_code == 200
    apply_all_received()
    event = PaymentEvent.objects.get()
    assert (event.state, event.outcome, event.pledge) == (PaymentEventState.IGNORED, "No pledge has this intent.", None)
