"""Payment tasks (the `payments` queue): thin, they take ids, load, and call one service."""

import requests
from celery import shared_task

from crowdfund.campaigns.models import Campaign
from crowdfund.payments import services
from crowdfund.payments.models import SandboxEvent
from crowdfund.payments.providers import sandbox
from crowdfund.pledges.models import Pledge
from tasks.base import PlatformTask


@shared_task(base=PlatformTask, name="crowdfund.payments.tasks.payment_event_apply", soft_time_limit=60)
def payment_event_apply(*, event_id: str) -> None:
    services.payment_event_apply(event_id=event_id)


@shared_task(base=PlatformTask, name="crowdfund.payments.tasks.pledge_refund", soft_time_limit=120)
def pledge_refund(*, pledge_id: str) -> None:
    pledge = Pledge.objects.get(id=pledge_id)
    if pledge.status == "paid":  # a rerun after the refund went through has nothing left to do
        services.pledge_refund(pledge=pledge)


@shared_task(base=PlatformTask, name="crowdfund.payments.tasks.campaign_refund_chunk", soft_time_limit=15 * 60)
def campaign_refund_chunk(*, campaign_id: str, after: str | None) -> None:
    services.campaign_refund_chunk(campaign=Campaign.objects.get(id=campaign_id), after=after)


@shared_task(base=PlatformTask, name="crowdfund.payments.tasks.campaigns_close_due", soft_time_limit=10 * 60)
def campaigns_close_due() -> None:
    services.campaigns_close_due()


@shared_task(base=PlatformTask, name="crowdfund.payments.tasks.pledges_reconcile", soft_time_limit=10 * 60)
def pledges_reconcile() -> None:
    services.pledges_reconcile()


@shared_task(
    base=PlatformTask,
    name="crowdfund.payments.tasks.sandbox_event_deliver",
    # A provider keeps trying for a while when the endpoint is down or answers non-2xx.
    transient_errors=(sandbox.SandboxDeliveryError, requests.RequestException),
    max_retries=8,
    soft_time_limit=60,
)
def sandbox_event_deliver(*, event_id: int) -> None:
    sandbox.sandbox_event_deliver(event=SandboxEvent.objects.select_related("intent").get(id=event_id))
