"""The sandbox push provider for development and tests: records what it would have delivered in a
table (SandboxPushDelivery) instead of calling anyone. Tokens starting with "invalid" are refused
as a real provider refuses the token of an uninstalled app."""

import uuid

from crowdfund.notifications.channels.push.base import Push, PushProvider, PushResult
from crowdfund.notifications.models import SandboxPushDelivery

INVALID_TOKEN_PREFIX = "invalid"


class SandboxPushProvider(PushProvider):
    name = "sandbox"
    atomic = True

    def send(self, pushes: list[Push]) -> list[PushResult]:
        results, deliveries = [], []
        for push in pushes:
            if push.token.startswith(INVALID_TOKEN_PREFIX):
                results.append(PushResult(invalid_token=True, error="Unregistered token"))
                continue
            message_id = f"sbx_{uuid.uuid4().hex}"
            deliveries.append(
                SandboxPushDelivery(
                    device_token=push.token, title=push.title, body=push.body, data=push.data, message_id=message_id
                )
            )
            results.append(PushResult(message_id=message_id))
        SandboxPushDelivery.objects.bulk_create(deliveries)
        return results
