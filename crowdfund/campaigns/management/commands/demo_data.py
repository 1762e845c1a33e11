"""Create a development admin and demo data a person can click through; safe to run again.

Lives with campaigns because the demo is mostly campaigns; everything is created through the
services, as users would, so the data obeys the same rules as real data.
"""

from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from crowdfund.accounts.models import User
from crowdfund.campaigns import services as campaigns
from crowdfund.campaigns.models import Campaign
from crowdfund.payments import services as payments
from crowdfund.payments.providers.sandbox import sandbox_intent_confirm
from crowdfund.pledges import services as pledges

ADMIN_EMAIL, ADMIN_PASSWORD = "admin@example.com", "admin"
BACKER_EMAIL, BACKER_PASSWORD = "backer@example.com", "backer"
CREATOR_EMAIL, CREATOR_PASSWORD = "creator@example.com", "creator"


class Command(BaseCommand):
    help = "Create a development admin, a backer, a creator and campaigns in every state (idempotent)."

    def handle(self, *args, **options):
        _user(ADMIN_EMAIL, ADMIN_PASSWORD, "Admin", is_staff=True, is_superuser=True)
        backer = _user(BACKER_EMAIL, BACKER_PASSWORD, "Bea Backer")
        creator = _user(CREATOR_EMAIL, CREATOR_PASSWORD, "Cai Creator")
        others = [_user(f"backer{i}@example.com", BACKER_PASSWORD, f"Backer {i}") for i in range(1, 4)]
        if not Campaign.objects.filter(creator=creator).exists():
            with transaction.atomic():
                _campaigns(creator=creator, backers=[backer, *others])
            self.stdout.write("Created campaigns in every state, with rewards, pledges and updates.")
        for role, email, password in [
            ("Admin", ADMIN_EMAIL, ADMIN_PASSWORD),
            ("Backer", BACKER_EMAIL, BACKER_PASSWORD),
            ("Creator", CREATOR_EMAIL, CREATOR_PASSWORD),
        ]:
            where = "http://localhost:8000/admin/" if role == "Admin" else "POST /api/v1/auth/token"
            self.stdout.write(self.style.SUCCESS(f"{role}: {where}  email {email}  password {password}"))


def _user(email, password, display_name, **flags) -> User:
    user, created = User.objects.get_or_create(email=email, defaults={"display_name": display_name, **flags})
    if created:
        user.set_password(password)  # demo passwords are short on purpose; validators are for real users
        user.save(update_fields=["password"])
    return user


def _campaigns(*, creator: User, backers: list[User]) -> None:
    in_a_month = timezone.now() + timedelta(days=30)
    campaigns.campaign_create(
        creator=creator,
        title="Solar lantern (draft)",
        description="Not published yet: only its creator sees it.",
        goal_amount=Decimal("3000.00"),
        currency="EUR",
        deadline=in_a_month,
    )
    live = _live_campaign(creator, "Pocket espresso maker", Decimal("5000.00"), backers)
    campaigns.campaign_update_create(
        campaign=live, author=creator, title="Prototype works", body="First shot pulled today."
    )
    _finished_campaign(creator, "Folding kayak", Decimal("50.00"), backers)  # reaches its goal
    _finished_campaign(creator, "Smart umbrella", Decimal("90000.00"), backers)  # falls short
    cancelled = _live_campaign(creator, "Hover board", Decimal("20000.00"), backers[:1])
    payments.campaign_cancel(campaign=cancelled)  # and its paid pledge refunded


def _live_campaign(creator: User, title: str, goal: Decimal, backers: list[User]) -> Campaign:
    campaign = campaigns.campaign_create(
        creator=creator,
        title=title,
        description=f"{title}: demo campaign.",
        goal_amount=goal,
        currency="EUR",
        deadline=timezone.now() + timedelta(days=30),
    )
    campaign = campaigns.campaign_publish(campaign=campaign)
    early = campaigns.reward_create(campaign=campaign, title="Early bird", minimum_amount=Decimal("25.00"), quantity=2)
    campaigns.reward_create(campaign=campaign, title="Supporter", minimum_amount=Decimal("10.00"))
    for index, backer in enumerate(backers):
        pledge = pledges.pledge_create(
            backer=backer,
            campaign=campaign,
            amount=Decimal("40.00"),
            reward_id=early.id if index < 2 else None,
            idempotency_key=f"demo-{campaign.id}-{index}",
        )
        if index % 2 == 0:
            # Paid at the sandbox, so a refund (a failed or cancelled campaign) goes through, and
            # marked paid now, so the campaigns close with these totals; the webhook, delivered
            # once the stack is up, finds the pledge paid already.
            sandbox_intent_confirm(intent_id=pledge.payment_intent_id, outcome="succeeded")
            pledges.pledge_mark_paid(pledge=pledge)
    return campaign


def _finished_campaign(creator: User, title: str, goal: Decimal, backers: list[User]) -> Campaign:
    campaign = _live_campaign(creator, title, goal, backers)
    # The deadline passes (demo only), and the closing job does what it does every minute: closes
    # the campaign, and refunds it if it failed.
    Campaign.objects.filter(id=campaign.id).update(deadline=timezone.now() - timedelta(minutes=1))
    payments.campaigns_close_due()
    campaign.refresh_from_db()
    return campaign
