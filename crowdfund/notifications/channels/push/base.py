"""What every push provider adapter implements. One adapter module per provider; the setting
PUSH_PROVIDER picks one (`get_provider`)."""

from dataclasses import dataclass, field

from django.conf import settings
from django.utils.module_loading import import_string

PROVIDERS = {
    "sandbox": "crowdfund.notifications.channels.push.sandbox.SandboxPushProvider",
}


@dataclass
class Push:
    token: str
    platform: str
    title: str
    body: str
    data: dict = field(default_factory=dict)


@dataclass
class PushResult:
    """The provider's answer for one push. `invalid_token`: the provider will never deliver to
    this token again (app uninstalled, token rotated); the device is then deactivated."""

    message_id: str = ""
    invalid_token: bool = False
    error: str = ""

    @property
    def delivered(self) -> bool:
        return bool(self.message_id)


class PushProvider:
    name = "base"
    # True when `send` writes only to our own database (the sandbox): it then runs inside the
    # transaction marking the outbox rows sent, so a crash can never deliver twice.
    atomic = False

    def send(self, pushes: list[Push]) -> list[PushResult]:
        """One result per push, in order. Raise TransientChannelError for a retryable failure of
        the whole call (timeout, 5xx, throttled)."""
        raise NotImplementedError


def get_provider() -> PushProvider:
    return import_string(PROVIDERS[settings.PUSH_PROVIDER])()
