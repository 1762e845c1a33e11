"""Payment providers: one adapter per provider behind one interface (providers.base)."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from crowdfund.payments.providers.base import Intent, PaymentProvider, ProviderError, WebhookEvent

PROVIDERS = {
    "sandbox": "crowdfund.payments.providers.sandbox.SandboxProvider",
}

__all__ = ["Intent", "PaymentProvider", "ProviderError", "WebhookEvent", "get_provider"]


def get_provider(name: str | None = None) -> PaymentProvider:
    """The provider named by settings.PAYMENTS_PROVIDER (or `name`)."""
    name = name or settings.PAYMENTS_PROVIDER
    if name not in PROVIDERS:
        raise ImproperlyConfigured(f"Unknown payment provider {name!r}; known: {', '.join(PROVIDERS)}.")
    return import_string(PROVIDERS[name])()
