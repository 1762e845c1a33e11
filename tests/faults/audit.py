"""The audit every fault scenario ends with: after the faults stop and the backlog drains, no
payment was lost or applied twice, the totals are exact, every paid pledge has one receipt, and
no task is left behind."""

import time
from collections import Counter
from decimal import Decimal

from django.core.management import call_command
from django.db import connection
from django.db.models import F

from crowdfund.campaigns.models import Campaign
from crowdfund.notifications.models import NotificationChannel, NotificationKind, OutboxMessage, OutboxState
from crowdfund.payments.models import PaymentEvent, PaymentEventState, SandboxEvent
from crowdfund.payments.selectors import campaign_totals_mismatches
from crowdfund.pledges.models import Pledge, PledgeStatus
from tasks.models import OPEN_STATES, TaskRecord, TaskState
from tests.faults.load import Payment
from tests.faults.outages import retrying_outages

PAYMENT_APPLY = "crowdfund.payments.tasks.payment_event_apply"
STATUS_OF = {"succeeded": PledgeStatus.PAID, "failed": PledgeStatus.FAILED}
# What each payment outcome tells the backer, one email each.
NOTICE_OF = {"succeeded": NotificationKind.PLEDGE_RECEIPT, "failed": NotificationKind.PAYMENT_FAILED}
# A row a worker died (or lost its database) while sending: failed on purpose, never sent twice.
INTERRUPTED = "Interrupted while sending"


def _open_tasks() -> list[tuple[str, str, str]]:
    return list(TaskRecord.objects.filter(state__in=OPEN_STATES).values_list("name", "state", "id"))


def drain(*, payments: list[Payment], timeout: float = 120) -> None:
    """Wait until every payment's webhook has been stored and no task waits or runs (the stack's
    dispatchers publish what the outages left pending)."""
    deadline = time.monotonic() + timeout
    intents = {payment.intent_id for payment in payments}
    quiet_checks = 0
    while True:
        stored = retrying_outages(lambda: set(PaymentEvent.objects.values_list("intent_id", flat=True)))
        still_open = retrying_outages(_open_tasks)
        # Two quiet checks in a row: a task that just finished may have enqueued the next one.
        quiet_checks = quiet_checks + 1 if intents <= stored and not still_open else 0
        if quiet_checks == 2:
            return
        if time.monotonic() > deadline:
            missing = len(intents - stored)
            raise AssertionError(f"not drained after {timeout}s: {missing} webhooks missing, open tasks {still_open}")
        time.sleep(1.0)


def audit(*, payments: list[Payment]) -> None:
    connection.close()  # whatever happened to this process's connection during the faults
    assert len({payment.pledge_id for payment in payments}) == len(payments) > 0
    _every_webhook_processed_exactly_once(payments)
    _totals_equal_the_paid_pledges(payments)
    _one_notice_per_payment(payments)
    _no_task_left_behind()


def _every_webhook_processed_exactly_once(payments: list[Payment]) -> None:
    by_intent = {payment.intent_id: payment for payment in payments}
    # The sandbox emitted one event per confirmed payment, and each was accepted once.
    assert SandboxEvent.objects.count() == len(payments)
    events = list(PaymentEvent.objects.all())
    accepted = Counter(event.intent_id for event in events)
    assert [intent for intent, n in accepted.items() if n > 1] == [], "accepted twice"
    assert set(accepted) == set(by_intent), (set(accepted) - set(by_intent), set(by_intent) - set(accepted))
    undelivered = SandboxEvent.objects.filter(delivered_at__isnull=True).values_list("event_id", flat=True)
    assert not list(undelivered), "the sandbox never got a 2xx for these"
    for event in events:
        payment = by_intent[event.intent_id]
        # One processing outcome each, and it moved the pledge from pending: applied once, never again.
        assert (event.state, event.outcome) == (
            PaymentEventState.PROCESSED,
            f"pending → {STATUS_OF[payment.outcome]}",
        ), event.event_id
        assert str(event.pledge_id) == payment.pledge_id
    # One processing task per event (a duplicate delivery enqueues none), each succeeded once.
    tasks = TaskRecord.objects.filter(name=PAYMENT_APPLY)
    assert sorted(str(task_id) for task_id in tasks.values_list("id", flat=True)) == sorted(
        str(event.task_id) for event in events
    )
    assert set(tasks.values_list("state", flat=True)) == {TaskState.SUCCEEDED}
    statuses = dict(Pledge.objects.filter(id__in=[p.pledge_id for p in payments]).values_list("id", "status"))
    assert {str(pledge_id): status for pledge_id, status in statuses.items()} == {
        payment.pledge_id: STATUS_OF[payment.outcome] for payment in payments
    }


def _totals_equal_the_paid_pledges(payments: list[Payment]) -> None:
    call_command("payments_check_totals")  # raises CommandError naming each wrong campaign
    assert campaign_totals_mismatches() == []
    for campaign in Campaign.objects.filter(id__in={payment.campaign_id for payment in payments}):
        paid = [p for p in payments if p.campaign_id == str(campaign.id) and p.outcome == "succeeded"]
        assert campaign.pledged_amount == sum((p.amount for p in paid), Decimal("0.00")), campaign.title
        assert campaign.backer_count == len({p.backer_id for p in paid}), campaign.title


def _one_notice_per_payment(payments: list[Payment]) -> None:
    for outcome, kind in NOTICE_OF.items():
        expected = Counter(f"pledge:{p.pledge_id}" for p in payments if p.outcome == outcome)
        emails = OutboxMessage.objects.filter(kind=kind, channel=NotificationChannel.EMAIL)
        assert Counter(emails.values_list("subject", flat=True)) == expected, kind
        # Sent, or (worker lost mid-send) failed as "interrupted" for an admin: never pending, never twice.
        unsent = emails.exclude(state=OutboxState.SENT).exclude(state=OutboxState.FAILED, error__startswith=INTERRUPTED)
        assert list(unsent.values_list("subject", "state", "error")) == [], kind


def _no_task_left_behind() -> None:
    assert _open_tasks() == []
    failed = TaskRecord.objects.filter(state=TaskState.FAILED)
    assert list(failed.values_list("name", "error_type", "error_message")) == []
    # No run was started more often than its bound allows (a redelivery loop would show here).
    overrun = TaskRecord.objects.filter(attempts__gt=F("max_attempts")).values_list("name", "attempts")
    assert list(overrun) == []
