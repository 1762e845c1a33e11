"""Accounts: reads that need more than one query or a default filled in."""

from crowdfund.accounts.models import User
from crowdfund.notifications.models import KIND_CHANNELS


def notification_preferences_get(*, user: User) -> list[dict]:
    """Every (kind, channel) pair a notification can go out on, with its setting, defaults (on) included."""
    disabled = set(user.notification_preferences.disabled().values_list("kind", "channel"))
    return [
        {"kind": kind, "channel": channel, "enabled": (kind, channel) not in disabled}
        for kind, channels in KIND_CHANNELS.items()
        for channel in channels
    ]
