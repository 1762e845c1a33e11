from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from crowdfund.campaigns.models import CampaignStatus
from crowdfund.payments.models import SandboxIntent
from crowdfund.pledges.models import Pledge, PledgeStatus
from tests.factories import CampaignFactory, PledgeFactory, RewardFactory

pytestmark = pytest.mark.django_db


def pledge(client, campaign, body, key="key-1"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(f"/api/v1/campaigns/{campaign.id}/pledges", body, **headers)


# --- Creating ----------------------------------------------------------------------------------


def test_a_backer_pledges_for_a_reward_and_gets_a_payment_intent(api_client, backer, live_campaign):
    reward = RewardFactory(campaign=live_campaign, minimum_amount=Decimal("25.00"), quantity=3)
    response = pledge(api_client(backer), live_campaign, {"amount": "30.00", "reward": str(reward.id)})
    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["amount"], body["currency"], body["reward"]) == (
        "pending",
        "30.00",
        "EUR",
        str(reward.id),
    )
    created = Pledge.objects.get()
    assert (created.backer, created.campaign, created.amount) == (backer, live_campaign, Decimal("30.00"))
    intent = SandboxIntent.objects.get()
    assert body["payment"] == {
        "provider": "sandbox",
        "intent_id": intent.intent_id,
        "client_secret": intent.client_secret,
    }
    assert intent.intent_id.startswith("pi_")
    assert (intent.amount, intent.currency, intent.status) == (Decimal("30.00"), "EUR", "requires_confirmation")
    assert created.payment_intent_id == intent.intent_id
    reward.refresh_from_db()
    assert reward.slots_left == 2


def test_a_pledge_without_a_reward_is_fine(api_client, backer, live_campaign):
    response = pledge(api_client(backer), live_campaign, {"amount": "5"})
    assert response.status_code == 201
    assert response.json()["reward"] is None
    assert Pledge.objects.get().amount == Decimal("5.00")


def test_the_same_key_and_body_return_the_same_pledge(api_client, backer, live_campaign):
    reward = RewardFactory(campaign=live_campaign, quantity=5)
    client = api_client(backer)
    first = pledge(client, live_campaign, {"amount": "30.00", "reward": str(reward.id)})
    again = pledge(client, live_campaign, {"amount": "30", "reward": str(reward.id)})
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json() == again.json()
    assert Pledge.objects.count() == 1
    assert SandboxIntent.objects.count() == 1
    reward.refresh_from_db()
    assert reward.reserved_count == 1


def test_the_same_key_with_another_body_is_refused(api_client, backer, live_campaign):
    client = api_client(backer)
    pledge(client, live_campaign, {"amount": "30.00"})
    response = pledge(client, live_campaign, {"amount": "31.00"})
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert Pledge.objects.get().amount == Decimal("30.00")


def test_one_backers_key_does_not_collide_with_anothers(api_client, backer, outsider, live_campaign):
    assert pledge(api_client(backer), live_campaign, {"amount": "30.00"}, key="same").status_code == 201
    assert pledge(api_client(outsider), live_campaign, {"amount": "40.00"}, key="same").status_code == 201
    assert Pledge.objects.count() == 2


def test_a_pledge_whose_intent_was_not_created_gets_it_on_the_repeat(api_client, backer, live_campaign):
    client = api_client(backer)
    first = pledge(client, live_campaign, {"amount": "30.00"}).json()
    # As if the provider had timed out after the pledge was committed.
    Pledge.objects.update(payment_provider="", payment_intent_id="", payment_client_secret="")
    SandboxIntent.objects.all().delete()
    again = pledge(client, live_campaign, {"amount": "30.00"})
    assert again.status_code == 201
    assert again.json()["id"] == first["id"]
    assert again.json()["payment"]["intent_id"] == SandboxIntent.objects.get().intent_id


