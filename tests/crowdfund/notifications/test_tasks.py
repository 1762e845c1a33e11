import pytest
from django.core import mail

from crowdfund.notifications import services
from crowdfund.notifications.models import InAppNotification, OutboxMessage, OutboxState
from crowdfund.notifications.tasks import outbox_messages_send

pytestmark = pytest.mark.django_db


def test_a_sending_task_run_twice_sends_once(backer):
    context = {"pledge_id": "p1", "campaign_title": "Solar Kettle", "amount": "25.00", "currency": "EUR"}
    services.notification_send(kind="pledge_receipt", recipient=backer, subject="pledge:p1", context=context)
    ids = list(OutboxMessage.objects.values_list("id", flat=True))

    outbox_messages_send(message_ids=ids)
    outbox_messages_send(message_ids=ids)

    assert len(mail.outbox) == 1
    assert InAppNotification.objects.filter(user=backer).count() == 1
    assert set(OutboxMessage.objects.values_list("channel", "state")) == {
        ("email", OutboxState.SENT),
        ("in_app", OutboxState.SENT),
    }
