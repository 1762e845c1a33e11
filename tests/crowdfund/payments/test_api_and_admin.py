"""The sandbox confirm endpoint (development only), the payments admin and the campaign admin's
cancel action (which refunds)."""

import subprocess
import sys
from decimal import Decimal

import pytest

from crowdfund.campaigns.models import CampaignStatus
from crowdfund.payments.models import PaymentEvent, SandboxEvent, SandboxRefund
from crowdfund.pledges.models import PledgeStatus
from tasks.models import TaskRecord
from tests.crowdfund.payments.conftest import event_body, post_webhook
from tests.factories import CampaignFactory, UserFactory
from tests.workers import ROOT

pytestmark = pytest.mark.django_db


def confirm_url(intent_id: str) -> str:
    return f"/api/v1/payments/sandbox/intents/{intent_id}/confirm"


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_confirming_a_sandbox_intent_answers_202_and_queues_the_webhook(api_client, pledge):
    response = api_client().post(confirm_url(pledge.payment_intent_id), {"outcome": "succeeded"})
    assert response.status_code == 202
    assert response.json() == {"intent_id": pledge.payment_intent_id, "status": "succeeded"}
    event = SandboxEvent.objects.get()
    assert event.type == "payment.succeeded"
    assert TaskRecord.objects.get(name="crowdfund.payments.tasks.sandbox_event_deliver").kwargs == {
        "event_id": event.id
    }


def test_confirming_refuses_an_unknown_outcome_and_an_unknown_intent(api_client, pledge):
    bad_outcome = api_client().post(confirm_url(pledge.payment_intent_id), {"outcome": "maybe"})
    unknown = api_client().post(confirm_url("pi_nobody"), {"outcome": "succeeded"})
    assert (bad_outcome.status_code, bad_outcome.json()["code"]) == (400, "validation_error")
    assert "outcome" in bad_outcome.json()["fields"]
    assert (unknown.status_code, unknown.json()["code"]) == (404, "intent_not_found")
    assert not SandboxEvent.objects.exists()


def test_confirming_twice_is_a_conflict(api_client, pledge):
    api_client().post(confirm_url(pledge.payment_intent_id), {"outcome": "failed"})
    again = api_client().post(confirm_url(pledge.payment_intent_id), {"outcome": "succeeded"})
    assert (again.status_code, again.json()["code"]) == (409, "intent_not_confirmable")
    assert SandboxEvent.objects.count() == 1


def test_the_confirm_endpoint_does_not_exist_in_production_settings():
    script = (
        "import django; django.setup(); from django.urls import Resolver404, resolve\n"
        "assert resolve('/api/v1/payments/webhooks/sandbox')\n"
        "try:\n    resolve('/api/v1/payments/sandbox/intents/pi_1/confirm')\nexcept Resolver404:\n    print('absent')\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "false",
        "SECRET_KEY": "x" * 50,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "absent"


def test_the_event_admin_shows_the_raw_body_its_outcome_and_a_link_to_its_task(admin_client, client, pledge):
    post_webhook(client, event_body(pledge, event_id="evt_admin"))
    event = PaymentEvent.objects.get()

    listing = admin_client.get("/admin/payments/paymentevent/", {"q": "evt_admin"})
    page = admin_client.get(f"/admin/payments/paymentevent/{event.id}/change/")

    assert listing.status_code == 200
    assert "evt_admin" in listing.text
    assert page.status_code == 200
    assert f"/admin/tasks/taskrecord/{event.task_id}/change/" in page.text
    assert "&quot;intent_id&quot;: &quot;" + pledge.payment_intent_id in page.text


def test_the_pledge_admin_refunds_a_paid_pledge_through_the_provider(admin_client, api_client, pledge):
    api_client().post(confirm_url(pledge.payment_intent_id), {"outcome": "succeeded"})
    admin_client.post("/admin/pledges/pledge/", {"action": "check_with_provider", "_selected_action": [pledge.id]})
    pledge.refresh_from_db()
    assert pledge.status == PledgeStatus.PAID

    admin_client.post("/admin/pledges/pledge/", {"action": "refund", "_selected_action": [pledge.id]})

    pledge.refresh_from_db()
    pledge.campaign.refresh_from_db()
    assert pledge.status == PledgeStatus.REFUNDED
    assert pledge.campaign.pledged_amount == Decimal("0.00")
    assert SandboxRefund.objects.get().intent.intent_id == pledge.payment_intent_id


def test_refunding_a_pending_pledge_in_the_admin_is_refused_with_a_message(admin_client, pledge):
    response = admin_client.post(
        "/admin/pledges/pledge/", {"action": "refund", "_selected_action": [pledge.id]}, follow=True
    )
    assert "A pending pledge cannot be refunded." in response.text
    assert not SandboxRefund.objects.exists()


def test_the_campaign_admin_cancels_a_live_campaign_and_enqueues_its_refunds(admin_client, live_campaign):
    finished = CampaignFactory(status=CampaignStatus.SUCCEEDED)
    response = admin_client.post(
        "/admin/campaigns/campaign/",
        {"action": "cancel", "_selected_action": [live_campaign.id, finished.id]},
        follow=True,
    )
    live_campaign.refresh_from_db()
    finished.refresh_from_db()
    assert (live_campaign.status, finished.status) == (CampaignStatus.CANCELLED, CampaignStatus.SUCCEEDED)
    assert "1 campaign(s) cancelled." in response.text
    chunks = TaskRecord.objects.filter(name="crowdfund.payments.tasks.campaign_refund_chunk")
    assert [chunk.kwargs["campaign_id"] for chunk in chunks] == [str(live_campaign.id)]
