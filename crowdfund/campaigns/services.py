"""Campaigns: creation and edits, the lifecycle (draft → live → succeeded | failed | cancelled),
reward tiers and creator updates."""

from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from crowdfund.accounts.models import User
from crowdfund.campaigns.models import (
    FINISHED,
    FROZEN_WHEN_LIVE,
    MAX_CAMPAIGN_DURATION,
    Campaign,
    CampaignStatus,
    CampaignUpdate,
    Reward,
)
from crowdfund.common.errors import DomainError
from crowdfund.notifications import tasks as notification_tasks
from crowdfund.notifications.services import campaign_outcome_notify
from tasks.services import task_enqueue


def campaign_create(
    *, creator: User, title: str, description: str = "", goal_amount: Decimal, currency: str, deadline: datetime
) -> Campaign:
    _validate_deadline(deadline)
    return Campaign.objects.create(
        creator=creator,
        title=title,
        description=description,
        goal_amount=goal_amount,
        currency=currency,
        deadline=deadline,
    )


def campaign_edit(*, campaign: Campaign, **changes) -> Campaign:
    """Change a campaign's fields. A draft may change anything; once live, the goal, currency and
    deadline are frozen (backers pledged against them); a finished campaign changes no more."""
    if campaign.status in FINISHED:
        raise DomainError("campaign_not_editable", f"A {campaign.status} campaign can no longer change.", status=409)
    changed = {name: value for name, value in changes.items() if getattr(campaign, name) != value}
    frozen = [name for name in changed if name in FROZEN_WHEN_LIVE and campaign.status == CampaignStatus.LIVE]
    if frozen:
        raise DomainError(
            "campaign_field_frozen",
            "The goal, currency and deadline of a live campaign cannot change.",
            status=409,
            fields={name: ["Frozen once the campaign is live."] for name in frozen},
        )
    if "deadline" in changed:
        _validate_deadline(changed["deadline"])
    for name, value in changed.items():
        setattr(campaign, name, value)
    if changed:
        campaign.save(update_fields=[*changed, "updated_at"])
    return campaign


def campaign_publish(*, campaign: Campaign) -> Campaign:
    """Draft → live: backers can pledge from now until the deadline."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(id=campaign.id)
        campaign.transition_to(CampaignStatus.LIVE)
        _validate_deadline(campaign.deadline)
        campaign.published_at = timezone.now()
        campaign.save(update_fields=["status", "published_at", "updated_at"])
    return campaign


def campaign_cancel(*, campaign: Campaign) -> Campaign:
    """Draft or live → cancelled; the creator and the backers are told in the same transaction.
    The API and the admin cancel through crowdfund.payments.services.campaign_cancel, which also
    refunds a live one's paid pledges."""
    with transaction.atomic():
        campaign = _campaign_finish(campaign=campaign, status=CampaignStatus.CANCELLED)
        campaign_outcome_notify(campaign=campaign)
    return campaign


def campaign_close(*, campaign: Campaign) -> Campaign:
    """Live → succeeded or failed, once the deadline has passed: succeeded when the paid pledges
    reach the goal. Backers and the creator are told in the same transaction. Run by the closing
    job (crowdfund.payments.services.campaigns_close_due), which also refunds a failed one."""
    if campaign.status == CampaignStatus.LIVE and campaign.deadline > timezone.now():
        raise DomainError("campaign_still_running", "The campaign's deadline has not passed yet.", status=409)
    with transaction.atomic():
        # Read the totals under the lock: a payment being applied right now counts or waits.
        campaign = Campaign.objects.select_for_update().get(id=campaign.id)
        reached = campaign.pledged_amount >= campaign.goal_amount
        outcome = CampaignStatus.SUCCEEDED if reached else CampaignStatus.FAILED
        campaign = _campaign_finish(campaign=campaign, status=outcome)
        campaign_outcome_notify(campaign=campaign)
    return campaign


def _campaign_finish(*, campaign: Campaign, status: str) -> Campaign:
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(id=campaign.id)
        campaign.transition_to(status)
        campaign.finished_at = timezone.now()
        campaign.save(update_fields=["status", "finished_at", "updated_at"])
    return campaign


def _validate_deadline(deadline: datetime) -> None:
    now = timezone.now()
    if deadline <= now:
        message = "The deadline must be in the future."
    elif deadline > now + MAX_CAMPAIGN_DURATION:
        message = f"The deadline must be within {MAX_CAMPAIGN_DURATION.days} days."
    else:
        return
    raise DomainError("invalid_deadline", message, fields={"deadline": [message]})


def reward_create(
    *, campaign: Campaign, title: str, description: str = "", minimum_amount: Decimal, quantity: int | None = None
) -> Reward:
    if campaign.status in FINISHED:
        raise DomainError("campaign_not_editable", f"A {campaign.status} campaign can no longer change.", status=409)
    return Reward.objects.create(
        campaign=campaign, title=title, description=description, minimum_amount=minimum_amount, quantity=quantity
    )


def campaign_update_create(*, campaign: Campaign, author: User, title: str, body: str) -> CampaignUpdate:
    """Post an update; every backer is notified by a task, after commit."""
    if campaign.status == CampaignStatus.DRAFT:
        raise DomainError("campaign_not_published", "Publish the campaign before posting updates.", status=409)
    with transaction.atomic():
        update = CampaignUpdate.objects.create(campaign=campaign, author=author, title=title, body=body)
        task_enqueue(
            notification_tasks.campaign_update_notify_backers,
            kwargs={"update_id": str(update.id)},
            correlation_key=f"campaign_update:{update.id}",
        )
    return update
