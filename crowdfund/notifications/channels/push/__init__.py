"""The push channel: each message goes to every active device of its recipient, through the
provider adapter of PUSH_PROVIDER; tokens the provider reports invalid are deactivated."""

from collections import defaultdict

from crowdfund.accounts import services as accounts
from crowdfund.accounts.models import Device
from crowdfund.notifications.channels import Outcome, Rendered
from crowdfund.notifications.channels.push.base import Push, get_provider
from crowdfund.notifications.models import OutboxState


class PushChannel:
    name = "push"

    def __init__(self, provider=None):
        self.provider = provider or get_provider()
        self.atomic = self.provider.atomic

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def deliver(self, messages: list[Rendered]) -> list[Outcome]:
        devices = defaultdict(list)  # user id → (token, platform) of each active device
        active = Device.objects.active().filter(user_id__in={m.recipient_id for m in messages})
        for user_id, token, platform in active.values_list("user_id", "token", "platform"):
            devices[user_id].append((token, platform))
        pushes, owners = [], []
        for index, message in enumerate(messages):
            for token, platform in devices[message.recipient_id]:
                pushes.append(Push(token, platform, message.title, message.text[:240], message.data))
                owners.append(index)
        results = self.provider.send(pushes) if pushes else []
        invalid = [push.token for push, result in zip(pushes, results, strict=True) if result.invalid_token]
        if invalid:
            accounts.devices_deactivate(tokens=invalid)
        return self._outcomes(messages, owners, results)

    def _outcomes(self, messages, owners, results) -> list[Outcome]:
        per_message = defaultdict(list)
        for index, result in zip(owners, results, strict=True):
            per_message[index].append(result)
        outcomes = []
        for index in range(len(messages)):
            answered = per_message.get(index)
            delivered = [result.message_id for result in answered or () if result.delivered]
            if not answered:
                outcomes.append(Outcome(OutboxState.SKIPPED, error="No active device."))
            elif delivered:
                outcomes.append(Outcome(OutboxState.SENT, provider_message_id=",".join(delivered)[:255]))
            else:
                errors = "; ".join(result.error for result in answered)
                outcomes.append(Outcome(OutboxState.FAILED, error=f"No device accepted it: {errors}"[:2000]))
        return outcomes
