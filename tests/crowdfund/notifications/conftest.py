import pytest

from crowdfund.notifications.models import OutboxMessage
from crowdfund.notifications.tasks import outbox_messages_send


@pytest.fixture
def send_all():
    """Run the sending task over every outbox row, as a worker would after commit."""

    def run():
        outbox_messages_send(message_ids=list(OutboxMessage.objects.values_list("id", flat=True)))

    return run
