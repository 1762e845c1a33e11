"""Every model has an admin page that lists, searches and filters; writes that matter go through
the services."""

import pytest
from django.contrib.admin.sites import site

from crowdfund.campaigns.models import CampaignStatus
from crowdfund.pledges.models import PledgeStatus
from tests.factories import CampaignFactory, PledgeFactory, RewardFactory, UserFactory

pytestmark = pytest.mark.django_db

DOMAIN_APPS = {"accounts", "campaigns", "pledges", "payments"}


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_every_domain_model_has_a_searchable_admin_page(admin_client):
    PledgeFactory(reward=RewardFactory())
    models = [m for m in site._registry if m._meta.app_label in DOMAIN_APPS]
    assert len(models) >= 7
    for model in models:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert admin_client.get(url, {"q": "x"}).status_code == 200, url
        assert site._registry[model].search_fields, url


def test_the_publish_action_goes_through_the_lifecycle(admin_client):
    draft = CampaignFactory()
    finished = CampaignFactory(status=CampaignStatus.FAILED)
    admin_client.post("/admin/campaigns/campaign/", {"action": "publish", "_selected_action": [draft.id, finished.id]})
    draft.refresh_from_db()
    finished.refresh_from_db()
    assert draft.status == CampaignStatus.LIVE
    assert finished.status == CampaignStatus.FAILED


def test_the_cancel_pledge_action_gives_the_reward_slot_back(admin_client):
    reward = RewardFactory(quantity=1, reserved_count=1)
    pledge = PledgeFactory(campaign=reward.campaign, reward=reward)
    admin_client.post("/admin/pledges/pledge/", {"action": "cancel", "_selected_action": [pledge.id]})
    pledge.refresh_from_db()
    reward.refresh_from_db()
    assert pledge.status == PledgeStatus.CANCELLED
    assert reward.reserved_count == 0
