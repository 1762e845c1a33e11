"""Accounts: registration, push devices and notification preferences."""

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from crowdfund.accounts.models import Device, NotificationPreference, User
from crowdfund.common.errors import DomainError


def user_register(*, email: str, password: str, display_name: str = "") -> User:
    email = User.objects.normalize_email(email).lower()
    try:
        validate_password(password, user=User(email=email, display_name=display_name))
    except ValidationError as exc:
        raise DomainError("weak_password", "Choose a stronger password.", fields={"password": exc.messages}) from exc
    if User.objects.filter(email=email).exists():
        raise _email_taken()
    try:
        with transaction.atomic():
            return User.objects.create_user(email=email, password=password, display_name=display_name)
    except IntegrityError as exc:  # registered by a concurrent request since the check above
        raise _email_taken() from exc


def _email_taken() -> DomainError:
    return DomainError(
        "email_taken", "An account with this email already exists.", fields={"email": ["Already registered."]}
    )


def device_register(*, user: User, platform: str, token: str) -> Device:
    device, _ = Device.objects.update_or_create(
        token=token,
        defaults={
            "user": user,
            "platform": platform,
            "last_seen_at": timezone.now(),
            "is_active": True,
            "deactivated_at": None,
        },
    )
    return device


def devices_deactivate(*, tokens: list[str]) -> int:
    """Stop pushing to tokens the provider reported invalid (the app was uninstalled, say)."""
    return Device.objects.filter(token__in=tokens, is_active=True).update(
        is_active=False, deactivated_at=timezone.now()
    )


def notification_preferences_set(*, user: User, preferences: list[dict]) -> None:
    """Turn the given (kind, channel) pairs on or off; pairs not given keep their setting."""
    # One row per pair: PostgreSQL refuses an upsert that touches the same row twice.
    chosen = {(p["kind"], p["channel"]): p["enabled"] for p in preferences}
    rows = [
        NotificationPreference(user=user, kind=kind, channel=channel, enabled=enabled)
        for (kind, channel), enabled in chosen.items()
    ]
    NotificationPreference.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["user", "kind", "channel"],
        update_fields=["enabled", "updated_at"],
    )
