from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from crowdfund.campaigns import services
from crowdfund.campaigns.models import CampaignStatus
from crowdfund.common.errors import DomainError
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def test_a_campaign_reaching_its_goal_succeeds_at_its_deadline():
    campaign = CampaignFactory(live=True, goal_amount=Decimal("100.00"), pledged_amount=Decimal("100.00"))
    with time_machine.travel(campaign.deadline + timedelta(seconds=1)):
        closed = services.campaign_close(campaign=campaign)
    assert closed.status == CampaignStatus.SUCCEEDED
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.SUCCEEDED
    assert campaign.finished_at is not None


def test_a_campaign_short_of_its_goal_fails_at_its_deadline():
    campaign = CampaignFactory(live=True, goal_amount=Decimal("100.00"), pledged_amount=Decimal("99.99"))
    with time_machine.travel(campaign.deadline + timedelta(seconds=1)):
        services.campaign_close(campaign=campaign)
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.FAILED


def test_a_campaign_is_not_closed_before_its_deadline():
    campaign = CampaignFactory(live=True)
    with pytest.raises(DomainError) as refused:
        services.campaign_close(campaign=campaign)
    assert refused.value.code == "campaign_still_running"
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.LIVE


@pytest.mark.parametrize("status", [CampaignStatus.DRAFT, CampaignStatus.SUCCEEDED, CampaignStatus.CANCELLED])
def test_only_a_live_campaign_closes(status):
    campaign = CampaignFactory(status=status, deadline=timezone.now() - timedelta(days=1))
    with pytest.raises(DomainError) as refused:
        services.campaign_close(campaign=campaign)
    assert refused.value.code == "invalid_transition"
    assert refused.value.status == 409


def test_a_finished_campaign_cannot_be_published_or_cancelled():
    campaign = CampaignFactory(status=CampaignStatus.FAILED)
    for service in (services.campaign_publish, services.campaign_cancel):
        with pytest.raises(DomainError) as refused:
            service(campaign=campaign)
        assert refused.value.code == "invalid_transition"
