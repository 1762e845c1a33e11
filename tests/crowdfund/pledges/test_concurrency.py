"""Concurrent pledges against the real PostgreSQL: each thread has its own connection and commits."""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from crowdfund.common.errors import DomainError
from crowdfund.pledges import services
from crowdfund.pledges.models import Pledge
from tests.factories import CampaignFactory, RewardFactory, UserFactory


def pledge_all_at_once(campaign, reward, backers, amount) -> list:
    """Every backer pledges at the same moment from its own thread; returns each outcome."""
    barrier = threading.Barrier(len(backers))
    outcomes = [None] * len(backers)

    def run(index, backer):
        try:
            barrier.wait()
            outcomes[index] = services.pledge_create(
                backer=backer, campaign=campaign, amount=amount, reward_id=reward.id, idempotency_key=f"k{index}"
            )
        except DomainError as exc:
            outcomes[index] = exc.code
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, b)) for i, b in enumerate(backers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_the_last_slot_of_a_reward_is_sold_once_under_concurrent_pledges():
    campaign = CampaignFactory(live=True)
    reward = RewardFactory(campaign=campaign, quantity=1)
    backers = UserFactory.create_batch(12)
    outcomes = pledge_all_at_once(campaign, reward, backers, Decimal("30.00"))
    winners = [o for o in outcomes if isinstance(o, Pledge)]
    assert len(winners) == 1
    assert sorted(o for o in outcomes if not isinstance(o, Pledge)) == ["reward_sold_out"] * 11
    reward.refresh_from_db()
    assert (reward.reserved_count, reward.slots_left) == (1, 0)
    assert list(Pledge.objects.values_list("id", flat=True)) == [winners[0].id]


@pytest.mark.django_db(transaction=True)
def test_concurrent_pledges_fill_a_reward_exactly_and_the_totals_add_up():
    campaign = CampaignFactory(live=True)
    reward = RewardFactory(campaign=campaign, quantity=5, minimum_amount=Decimal("10.00"))
    outcomes = pledge_all_at_once(campaign, reward, UserFactory.create_batch(16), Decimal("33.33"))
    assert sum(isinstance(o, Pledge) for o in outcomes) == 5
    assert outcomes.count("reward_sold_out") == 11
    reward.refresh_from_db()
    assert reward.reserved_count == 5
    totals = Pledge.objects.filter(campaign=campaign).aggregate(total=Sum("amount"))
    assert totals["total"] == Decimal("166.65")
    assert Pledge.objects.filter(reward=reward).count() == 5