@pytest.mark.parametrize("key", [None, "", "k" * 256])
def test_it_needs_a_sensible_idempotency_key(api_client, backer, live_campaign, key):
    response = pledge(api_client(backer), live_campaign, {"amount": "30.00"}, key=key)
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_required"
    assert not Pledge.objects.exists()


def test_it_refuses_an_amount_below_the_rewards_minimum(api_client, backer, live_campaign):
    reward = RewardFactory(campaign=live_campaign, minimum_amount=Decimal("25.00"), quantity=1)
    response = pledge(api_client(backer), live_campaign, {"amount": "24.99", "reward": str(reward.id)})
    assert response.status_code == 400
    assert response.json()["code"] == "amount_below_reward_minimum"
    assert list(response.json()["fields"]) == ["amount"]
    assert not Pledge.objects.exists()
    reward.refresh_from_db()
    assert reward.reserved_count == 0


@pytest.mark.parametrize("amount", ["0", "-1", "0.001", "1e20", "Infinity", "ten", None, True, [], {}])
def test_it_refuses_invalid_amounts(api_client, backer, live_campaign, amount):
    response = pledge(api_client(backer), live_campaign, {"amount": amount})
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert list(response.json()["fields"]) == ["amount"]
    assert not Pledge.objects.exists()


def test_it_refuses_a_reward_of_another_campaign(api_client, backer, live_campaign):
    elsewhere = RewardFactory()
    response = pledge(api_client(backer), live_campaign, {"amount": "30.00", "reward": str(elsewhere.id)})
    assert response.status_code == 400
    assert response.json()["code"] == "reward_not_found"
    assert list(response.json()["fields"]) == ["reward"]


def test_it_refuses_a_malformed_reward_id(api_client, backer, live_campaign):
    response = pledge(api_client(backer), live_campaign, {"amount": "30.00", "reward": "not-a-uuid"})
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["reward"]


def test_a_sold_out_reward_is_refused(api_client, backer, live_campaign):
    reward = RewardFactory(campaign=live_campaign, quantity=1, reserved_count=1)
    response = pledge(api_client(backer), live_campaign, {"amount": "30.00", "reward": str(reward.id)})
    assert response.status_code == 409
    assert response.json()["code"] == "reward_sold_out"
    assert not Pledge.objects.exists()


def test_a_creator_cannot_pledge_to_their_own_campaign(api_client, creator, live_campaign):
    response = pledge(api_client(creator), live_campaign, {"amount": "30.00"})
    assert response.status_code == 403
    assert response.json()["code"] == "own_campaign"
    assert not Pledge.objects.exists()


@pytest.mark.parametrize("status", [CampaignStatus.SUCCEEDED, CampaignStatus.FAILED, CampaignStatus.CANCELLED])
def test_a_finished_campaign_takes_no_pledges(api_client, backer, status):
    campaign = CampaignFactory(status=status)
    response = pledge(api_client(backer), campaign, {"amount": "30.00"})
    assert response.status_code == 409
    assert response.json()["code"] == "campaign_not_live"
    assert not Pledge.objects.exists()


def test_a_live_campaign_past_its_deadline_takes_no_pledges(api_client, backer):
    campaign = CampaignFactory(live=True, deadline=timezone.now() - timedelta(minutes=1))
    assert pledge(api_client(backer), campaign, {"amount": "30.00"}).status_code == 409


def test_a_draft_campaign_is_not_found_for_pledging(api_client, backer, draft_campaign):
    response = pledge(api_client(backer), draft_campaign, {"amount": "30.00"})
    assert response.status_code == 404
    assert not Pledge.objects.exists()


def test_pledging_needs_authentication(api_client, live_campaign):
    assert pledge(api_client(), live_campaign, {"amount": "30.00"}).status_code == 401
    assert not Pledge.objects.exists()


# --- Reading -----------------------------------------------------------------------------------


