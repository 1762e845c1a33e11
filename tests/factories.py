"""factory_boy factories for the domain models. Prefer the services (or the API) for anything whose
side effects matter; factories are for setting the scene quickly."""

from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import Campaign, CampaignStatus, CampaignUpdate, Reward
from crowdfund.pledges.models import Pledge

PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    display_name = factory.Faker("name")
    password = PASSWORD

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return model_class.objects.create_user(*args, **kwargs)


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    creator = factory.SubFactory(UserFactory)
    title = factory.Sequence(lambda n: f"Campaign {n}")
    description = "A thing worth making."
    goal_amount = Decimal("1000.00")
    currency = "EUR"
    deadline = factory.LazyFunction(lambda: timezone.now() + timedelta(days=30))
    status = CampaignStatus.DRAFT

    class Params:
        live = factory.Trait(status=CampaignStatus.LIVE, published_at=factory.LazyFunction(timezone.now))


class RewardFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Reward

    campaign = factory.SubFactory(CampaignFactory, live=True)
    title = factory.Sequence(lambda n: f"Reward {n}")
    minimum_amount = Decimal("25.00")
    quantity = None


class CampaignUpdateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CampaignUpdate

    campaign = factory.SubFactory(CampaignFactory, live=True)
    author = factory.SelfAttribute("campaign.creator")
    title = factory.Sequence(lambda n: f"Update {n}")
    body = "We shipped the prototype."


class PledgeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Pledge

    campaign = factory.SubFactory(CampaignFactory, live=True)
    backer = factory.SubFactory(UserFactory)
    amount = Decimal("30.00")
    currency = factory.SelfAttribute("campaign.currency")
    idempotency_key = factory.Sequence(lambda n: f"key-{n}")
    request_fingerprint = "factory"
