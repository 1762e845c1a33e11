"""The in-app channel: a row the app lists (GET /api/v1/me/notifications)."""

from django.db import connection
from django.utils import timezone

from crowdfund.notifications.channels import Outcome, Rendered
from crowdfund.notifications.models import InAppNotification, OutboxState

# One statement for a whole batch, without a model object per row: in a fan-out, building and
# compiling bulk_create's objects cost more than the insert itself.
_INSERT_SQL = f"""
INSERT INTO {InAppNotification._meta.db_table} (outbox_id, user_id, kind, subject, title, body, created_at)
SELECT o, u, k, s, t, b, %(now)s
  FROM unnest(%(outbox)s::bigint[], %(users)s::bigint[], %(kinds)s::text[], %(subjects)s::text[],
              %(titles)s::text[], %(bodies)s::text[]) AS v(o, u, k, s, t, b)
ON CONFLICT (outbox_id) DO NOTHING
"""


class InAppChannel:
    name = "in_app"
    # Delivery is an INSERT in our database, committed together with the outbox row's `sent`.
    atomic = True

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def deliver(self, messages: list[Rendered]) -> list[Outcome]:
        params = {
            "now": timezone.now(),
            "outbox": [message.message_id for message in messages],
            "users": [message.recipient_id for message in messages],
            "kinds": [message.kind for message in messages],
            "subjects": [message.subject for message in messages],
            "titles": [message.title[:255] for message in messages],
            "bodies": [message.text for message in messages],
        }
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_SQL, params)
        return [Outcome(OutboxState.SENT) for _ in messages]
