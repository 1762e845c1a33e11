from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from crowdfund.campaigns.models import Campaign, CampaignStatus, CampaignUpdate, Reward
from crowdfund.notifications import tasks as notification_tasks
from tasks.models import TaskRecord
from tests.factories import CampaignFactory, CampaignUpdateFactory, RewardFactory, UserFactory

pytestmark = pytest.mark.django_db


def new_campaign(**overrides):
    body = {
        "title": "A better kettle",
        "description": "Boils faster.",
        "goal_amount": "5000.00",
        "currency": "EUR",
        "deadline": (timezone.now() + timedelta(days=30)).isoformat(),
    }
    return {**body, **overrides}


# --- Listing -----------------------------------------------------------------------------------


def test_anyone_lists_public_campaigns_but_not_drafts(api_client, live_campaign, draft_campaign):
    response = api_client().get("/api/v1/campaigns")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 1
    assert [c["id"] for c in body["results"]] == [str(live_campaign.id)]
    assert body["results"][0]["creator"] == {"id": live_campaign.creator_id, "display_name": "Cai Creator"}
    assert body["results"][0]["goal_amount"] == "1000.00"


def test_a_creator_also_sees_their_own_drafts(api_client, creator, live_campaign, draft_campaign):
    CampaignFactory()  # someone else's draft
    response = api_client(creator).get("/api/v1/campaigns")
    assert {c["id"] for c in response.json()["results"]} == {str(live_campaign.id), str(draft_campaign.id)}


def test_it_filters_campaigns_by_status_and_creator(api_client, creator, live_campaign):
    other = CampaignFactory(live=True)
    CampaignFactory(creator=creator, status=CampaignStatus.SUCCEEDED)
    by_status = api_client().get("/api/v1/campaigns", {"status": "live"}).json()
    assert {c["id"] for c in by_status["results"]} == {str(live_campaign.id), str(other.id)}
    by_creator = api_client().get("/api/v1/campaigns", {"creator": other.creator_id}).json()
    assert [c["id"] for c in by_creator["results"]] == [str(other.id)]


def test_it_refuses_an_unknown_status_filter(api_client):
    response = api_client().get("/api/v1/campaigns", {"status": "bogus"})
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert list(response.json()["fields"]) == ["status"]


def test_it_searches_titles_and_descriptions(api_client):
    kettle = CampaignFactory(live=True, title="Smart kettle")
    lamp = CampaignFactory(live=True, title="Lamp", description="Works with any kettle")
    CampaignFactory(live=True, title="Bicycle")
    response = api_client().get("/api/v1/campaigns", {"search": "KETTLE"})
    assert {c["id"] for c in response.json()["results"]} == {str(kettle.id), str(lamp.id)}


def test_it_orders_campaigns(api_client):
    small = CampaignFactory(live=True, goal_amount=Decimal("10.00"))
    big = CampaignFactory(live=True, goal_amount=Decimal("99999.00"))
    response = api_client().get("/api/v1/campaigns", {"ordering": "-goal_amount"})
    assert [c["id"] for c in response.json()["results"]] == [str(big.id), str(small.id)]
    response = api_client().get("/api/v1/campaigns", {"ordering": "goal_amount"})
    assert [c["id"] for c in response.json()["results"]] == [str(small.id), str(big.id)]


def test_it_paginates_campaigns(api_client):
    CampaignFactory.create_batch(5, live=True)
    first = api_client().get("/api/v1/campaigns", {"page_size": 2}).json()
    assert first["count"] == 5
    assert len(first["results"]) == 2
    assert first["previous"] is None
    assert "page=2" in first["next"]
    last = api_client().get("/api/v1/campaigns", {"page_size": 2, "page": 3}).json()
    assert len(last["results"]) == 1
    assert last["next"] is None


def test_a_page_past_the_end_is_not_found(api_client, live_campaign):
    response = api_client().get("/api/v1/campaigns", {"page": 99})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("page_size", [1, 50])
def test_listing_campaigns_takes_the_same_queries_whatever_the_page_size(
    api_client, backer, django_assert_max_num_queries, page_size
):
    CampaignFactory.create_batch(50, live=True)
    client = api_client(backer)
    with django_assert_max_num_queries(3):  # the caller, the count, the page (creators joined)
        response = client.get("/api/v1/campaigns", {"page_size": page_size})
    assert len(response.json()["results"]) == page_size


# --- Creating and reading ----------------------------------------------------------------------