def test_a_backer_lists_only_their_own_pledges_newest_first(api_client, backer, outsider):
    older = PledgeFactory(backer=backer)
    newer = PledgeFactory(backer=backer)
    PledgeFactory(backer=outsider)
    response = api_client(backer).get("/api/v1/pledges")
    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert [p["id"] for p in response.json()["results"]] == [str(newer.id), str(older.id)]


def test_pledges_are_paginated(api_client, backer):
    PledgeFactory.create_batch(3, backer=backer)
    body = api_client(backer).get("/api/v1/pledges", {"page_size": 2}).json()
    assert (body["count"], len(body["results"])) == (3, 2)
    assert body["next"] is not None


@pytest.mark.parametrize("page_size", [1, 40])
def test_listing_pledges_takes_the_same_queries_whatever_the_page_size(
    api_client, backer, django_assert_max_num_queries, page_size
):
    campaign = CampaignFactory(live=True)
    for reward in RewardFactory.create_batch(40, campaign=campaign):
        PledgeFactory(backer=backer, campaign=campaign, reward=reward)
    client = api_client(backer)
    with django_assert_max_num_queries(3):
        response = client.get("/api/v1/pledges", {"page_size": page_size})
    assert len(response.json()["results"]) == page_size


def test_listing_pledges_needs_authentication(api_client):
    assert api_client().get("/api/v1/pledges").status_code == 401


def test_a_backer_reads_their_pledge(api_client, backer):
    mine = PledgeFactory(backer=backer)
    response = api_client(backer).get(f"/api/v1/pledges/{mine.id}")
    assert response.status_code == 200
    assert response.json()["id"] == str(mine.id)


def test_someone_elses_pledge_is_not_found(api_client, backer, outsider):
    theirs = PledgeFactory(backer=outsider)
    response = api_client(backer).get(f"/api/v1/pledges/{theirs.id}")
    assert response.status_code == 404
    assert response.json()["code"] == "pledge_not_found"
    assert api_client().get(f"/api/v1/pledges/{theirs.id}").status_code == 401


# --- Cancelling --------------------------------------------------------------------------------


def test_a_backer_cancels_a_pending_pledge_and_its_slot_comes_back(api_client, backer, live_campaign):
    reward = RewardFactory(campaign=live_campaign, quantity=1)
    client = api_client(backer)
    created = pledge(client, live_campaign, {"amount": "30.00", "reward": str(reward.id)}).json()
    response = client.post(f"/api/v1/pledges/{created['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert Pledge.objects.get().status == PledgeStatus.CANCELLED
    reward.refresh_from_db()
    assert reward.slots_left == 1


def test_a_cancelled_pledge_cannot_be_cancelled_again(api_client, backer, live_campaign):
    mine = PledgeFactory(backer=backer, campaign=live_campaign, status=PledgeStatus.CANCELLED)
    response = api_client(backer).post(f"/api/v1/pledges/{mine.id}/cancel")
    assert response.status_code == 409
    assert response.json()["code"] == "pledge_not_cancellable"


def test_a_pledge_cannot_be_cancelled_once_the_campaign_is_over(api_client, backer):
    mine = PledgeFactory(backer=backer, campaign=CampaignFactory(status=CampaignStatus.SUCCEEDED))
    response = api_client(backer).post(f"/api/v1/pledges/{mine.id}/cancel")
    assert response.status_code == 409
    assert response.json()["code"] == "campaign_not_live"
    mine.refresh_from_db()
    assert mine.status == PledgeStatus.PENDING


def test_only_the_backer_cancels_a_pledge(api_client, backer, outsider):
    theirs = PledgeFactory(backer=outsider)
    assert api_client(backer).post(f"/api/v1/pledges/{theirs.id}/cancel").status_code == 404
    assert api_client().post(f"/api/v1/pledges/{theirs.id}/cancel").status_code == 401
    theirs.refresh_from_db()
    assert theirs.status == PledgeStatus.PENDING
