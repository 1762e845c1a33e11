"""Reads for notifications: who a fan-out reaches, a chunk at a time (keyset pagination)."""

from django.db.models import Count, Q

from crowdfund.campaigns.models import Campaign, CampaignStatus
from crowdfund.notifications.models import NotificationKind
from crowdfund.pledges.models import Pledge, PledgeStatus

# Whose pledges make them a backer worth telling: a failed or cancelled campaign's backers may have
# been refunded by the time its message goes out, and a cancelled one's pending backers will now
# never be charged.
_BACKER_STATUSES = {
    NotificationKind.CAMPAIGN_FAILED: (PledgeStatus.PAID, PledgeStatus.REFUNDED),
    NotificationKind.CAMPAIGN_CANCELLED: (PledgeStatus.PENDING, PledgeStatus.PAID, PledgeStatus.REFUNDED),
}


def campaign_backer_ids(*, campaign_id: str, kind: str, after: int, limit: int) -> list[int]:
    """The next `limit` backers of the campaign with ids above `after`, in id order: each chunk
    starts where the previous one ended, without OFFSET, so the 200th chunk is as cheap as the first."""
    statuses = _BACKER_STATUSES.get(kind, (PledgeStatus.PAID,))
    return list(
        Pledge.objects.filter(campaign_id=campaign_id, status__in=statuses, backer_id__gt=after)
        .order_by("backer_id")
        .values_list("backer_id", flat=True)
        .distinct()[:limit]
    )


def live_campaign_creator_ids(*, after: int, limit: int) -> list[int]:
    return list(
        Campaign.objects.filter(status=CampaignStatus.LIVE, creator_id__gt=after)
        .order_by("creator_id")
        .values_list("creator_id", flat=True)
        .distinct()[:limit]
    )


def creator_live_campaigns_with_recent_pledges(*, creator, since):
    recent = Q(pledges__status=PledgeStatus.PAID, pledges__paid_at__gte=since)
    return (
        Campaign.objects.filter(creator=creator, status=CampaignStatus.LIVE)
        .annotate(new_pledges=Count("pledges", filter=recent))
        .order_by("deadline")
    )