def test_it_creates_a_draft_campaign(api_client, creator):
    response = api_client(creator).post("/api/v1/campaigns", new_campaign())
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "draft"
    assert body["goal_amount"] == "5000.00"
    assert body["pledged_amount"] == "0.00"
    assert body["backer_count"] == 0
    campaign = Campaign.objects.get(id=body["id"])
    assert (campaign.creator, campaign.goal_amount, campaign.currency) == (creator, Decimal("5000.00"), "EUR")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("goal_amount", "12.345"),
        ("goal_amount", "-5"),
        ("goal_amount", "1e30"),
        ("goal_amount", "NaN"),
        ("currency", "XXX"),
        ("title", ""),
        ("title", "x" * 201),
        ("deadline", "next tuesday"),
    ],
)
def test_it_refuses_invalid_campaign_fields(api_client, creator, field, value):
    response = api_client(creator).post("/api/v1/campaigns", new_campaign(**{field: value}))
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert list(response.json()["fields"]) == [field]
    assert not Campaign.objects.exists()


@pytest.mark.parametrize("days", [-1, 91])
def test_it_refuses_a_deadline_in_the_past_or_beyond_ninety_days(api_client, creator, days):
    deadline = (timezone.now() + timedelta(days=days)).isoformat()
    response = api_client(creator).post("/api/v1/campaigns", new_campaign(deadline=deadline))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_deadline"
    assert list(response.json()["fields"]) == ["deadline"]
    assert not Campaign.objects.exists()


def test_creating_a_campaign_needs_authentication(api_client):
    response = api_client().post("/api/v1/campaigns", new_campaign())
    assert response.status_code == 401
    assert not Campaign.objects.exists()


def test_anyone_reads_a_public_campaign(api_client, live_campaign):
    response = api_client().get(f"/api/v1/campaigns/{live_campaign.id}")
    assert response.status_code == 200
    assert response.json()["status"] == "live"


def test_someone_elses_draft_is_not_found(api_client, outsider, draft_campaign):
    response = api_client(outsider).get(f"/api/v1/campaigns/{draft_campaign.id}")
    assert response.status_code == 404
    assert response.json()["code"] == "campaign_not_found"


def test_its_creator_reads_a_draft(api_client, creator, draft_campaign):
    assert api_client(creator).get(f"/api/v1/campaigns/{draft_campaign.id}").status_code == 200


# --- Editing -----------------------------------------------------------------------------------


def test_the_creator_edits_anything_in_a_draft(api_client, creator, draft_campaign):
    response = api_client(creator).patch(
        f"/api/v1/campaigns/{draft_campaign.id}", {"title": "Renamed", "goal_amount": "2500.50", "currency": "USD"}
    )
    assert response.status_code == 200
    draft_campaign.refresh_from_db()
    assert (draft_campaign.title, draft_campaign.goal_amount, draft_campaign.currency) == (
        "Renamed",
        Decimal("2500.50"),
        "USD",
    )


def test_once_live_the_goal_currency_and_deadline_are_frozen(api_client, creator, live_campaign):
    title = live_campaign.title
    response = api_client(creator).patch(
        f"/api/v1/campaigns/{live_campaign.id}", {"title": "Renamed", "goal_amount": "1.00", "currency": "USD"}
    )
    assert response.status_code == 409
    assert response.json()["code"] == "campaign_field_frozen"
    assert set(response.json()["fields"]) == {"goal_amount", "currency"}
    live_campaign.refresh_from_db()
    assert (live_campaign.title, live_campaign.goal_amount, live_campaign.currency) == (title, Decimal("1000"), "EUR")


def test_once_live_the_title_and_description_still_change(api_client, creator, live_campaign):
    body = {"title": "Renamed", "description": "Better words", "currency": live_campaign.currency}
    response = api_client(creator).patch(f"/api/v1/campaigns/{live_campaign.id}", body)
    assert response.status_code == 200
    live_campaign.refresh_from_db()
    assert (live_campaign.title, live_campaign.description) == ("Renamed", "Better words")


def test_a_finished_campaign_no_longer_changes(api_client, creator):
    campaign = CampaignFactory(creator=creator, status=CampaignStatus.FAILED)
    response = api_client(creator).patch(f"/api/v1/campaigns/{campaign.id}", {"title": "Renamed"})
    assert response.status_code == 409
    assert response.json()["code"] == "campaign_not_editable"


