"""The delivery channels, each outside system behind one adapter: email (Django's email backends),
push (one adapter per provider, under push/) and in-app (a table the API lists).

Every channel's `deliver(messages)` takes rendered messages and returns one `Outcome` each; it
raises `TransientChannelError` when the provider is briefly unavailable, so the task retries later.
A channel is `atomic` when its delivery is a write to our own database: it then happens in the
transaction that marks the outbox rows sent, so a crash can never leave one half done.
"""

from dataclasses import dataclass, field


class TransientChannelError(Exception):
    """The provider failed in a way worth retrying (timeout, 5xx, throttled, connection lost)."""


@dataclass
class Rendered:
    """One outbox row, rendered and ready for its channel."""

    message_id: int
    recipient_id: int
    email: str
    kind: str
    subject: str
    title: str
    text: str
    html: str
    unsubscribe_url: str = ""
    data: dict = field(default_factory=dict)


@dataclass
class Outcome:
    state: str  # OutboxState: sent, failed or skipped
    provider_message_id: str = ""
    error: str = ""
