from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone

# The kinds and channels belong to notifications; preferences are kept per pair of them here.
from crowdfund.notifications.models import NotificationChannel, NotificationKind  # noqa: F401 - re-exported


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email, password=None, **fields):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **fields):
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A person using the app, backer or creator alike, identified by email."""

    email = models.EmailField(unique=True)
    display_name = models.CharField(max_length=100, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = []

    def __str__(self):
        return self.email


class DevicePlatform(models.TextChoices):
    IOS = "ios", "iOS"
    ANDROID = "android", "Android"


class DeviceQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)


class Device(models.Model):
    """A phone that receives push notifications for its user. A token belongs to one device, so
    registering it again (after a sign-in as someone else) moves it to the new user. A token the
    push provider reports invalid is deactivated and never used again, unless the app registers
    it anew."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="devices")
    platform = models.CharField(max_length=10, choices=DevicePlatform.choices)
    token = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(default=timezone.now)
    is_active = models.BooleanField(default=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)

    objects = DeviceQuerySet.as_manager()

    class Meta:
        ordering = ["-last_seen_at"]
        indexes = [models.Index(fields=["user", "platform"])]

    def __str__(self):
        return f"{self.platform} device of {self.user_id}"


class NotificationPreferenceQuerySet(models.QuerySet):
    def disabled(self):
        return self.filter(enabled=False)


class NotificationPreference(models.Model):
    """One switch per (user, kind, channel). No row means on: users opt out, not in."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notification_preferences")
    kind = models.CharField(max_length=32, choices=NotificationKind.choices)
    channel = models.CharField(max_length=16, choices=NotificationChannel.choices)
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = NotificationPreferenceQuerySet.as_manager()

    class Meta:
        ordering = ["kind", "channel"]
        constraints = [
            models.UniqueConstraint(fields=["user", "kind", "channel"], name="notification_preference_unique"),
        ]

    def __str__(self):
        return f"{self.kind}/{self.channel}: {'on' if self.enabled else 'off'}"
