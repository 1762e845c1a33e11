"""The in-app channel: a row the app lists (GET /api/v1/me/notifications)."""

from crowdfund.notifications.channels import Outcome, Rendered
from crowdfund.notifications.models import InAppNotification, OutboxState


class InAppChannel:
    name = "in_app"
    # Delivery is an INSERT in our database, committed together with the outbox row's `sent`.
    atomic = True

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def deliver(self, messages: list[Rendered]) -> list[Outcome]:
        rows = [
            InAppNotification(
                outbox_id=message.message_id,
                user_id=message.recipient_id,
                kind=message.kind,
                subject=message.subject,
                title=message.title[:255],
                body=message.text,
            )
            for message in messages
        ]
        InAppNotification.objects.bulk_create(rows, ignore_conflicts=True)
        return [Outcome(OutboxState.SENT) for _ in messages]
