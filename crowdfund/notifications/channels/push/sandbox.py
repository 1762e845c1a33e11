"""The sandbox push provider for development and tests: records what it would have delivered in a
table (SandboxPushDelivery) instead of calling anyone. Tokens starting with "invalid" are refused
as a real provider refuses the token of an uninstalled app."""

import json
import uuid

from django.db import connection
from django.utils import timezone

from crowdfund.notifications.channels.push.base import Push, PushProvider, PushResult
from crowdfund.notifications.models import SandboxPushDelivery

INVALID_TOKEN_PREFIX = "invalid"
# One statement per batch, without a model object per push (as the in-app channel's insert).
_INSERT_SQL = f"""
INSERT INTO {SandboxPushDelivery._meta.db_table} (device_token, title, body, data, message_id, created_at)
SELECT t, ti, b, d::jsonb, m, %(now)s
  FROM unnest(%(tokens)s::text[], %(titles)s::text[], %(bodies)s::text[], %(data)s::text[], %(ids)s::text[])
       AS v(t, ti, b, d, m)
"""


class SandboxPushProvider(PushProvider):
    name = "sandbox"
    atomic = True

    def send(self, pushes: list[Push]) -> list[PushResult]:
        results, delivered = [], []
        for push in pushes:
            if push.token.startswith(INVALID_TOKEN_PREFIX):
                results.append(PushResult(invalid_token=True, error="Unregistered token"))
                continue
            message_id = f"sbx_{uuid.uuid4().hex}"
            delivered.append((push, message_id))
            results.append(PushResult(message_id=message_id))
        if delivered:
            self._record(delivered)
        return results

    @staticmethod
    def _record(delivered: list[tuple[Push, str]]) -> None:
        params = {
            "now": timezone.now(),
            "tokens": [push.token for push, _ in delivered],
            "titles": [push.title for push, _ in delivered],
            "bodies": [push.body for push, _ in delivered],
            "data": [json.dumps(push.data) for push, _ in delivered],
            "ids": [message_id for _, message_id in delivered],
        }
        with connection.cursor() as cursor:
            cursor.execute(_INSERT_SQL, params)
