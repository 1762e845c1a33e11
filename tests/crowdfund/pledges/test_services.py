from decimal import Decimal

import pytest

from crowdfund.pledges import services
from crowdfund.pledges.models import PledgeStatus
from tests.factories import CampaignFactory, PledgeFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_paid_pledge_adds_to_the_campaign_totals_once():
    campaign = CampaignFactory(live=True)
    pledge = PledgeFactory(campaign=campaign, amount=Decimal("12.50"))
    services.pledge_mark_paid(pledge=pledge)
    services.pledge_mark_paid(pledge=pledge)  # a duplicate event
    campaign.refresh_from_db()
    pledge.refresh_from_db()
    assert pledge.status == PledgeStatus.PAID
    assert (campaign.pledged_amount, campaign.backer_count) == (Decimal("12.50"), 1)


def test_a_backer_with_two_paid_pledges_counts_once():
    campaign = CampaignFactory(live=True)
    backer = UserFactory()
    for amount in ("10.00", "15.00"):
        services.pledge_mark_paid(pledge=PledgeFactory(campaign=campaign, backer=backer, amount=Decimal(amount)))
    services.pledge_mark_paid(pledge=PledgeFactory(campaign=campaign, amount=Decimal("1.00")))
    campaign.refresh_from_db()
    assert (campaign.pledged_amount, campaign.backer_count) == (Decimal("26.00"), 2)


def test_a_cancelled_pledge_is_never_marked_paid():
    pledge = PledgeFactory(status=PledgeStatus.CANCELLED)
    services.pledge_mark_paid(pledge=pledge)
    pledge.refresh_from_db()
    pledge.campaign.refresh_from_db()
    assert pledge.status == PledgeStatus.CANCELLED
    assert pledge.campaign.pledged_amount == Decimal("0")
