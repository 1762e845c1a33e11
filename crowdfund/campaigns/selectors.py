"""Campaigns: reads with visibility rules (drafts are private to their creator)."""

from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from crowdfund.campaigns.models import Campaign, CampaignStatus, Reward
from crowdfund.common.errors import DomainError


def campaign_list(*, user) -> QuerySet[Campaign]:
    return Campaign.objects.visible_to(user).select_related("creator")


def campaign_get(*, campaign_id, user) -> Campaign:
    """The campaign, or 404 when it does not exist or is someone else's draft."""
    campaign = campaign_list(user=user).filter(id=campaign_id).first()
    if campaign is None:
        raise DomainError("campaign_not_found", "No such campaign.", status=404)
    return campaign


def reward_list(*, campaign: Campaign) -> QuerySet[Reward]:
    return campaign.rewards.all()


def campaigns_closing_soon_panel(*, hours: int = 24, limit: int = 50) -> dict:
    """The operations dashboard's panel (settings.TASKS_DASHBOARD_PANELS): live campaigns whose
    deadline falls in the next `hours`, soonest first, with how far each is from its goal."""
    now = timezone.now()
    closing = Campaign.objects.filter(
        status=CampaignStatus.LIVE, deadline__gte=now, deadline__lt=now + timedelta(hours=hours)
    ).order_by("deadline")
    rows = [
        [campaign.title, campaign.deadline.isoformat(), f"{campaign.pledged_amount} / {campaign.goal_amount} "
         f"{campaign.currency}", f"{campaign.pledged_amount * 100 / campaign.goal_amount:.0f}%", campaign.backer_count]
        for campaign in closing[:limit]
    ]  # fmt: skip
    return {
        "title": f"Campaigns closing in the next {hours} hours ({closing.count()})",
        "columns": ["campaign", "deadline", "pledged / goal", "funded", "backers"],
        "rows": rows,
    }
