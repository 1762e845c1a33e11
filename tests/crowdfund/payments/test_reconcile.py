"""Reconciliation: pledges stuck pending are brought up to date with the provider."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine

from crowdfund.payments import services
from crowdfund.payments.models import SandboxIntent
from crowdfund.payments.providers.sandbox import sandbox_intent_confirm
from crowdfund.pledges.models import PledgeStatus

pytestmark = pytest.mark.django_db


def test_it_pays_a_pledge_whose_webhook_never_came(pledge, settings):
    settings.PAYMENTS_RECONCILE_AFTER_MINUTES = 15
    sandbox_intent_confirm(intent_id=pledge.payment_intent_id, outcome="succeeded")  # its webhook is lost

    with time_machine.travel(pledge.created_at + timedelta(minutes=16)):
        assert services.pledges_reconcile() == 1

    pledge.refresh_from_db()
    pledge.campaign.refresh_from_db()
    assert pledge.status == PledgeStatus.PAID
    assert (pledge.campaign.pledged_amount, pledge.campaign.backer_count) == (Decimal("25.00"), 1)


def test_it_leaves_young_pending_pledges_to_their_webhooks(pledge):
    sandbox_intent_confirm(intent_id=pledge.payment_intent_id, outcome="succeeded")
    with time_machine.travel(pledge.created_at + timedelta(minutes=5)):
        assert services.pledges_reconcile() == 0
    pledge.refresh_from_db()
    assert pledge.status == PledgeStatus.PENDING


def test_it_fails_a_pledge_whose_payment_failed_without_a_webhook(pledge):
    sandbox_intent_confirm(intent_id=pledge.payment_intent_id, outcome="failed")
    with time_machine.travel(pledge.created_at + timedelta(hours=1)):
        services.pledges_reconcile()
    pledge.refresh_from_db()
    assert pledge.status == PledgeStatus.FAILED


def test_an_unconfirmed_intent_stays_pending_until_abandoned_then_expires_and_its_pledge_fails(pledge, settings):
    settings.PAYMENTS_INTENT_ABANDONED_AFTER_HOURS = 24
    with time_machine.travel(pledge.created_at + timedelta(hours=2)):
        services.pledges_reconcile()
    pledge.refresh_from_db()
    assert pledge.status == PledgeStatus.PENDING

    with time_machine.travel(pledge.created_at + timedelta(hours=25)):
        services.pledges_reconcile()

    pledge.refresh_from_db()
    assert pledge.status == PledgeStatus.FAILED
    assert SandboxIntent.objects.get(intent_id=pledge.payment_intent_id).status == "canceled"


def test_checking_with_the_provider_flags_an_amount_that_does_not_match(pledge):
    SandboxIntent.objects.filter(intent_id=pledge.payment_intent_id).update(status="succeeded", amount=Decimal("1.00"))
    note = services.pledge_check_with_provider(pledge=pledge)
    assert note == "1.00 EUR does not match the pledge's 25.00 EUR; not applied."
    pledge.refresh_from_db()
    assert pledge.status == PledgeStatus.PENDING
