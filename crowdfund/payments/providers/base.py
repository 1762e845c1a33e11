"""The interface every payment provider adapter implements: create an intent, retrieve it, refund
it, cancel an abandoned one, and verify and parse the provider's webhooks."""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from crowdfund.common.errors import DomainError


class ProviderError(DomainError):
    """The provider refused a request (refunding an unpaid intent, an unknown intent, ...)."""


@dataclass(frozen=True)
class Intent:
    """A provider's payment intent: what the app needs to let the backer pay, and its state."""

    provider: str
    intent_id: str
    client_secret: str
    status: str  # requires_confirmation | succeeded | failed | refunded | canceled
    amount: Decimal | None = None
    currency: str = ""


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook event, in the project's terms."""

    provider: str
    event_id: str
    type: str  # one of crowdfund.payments.models.PaymentEventType
    intent_id: str
    amount: Decimal
    currency: str
    created: datetime


class PaymentProvider(ABC):
    name: str

    @abstractmethod
    def create_intent(self, *, amount: Decimal, currency: str, reference: str, idempotency_key: str) -> Intent:
        """Create an intent to charge `amount`. The same `idempotency_key` returns the same intent,
        so a caller may retry after a timeout without charging twice."""

    @abstractmethod
    def retrieve_intent(self, *, intent_id: str) -> Intent:
        """The intent as the provider sees it now (for reconciliation)."""

    @abstractmethod
    def refund(self, *, intent_id: str, amount: Decimal | None = None, idempotency_key: str) -> None:
        """Refund a succeeded intent, in full when `amount` is None. The same `idempotency_key`
        refunds once, however often it is called."""

    @abstractmethod
    def cancel_intent(self, *, intent_id: str) -> Intent:
        """Cancel an intent the backer never confirmed, so it can no longer be paid."""

    @abstractmethod
    def parse_webhook(self, *, body: bytes, headers) -> WebhookEvent:
        """Verify a webhook's signature on the raw body and return its event; raise DomainError
        (status 400, a stable code) for anything that must not be processed."""
