"""Notification tasks: thin, they take ids, load, and call one service. All on the `notifications`
queue (config/queues.py routes `crowdfund.notifications.*` there)."""

import uuid

from celery import shared_task

from crowdfund.campaigns.models import CampaignUpdate
from crowdfund.notifications import services
from crowdfund.notifications.channels import TransientChannelError
from tasks.base import PlatformTask


class NotificationTask(PlatformTask):
    abstract = True
    # A provider's timeout, 5xx or throttling: retried with backoff, then recorded failed.
    transient_errors = (TransientChannelError,)
    max_retries = 6


def _run_id(task) -> str:
    # The task id survives a redelivery, so a rerun recognises the claims its dead run left.
    return task.request.id or f"direct-{uuid.uuid4()}"


def _final_attempt(task) -> bool:
    return task.request.retries >= task.max_retries


@shared_task(base=PlatformTask, name="crowdfund.notifications.tasks.campaign_update_notify_backers")
def campaign_update_notify_backers(*, update_id: str) -> None:
    update = CampaignUpdate.objects.select_related("campaign").get(id=update_id)
    services.campaign_update_notify_backers(update=update)


@shared_task(base=NotificationTask, bind=True, name="crowdfund.notifications.tasks.outbox_messages_send")
def outbox_messages_send(self, *, message_ids: list[int]) -> None:
    services.outbox_messages_send(message_ids=message_ids, run_id=_run_id(self), final_attempt=_final_attempt(self))


@shared_task(base=NotificationTask, bind=True, name="crowdfund.notifications.tasks.fanout_chunk_send")
def fanout_chunk_send(self, *, kind: str, subject: str, campaign_id: str, after: int) -> None:
    services.fanout_chunk_send(
        kind=kind,
        subject=subject,
        campaign_id=campaign_id,
        after=after,
        run_id=_run_id(self),
        final_attempt=_final_attempt(self),
    )


@shared_task(base=PlatformTask, name="crowdfund.notifications.tasks.creator_digests_send")
def creator_digests_send() -> None:
    services.creator_digests_send()
