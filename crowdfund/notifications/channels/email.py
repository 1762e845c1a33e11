"""Email through Django's email backends (EMAIL_URL: console or file in development, SMTP in
production): multipart text and HTML, with one-click unsubscribe headers on non-transactional mail."""

import smtplib
import socket

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from crowdfund.notifications.channels import Outcome, Rendered, TransientChannelError
from crowdfund.notifications.models import OutboxState

# Errors after which the same message may well go through a little later.
TRANSIENT_SMTP_ERRORS = (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, socket.timeout, ConnectionError)


class EmailChannel:
    name = "email"
    # The mail leaves our database: sent once claimed, never inside a transaction (see services).
    atomic = False

    def __init__(self):
        self.connection = get_connection(fail_silently=False)

    def open(self) -> None:
        try:
            self.connection.open()
        except TRANSIENT_SMTP_ERRORS as exc:
            raise TransientChannelError(f"SMTP unavailable: {exc!r}") from exc

    def close(self) -> None:
        self.connection.close()

    def deliver(self, messages: list[Rendered]) -> list[Outcome]:
        return [self._deliver_one(message) for message in messages]

    def _deliver_one(self, message: Rendered) -> Outcome:
        email = build_email(message, connection=self.connection)
        try:
            email.send()
        except smtplib.SMTPRecipientsRefused as exc:
            return Outcome(OutboxState.FAILED, error=f"Recipient refused: {exc.recipients!r}"[:2000])
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:  # 4xx: "try again later"
                raise TransientChannelError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
            return Outcome(OutboxState.FAILED, error=f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:2000])
        except TRANSIENT_SMTP_ERRORS as exc:
            raise TransientChannelError(f"SMTP unavailable: {exc!r}") from exc
        return Outcome(OutboxState.SENT, provider_message_id=email.extra_headers["Message-ID"])


def build_email(message: Rendered, *, connection=None) -> EmailMultiAlternatives:
    from email.utils import make_msgid

    headers = {"Message-ID": make_msgid(domain=settings.NOTIFICATIONS_EMAIL_DOMAIN)}
    if message.unsubscribe_url:
        # RFC 8058: mail clients show an "unsubscribe" button that POSTs to this URL, no login.
        headers["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    email = EmailMultiAlternatives(
        subject=message.title,
        body=message.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[message.email],
        headers=headers,
        connection=connection,
    )
    email.attach_alternative(message.html, "text/html")
    return email