def test_only_the_creator_edits_a_campaign(api_client, outsider, live_campaign):
    response = api_client(outsider).patch(f"/api/v1/campaigns/{live_campaign.id}", {"title": "Mine now"})
    assert response.status_code == 403
    assert response.json()["code"] == "not_campaign_creator"
    live_campaign.refresh_from_db()
    assert live_campaign.title != "Mine now"


def test_editing_needs_authentication(api_client, live_campaign):
    assert api_client().patch(f"/api/v1/campaigns/{live_campaign.id}", {"title": "x"}).status_code == 401


# --- Lifecycle ---------------------------------------------------------------------------------


def test_the_creator_publishes_a_draft(api_client, creator, draft_campaign):
    response = api_client(creator).post(f"/api/v1/campaigns/{draft_campaign.id}/publish")
    assert response.status_code == 200
    assert response.json()["status"] == "live"
    draft_campaign.refresh_from_db()
    assert draft_campaign.status == CampaignStatus.LIVE
    assert draft_campaign.published_at is not None


def test_a_live_campaign_cannot_be_published_again(api_client, creator, live_campaign):
    response = api_client(creator).post(f"/api/v1/campaigns/{live_campaign.id}/publish")
    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"


def test_a_draft_whose_deadline_passed_cannot_be_published(api_client, creator):
    campaign = CampaignFactory(creator=creator, deadline=timezone.now() - timedelta(hours=1))
    response = api_client(creator).post(f"/api/v1/campaigns/{campaign.id}/publish")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_deadline"
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.DRAFT


def test_only_the_creator_publishes(api_client, outsider, draft_campaign):
    # Someone else's draft is invisible to them, so it is not found rather than forbidden.
    assert api_client(outsider).post(f"/api/v1/campaigns/{draft_campaign.id}/publish").status_code == 404
    assert api_client().post(f"/api/v1/campaigns/{draft_campaign.id}/publish").status_code == 401
    draft_campaign.refresh_from_db()
    assert draft_campaign.status == CampaignStatus.DRAFT


def test_the_creator_cancels_a_live_campaign_and_its_refunds_are_enqueued(api_client, creator, outsider, live_campaign):
    refund_chunks = TaskRecord.objects.filter(name="crowdfund.payments.tasks.campaign_refund_chunk")
    forbidden = api_client(outsider).post(f"/api/v1/campaigns/{live_campaign.id}/cancel")
    assert forbidden.status_code == 403
    assert not refund_chunks.exists()

    response = api_client(creator).post(f"/api/v1/campaigns/{live_campaign.id}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    live_campaign.refresh_from_db()
    assert live_campaign.status == CampaignStatus.CANCELLED
    assert [chunk.kwargs for chunk in refund_chunks] == [{"campaign_id": str(live_campaign.id), "after": None}]
    again = api_client(creator).post(f"/api/v1/campaigns/{live_campaign.id}/cancel")
    assert again.status_code == 409
    assert refund_chunks.count() == 1


def test_the_creator_cancels_a_draft_and_nothing_is_refunded(api_client, creator, draft_campaign):
    response = api_client(creator).post(f"/api/v1/campaigns/{draft_campaign.id}/cancel")
    assert response.status_code == 200
    draft_campaign.refresh_from_db()
    assert draft_campaign.status == CampaignStatus.CANCELLED
    assert not TaskRecord.objects.filter(name="crowdfund.payments.tasks.campaign_refund_chunk").exists()


# --- Rewards -----------------------------------------------------------------------------------


def test_anyone_lists_rewards_with_the_slots_left(api_client, live_campaign):
    RewardFactory(campaign=live_campaign, minimum_amount=Decimal("10.00"), quantity=5, reserved_count=2)
    RewardFactory(campaign=live_campaign, minimum_amount=Decimal("50.00"), quantity=None)
    response = api_client().get(f"/api/v1/campaigns/{live_campaign.id}/rewards")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["minimum_amount"], r["quantity"], r["slots_left"]) for r in results] == [
        ("10.00", 5, 3),
        ("50.00", None, None),
    ]


def test_listing_rewards_takes_the_same_queries_whatever_the_page_size(
    api_client, live_campaign, django_assert_max_num_queries
):
    RewardFactory.create_batch(30, campaign=live_campaign)
    with django_assert_max_num_queries(3):
        response = api_client().get(f"/api/v1/campaigns/{live_campaign.id}/rewards", {"page_size": 30})
    assert len(response.json()["results"]) == 30


def test_the_creator_adds_a_limited_reward(api_client, creator, live_campaign):
    body = {"title": "Early bird", "minimum_amount": "25.00", "quantity": 100}
    response = api_client(creator).post(f"/api/v1/campaigns/{live_campaign.id}/rewards", body)
    assert response.status_code == 201
    assert response.json()["slots_left"] == 100
    reward = Reward.objects.get()
    assert (reward.campaign, reward.minimum_amount, reward.quantity) == (live_campaign, Decimal("25.00"), 100)


@pytest.mark.parametrize(
    ("field", "value"), [("minimum_amount", "0"), ("minimum_amount", "abc"), ("quantity", 0), ("quantity", 10**20)]
)
def test_it_refuses_invalid_reward_fields(api_client, creator, live_campaign, field, value):
    body = {"title": "Tier", "minimum_amount": "25.00", field: value}
    response = api_client(creator).post(f"/api/v1/campaigns/{live_campaign.id}/rewards", body)
    assert response.status_code == 400
    assert list(response.json()["fields"]) == [field]
    assert not Reward.objects.exists()


def test_only_the_creator_adds_rewards(api_client, outsider, live_campaign):
    body = {"title": "Tier", "minimum_amount": "25.00"}
    assert api_client(outsider).post(f"/api/v1/campaigns/{live_campaign.id}/rewards", body).status_code == 403
    assert api_client().post(f"/api/v1/campaigns/{live_campaign.id}/rewards", body).status_code == 401
    assert not Reward.objects.exists()


def test_a_finished_campaign_gets_no_new_rewards(api_client, creator):
    campaign = CampaignFactory(creator=creator, status=CampaignStatus.SUCCEEDED)
    body = {"title": "Tier", "minimum_amount": "25.00"}
    response = api_client(creator).post(f"/api/v1/campaigns/{campaign.id}/rewards", body)
    assert response.status_code == 409
    assert response.json()["code"] == "campaign_not_editable"


# --- Updates -----------------------------------------------------------------------------------


def test_the_creator_posts_an_update_and_its_backers_notification_is_enqueued(api_client, creator, live_campaign):
    response = api_client(creator).post(
        f"/api/v1/campaigns/{live_campaign.id}/updates", {"title": "Prototype done", "body": "Look!"}
    )
    assert response.status_code == 201
    update = CampaignUpdate.objects.get()
    assert (update.campaign, update.author, update.title) == (live_campaign, creator, "Prototype done")
    task = TaskRecord.objects.get()
    assert task.name == notification_tasks.campaign_update_notify_backers.name
    assert task.kwargs == {"update_id": str(update.id)}
    assert task.queue == "notifications"


def test_updates_cannot_be_posted_to_a_draft(api_client, creator, draft_campaign):
    response = api_client(creator).post(f"/api/v1/campaigns/{draft_campaign.id}/updates", {"title": "t", "body": "b"})
    assert response.status_code == 409
    assert response.json()["code"] == "campaign_not_published"
    assert not CampaignUpdate.objects.exists()
    assert not TaskRecord.objects.exists()


def test_only_the_creator_posts_updates(api_client, outsider, live_campaign):
    body = {"title": "t", "body": "b"}
    assert api_client(outsider).post(f"/api/v1/campaigns/{live_campaign.id}/updates", body).status_code == 403
    assert api_client().post(f"/api/v1/campaigns/{live_campaign.id}/updates", body).status_code == 401
    assert not CampaignUpdate.objects.exists()


def test_an_update_needs_a_title_and_body(api_client, creator, live_campaign):
    response = api_client(creator).post(f"/api/v1/campaigns/{live_campaign.id}/updates", {"title": ""})
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"title", "body"}


def test_anyone_reads_a_campaigns_updates_newest_first(api_client, live_campaign, django_assert_max_num_queries):
    CampaignUpdateFactory.create_batch(3, campaign=live_campaign)
    newest = CampaignUpdateFactory(campaign=live_campaign, title="Newest")
    CampaignUpdateFactory()  # another campaign's
    with django_assert_max_num_queries(3):
        response = api_client().get(f"/api/v1/campaigns/{live_campaign.id}/updates")
    assert response.status_code == 200
    assert response.json()["count"] == 4
    assert response.json()["results"][0]["id"] == str(newest.id)


def test_updates_of_an_unknown_campaign_are_not_found(api_client):
    response = api_client(UserFactory()).get("/api/v1/campaigns/00000000-0000-0000-0000-000000000000/updates")
    assert response.status_code == 404
