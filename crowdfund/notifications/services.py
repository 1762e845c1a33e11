"""Notifications: telling users what happened, once, on the channels they want.

Callers use three functions, each inside their own transaction:

- `notification_send(kind=, recipient=, subject=, context=)`: one user, one event.
- `campaign_update_notify_backers(update=)` and `campaign_outcome_notify(campaign=)`: every backer
  of a campaign, fanned out in chunk tasks.

Everything goes through the outbox (models.OutboxMessage): one row per (recipient, kind, subject,
channel), written in the caller's transaction, sent by a task after commit. The unique row is what
makes "never twice" hold: a second call finds it, and a sender claims it before sending.

The `context` each kind's templates use (amounts are strings, as the API shows them):
  pledge_receipt, payment_failed, refund_issued: pledge_id, campaign_title, amount, currency, reward_title
  report_ready: report_id, report_kind, format, campaign_title, download_url, expires_at
  creator_daily_digest: date, campaigns: [{title, pledged_amount, currency, backer_count, deadline}]
  campaign_succeeded, campaign_failed, campaign_cancelled, creator_update_posted: built from the
  subject (fan-out).
A subject naming a pledge, update or campaign ("pledge:<uuid>", ...) fills in what it can from
that object (the campaign's title, say); the caller's context wins where both have a key.
Missing keys render as blanks, never as errors.
"""

import functools
import json
import logging
import uuid
from collections import defaultdict
from datetime import date, timedelta
from types import SimpleNamespace

from django.conf import settings
from django.core import signing
from django.db import connection, transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from crowdfund.accounts.models import NotificationPreference, User
from crowdfund.campaigns.models import Campaign, CampaignStatus, CampaignUpdate
from crowdfund.common.errors import DomainError
from crowdfund.notifications import ratelimit, selectors
from crowdfund.notifications.channels import Outcome, Rendered, TransientChannelError
from crowdfund.notifications.models import (
    KIND_CHANNELS,
    TRANSACTIONAL_KINDS,
    NotificationChannel,
    NotificationKind,
    OutboxMessage,
    OutboxState,
)
from tasks.services import task_enqueue

log = logging.getLogger(__name__)

UNSUBSCRIBE_SALT = "crowdfund.notifications.unsubscribe"
# Messages rendered together, and sent in one transaction by atomic channels: a whole fan-out chunk.
SEND_BATCH = 500
# Messages claimed per round trip (and per rate-limit take) by channels reaching outside (see
# _send_claimed): as many may be left in doubt if the worker dies. One would leave a single
# message in doubt, but its commit per message was half of a fan-out's time.
CLAIM_GROUP = 10


# --- Recording: the outbox rows ---------------------------------------------------------------


def notification_send(*, kind: str, recipient, subject: str, context: dict | None = None) -> None:
    """Record `recipient`'s rows about `subject` (one per channel of `kind`; `skipped` where the
    preferences say no) in the caller's transaction, and enqueue their sending after commit.

    A second call for the same (recipient, kind, subject) adds nothing and sends nothing.
    """
    inserted = _outbox_insert(kind=kind, subject=subject, recipient_ids=[recipient.id], context=context or {})
    pending = [message_id for message_id, state in inserted if state == OutboxState.PENDING]
    if pending:
        from crowdfund.notifications import tasks

        task_enqueue(tasks.outbox_messages_send, kwargs={"message_ids": pending}, correlation_key=subject)


def _outbox_insert(*, kind: str, subject: str, recipient_ids: list[int], context: dict) -> list[tuple[int, str]]:
    """Insert the rows that do not exist yet, in one statement; returns (id, state) of those inserted."""
    off = _disabled_channels(kind=kind, recipient_ids=recipient_ids)
    columns = defaultdict(list)
    for recipient_id in recipient_ids:
        for channel in KIND_CHANNELS[kind]:
            skipped = channel in off.get(recipient_id, ())
            columns["recipient"].append(recipient_id)
            columns["channel"].append(channel)
            columns["state"].append(OutboxState.SKIPPED if skipped else OutboxState.PENDING)
            columns["error"].append("Turned off in the recipient's preferences." if skipped else "")
    return _insert_rows(kind=kind, subject=subject, context=context, columns=columns)


def _disabled_channels(*, kind: str, recipient_ids: list[int]) -> dict[int, set[str]]:
    disabled = NotificationPreference.objects.disabled().filter(kind=kind, user_id__in=recipient_ids)
    if kind in TRANSACTIONAL_KINDS:  # about the user's money: always emailed
        disabled = disabled.exclude(channel=NotificationChannel.EMAIL)
    off = defaultdict(set)
    for user_id, channel in disabled.values_list("user_id", "channel"):
        off[user_id].add(channel)
    return off


_INSERT_SQL = f"""
INSERT INTO {OutboxMessage._meta.db_table}
       (recipient_id, kind, subject, channel, state, error, context, attempts, claimed_by,
        provider_message_id, created_at, updated_at)
SELECT r, %(kind)s, %(subject)s, c, s, e, %(context)s::jsonb, 0, '', '', %(now)s, %(now)s
  FROM unnest(%(recipients)s::bigint[], %(channels)s::text[], %(states)s::text[], %(errors)s::text[]) AS t(r, c, s, e)
ON CONFLICT (recipient_id, kind, subject, channel) DO NOTHING
RETURNING id, state
"""


def _insert_rows(*, kind, subject, context, columns) -> list[tuple[int, str]]:
    # One INSERT ... ON CONFLICT DO NOTHING for a whole chunk; RETURNING names only the new rows.
    params = {
        "kind": kind,
        "subject": subject,
        "context": json.dumps(context),
        "now": timezone.now(),
        "recipients": columns["recipient"],
        "channels": columns["channel"],
        "states": columns["state"],
        "errors": columns["error"],
    }
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SQL, params)
        return cursor.fetchall()


# --- Fan-out: every backer of a campaign -------------------------------------------------------


def campaign_update_notify_backers(*, update: CampaignUpdate) -> None:
    """Tell every backer of `update.campaign` about the update, in chunk tasks (see fanout_chunk_send)."""
    _fanout_start(kind=NotificationKind.CREATOR_UPDATE_POSTED, subject=f"update:{update.id}", campaign=update.campaign)


_OUTCOME_KINDS = {
    CampaignStatus.SUCCEEDED: NotificationKind.CAMPAIGN_SUCCEEDED,
    CampaignStatus.FAILED: NotificationKind.CAMPAIGN_FAILED,
    CampaignStatus.CANCELLED: NotificationKind.CAMPAIGN_CANCELLED,
}


def campaign_outcome_notify(*, campaign: Campaign) -> None:
    """Tell the creator and every backer that `campaign` succeeded, failed or was cancelled.
    Callable inside the closing (or cancelling) transaction: nothing is sent unless it commits."""
    kind = _OUTCOME_KINDS.get(campaign.status)
    if kind is None:
        raise ValueError(f"campaign {campaign.id} is {campaign.status}, not finished")
    subject = f"campaign:{campaign.id}"
    notification_send(kind=kind, recipient=campaign.creator, subject=subject, context={"is_creator": True})
    _fanout_start(kind=kind, subject=subject, campaign=campaign)


def _fanout_start(*, kind: str, subject: str, campaign) -> None:
    _fanout_enqueue(kind=kind, subject=subject, campaign_id=str(campaign.id), after=0)


def _fanout_enqueue(*, kind: str, subject: str, campaign_id: str, after: int) -> None:
    from crowdfund.notifications import tasks

    # The key names the cursor: a redelivered chunk enqueues the same next chunk, never a second chain.
    task_enqueue(
        tasks.fanout_chunk_send,
        kwargs={"kind": kind, "subject": subject, "campaign_id": campaign_id, "after": after},
        idempotency_key=f"notify:{kind}:{subject}:after:{after}",
        correlation_key=subject,
    )


def fanout_chunk_send(*, kind: str, subject: str, campaign_id: str, after: int, run_id: str, final_attempt=False):
    """Record the rows of the next chunk of backers (ids above `after`), enqueue the chunk after
    it, then send this chunk. Memory holds one chunk; a redelivered chunk re-inserts nothing and
    sends only what is still pending."""
    size = settings.NOTIFICATIONS_FANOUT_CHUNK_SIZE
    with transaction.atomic():
        recipient_ids = selectors.campaign_backer_ids(campaign_id=campaign_id, kind=kind, after=after, limit=size)
        if not recipient_ids:
            return
        inserted = _outbox_insert(kind=kind, subject=subject, recipient_ids=recipient_ids, context={})
        if len(recipient_ids) == size:
            _fanout_enqueue(kind=kind, subject=subject, campaign_id=campaign_id, after=recipient_ids[-1])
    if len(inserted) == len(recipient_ids) * len(KIND_CHANNELS[kind]):  # the chunk's first run: its rows by id
        messages = OutboxMessage.objects.filter(id__in=[message_id for message_id, _ in inserted])
    else:
        # A redelivered chunk: some of its rows were there before, so look them up by recipient.
        # PostgreSQL may plan that lookup badly for a subject it has no statistics for yet (it
        # was seen scanning every row of the fan-out), hence the ids above in the common case.
        messages = OutboxMessage.objects.about(kind=kind, subject=subject).filter(recipient_id__in=recipient_ids)
    _send(messages, run_id=run_id, final_attempt=final_attempt)


# --- Sending ---------------------------------------------------------------------------------


def outbox_messages_send(*, message_ids: list[int], run_id: str, final_attempt: bool = False) -> None:
    """Send the given outbox rows that are still pending; rows sent, failed or skipped are left alone."""
    _send(OutboxMessage.objects.filter(id__in=message_ids), run_id=run_id, final_attempt=final_attempt)


def _send(messages, *, run_id: str, final_attempt: bool) -> None:
    _fail_interrupted(messages, run_id=run_id)
    by_channel = defaultdict(list)
    # Oldest first, so messages about the same user arrive in the order things happened.
    pending = messages.filter(state=OutboxState.PENDING).order_by("id")
    for message_id, channel in pending.values_list("id", "channel"):
        by_channel[channel].append(message_id)
    shared = {}  # the context of each (kind, subject), loaded once per run
    for channel_name, ids in by_channel.items():
        channel = _channel(channel_name)
        channel.open()
        try:
            for start in range(0, len(ids), SEND_BATCH):
                batch = ids[start : start + SEND_BATCH]
                send = _send_atomic if channel.atomic else _send_claimed
                send(channel, batch, run_id=run_id, final_attempt=final_attempt, shared=shared)
        finally:
            channel.close()


def _fail_interrupted(messages, *, run_id: str) -> None:
    """A row still `sending` under this very run was being sent when its worker died: it may have
    reached the provider, so it is not sent again automatically (an admin may resend it)."""
    messages.filter(state=OutboxState.SENDING, claimed_by=run_id).update(
        state=OutboxState.FAILED,
        error="Interrupted while sending (worker lost); it may have been delivered. Resend from the admin.",
        updated_at=timezone.now(),
    )


def _channel(name: str):
    from crowdfund.notifications.channels.email import EmailChannel
    from crowdfund.notifications.channels.in_app import InAppChannel
    from crowdfund.notifications.channels.push import PushChannel

    return {"email": EmailChannel, "push": PushChannel, "in_app": InAppChannel}[name]()


def _send_atomic(channel, ids: list[int], *, run_id: str, final_attempt: bool, shared: dict) -> None:
    """Channels writing only to our database deliver inside the transaction that marks the rows
    sent: a crash rolls both back, so the redelivered task sends each exactly once."""
    ratelimit.take(provider=_provider_name(channel), count=len(ids))
    try:
        with transaction.atomic():
            locked = _claimable(ids, lock=True)
            if locked:
                outcomes = channel.deliver(render_messages(locked, shared=shared))
                results = [(row.id, outcome) for row, outcome in zip(locked, outcomes, strict=True)]
                _record_outcomes(results, count_attempt=True)
    except TransientChannelError as exc:
        if final_attempt:
            _record_failure(ids, error=str(exc))
        raise


def _send_claimed(channel, ids: list[int], *, run_id: str, final_attempt: bool, shared: dict) -> None:
    """Channels reaching outside (SMTP, a push provider's HTTP): rows are claimed a group at a time
    (pending → sending, committed) just before they are sent, and their outcomes are recorded by
    the statement claiming the next group. A crash leaves at most one group (CLAIM_GROUP rows) in
    doubt per run, and those are never sent twice (see _fail_interrupted)."""
    rows = _claimable(ids)
    rendered = {message.message_id: message for message in render_messages(rows, shared=shared)}
    sent = []  # (id, outcome) of the group just sent, recorded by the next claim
    for start in range(0, len(rows), CLAIM_GROUP):
        group = [row.id for row in rows[start : start + CLAIM_GROUP]]
        ratelimit.take(provider=_provider_name(channel), count=len(group))
        group = _claim(group, run_id=run_id, record=sent)
        sent = []
        for position, message_id in enumerate(group):
            try:
                [outcome] = channel.deliver([rendered[message_id]])
            except Exception as exc:
                _record_outcomes(sent, count_attempt=False)
                _release(group[position + 1 :])
                if isinstance(exc, TransientChannelError):  # not sent: back for a retry
                    _unclaim(message_id, error=str(exc), final_attempt=final_attempt)
                raise  # anything else may have reached the provider: left `sending`, in doubt
            sent.append((message_id, outcome))
    _record_outcomes(sent, count_attempt=False)


_RENDERED_FIELDS = ("id", "kind", "subject", "channel", "context", "recipient_id", "recipient__email",
                    "recipient__display_name")  # fmt: skip


def _claimable(ids: list[int], *, lock: bool = False) -> list[SimpleNamespace]:
    """The rows among `ids` still pending, oldest first (locked, skipping rows locked by another
    run, if asked), with only what rendering reads. A chunk loads 500 rows a channel: plain
    objects, not models (a model per row and per recipient cost more than the query)."""
    rows = OutboxMessage.objects.filter(id__in=ids, state=OutboxState.PENDING).order_by("id")
    if lock:
        rows = rows.select_for_update(skip_locked=True, of=("self",))
    return [
        SimpleNamespace(
            id=message_id, kind=kind, subject=subject, channel=channel, context=context, recipient_id=recipient_id,
            recipient=SimpleNamespace(id=recipient_id, email=email, display_name=display_name),
        )
        for message_id, kind, subject, channel, context, recipient_id, email, display_name
        in rows.values_list(*_RENDERED_FIELDS)
    ]  # fmt: skip


# Plain SQL: through the ORM, compiling these statements cost more than running them
# (measured: a 500-recipient chunk took 10 s, most of it in bulk_update's CASEs).
_TABLE = OutboxMessage._meta.db_table
_OUTCOMES_SQL = f"""
UPDATE {_TABLE} AS m
   SET state = v.state, provider_message_id = v.provider_id, error = v.error, updated_at = %(now)s,
       sent_at = CASE WHEN v.state = 'sent' THEN %(now)s::timestamptz END,
       attempts = m.attempts + CASE WHEN %(count_attempt)s AND v.state <> 'skipped' THEN 1 ELSE 0 END
  FROM unnest(%(ids)s::bigint[], %(states)s::text[], %(provider_ids)s::text[], %(errors)s::text[])
       AS v(id, state, provider_id, error)
 WHERE m.id = v.id
"""
# pending → sending for this run, recording the previous group's outcomes in the same round trip.
_CLAIM_SQL = f"""
WITH recorded AS ({_OUTCOMES_SQL})
UPDATE {_TABLE} SET state = 'sending', claimed_by = %(run_id)s, claimed_at = %(now)s, updated_at = %(now)s,
       attempts = attempts + 1
 WHERE id = ANY(%(claim_ids)s::bigint[]) AND state = 'pending'
RETURNING id
"""


def _claim(ids: list[int], *, run_id: str, record: list[tuple[int, Outcome]]) -> list[int]:
    """pending → sending for this run; returns the ids this run claimed (only it sends them), in order."""
    params = {**_outcome_params(record, count_attempt=False), "run_id": run_id, "claim_ids": ids}
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, params)
        return sorted(message_id for (message_id,) in cursor.fetchall())


def _release(ids: list[int]) -> None:
    """Claimed but never tried (the send before them failed): back to pending, attempt not counted."""
    OutboxMessage.objects.filter(id__in=ids, state=OutboxState.SENDING).update(
        state=OutboxState.PENDING, attempts=F("attempts") - 1, updated_at=timezone.now()
    )


def _unclaim(message_id: int, *, error: str, final_attempt: bool) -> None:
    state = OutboxState.FAILED if final_attempt else OutboxState.PENDING
    OutboxMessage.objects.filter(id=message_id, state=OutboxState.SENDING).update(
        state=state, error=error[:2000], updated_at=timezone.now()
    )


def _record_outcomes(outcomes: list[tuple[int, Outcome]], *, count_attempt: bool) -> None:
    if outcomes:
        with connection.cursor() as cursor:
            cursor.execute(_OUTCOMES_SQL, _outcome_params(outcomes, count_attempt=count_attempt))


def _outcome_params(outcomes: list[tuple[int, Outcome]], *, count_attempt: bool) -> dict:
    return {
        "now": timezone.now(),
        "count_attempt": count_attempt,
        "ids": [message_id for message_id, _ in outcomes],
        "states": [outcome.state for _, outcome in outcomes],
        "provider_ids": [outcome.provider_message_id for _, outcome in outcomes],
        "errors": [outcome.error for _, outcome in outcomes],
    }


def _record_failure(ids: list[int], *, error: str) -> None:
    OutboxMessage.objects.filter(id__in=ids, state__in=[OutboxState.PENDING, OutboxState.SENDING]).update(
        state=OutboxState.FAILED, error=error[:2000], updated_at=timezone.now()
    )


def _provider_name(channel) -> str:
    if channel.name == "push":
        return f"push:{channel.provider.name}"
    return channel.name


# --- Rendering ---------------------------------------------------------------------------------


# The fields that differ between recipients of the same (kind, subject, channel). Each template
# is rendered once per run with markers in their place, then each message is the markers
# replaced: rendering per message cost ~0.3 ms of the ~0.7 ms a fan-out message took. The markers
# hold a "&" so that where a template HTML-escapes the field, the escaped marker shows it, and the
# escaped value goes in its place. A blank field is rendered blank (and is part of the cache key),
# so {% if unsubscribe_url %} decides as it would for each recipient.
_MARK = "\ue000"
_PER_RECIPIENT = ("recipient_name", "unsubscribe_url")
_MARKERS = {name: f"{_MARK}{name}&{_MARK}" for name in _PER_RECIPIENT}
_ESCAPED_MARKERS = {name: escape(marker) for name, marker in _MARKERS.items()}


def render_messages(rows, *, shared: dict | None = None) -> list[Rendered]:
    """Render each row (an OutboxMessage, or one of _claimable's plain rows: the same attributes)
    with its kind's templates: what the subject names, then the row's own context on top.
    `shared` caches, for one sending run, what the subject names (under (kind, subject)) and the
    templates rendered with markers (under (kind, subject, channel, context))."""
    shared = {} if shared is None else shared
    rendered = []
    for row in rows:
        key = (row.kind, row.subject)
        if key not in shared:
            shared[key] = _shared_context(kind=row.kind, subject=row.subject)
        context = {**shared[key], **row.context}
        fields = _recipient_fields(row)
        markers = {name: _MARKERS[name] if value else "" for name, value in fields.items()}
        draft_key = (row.kind, row.subject, row.channel, json.dumps(row.context), *markers.values())
        if draft_key not in shared:
            shared[draft_key] = _render_templates(row.kind, row.channel, {**context, **markers})
        message = _fill_in(row, fields, shared[draft_key])
        if _MARK in message.title + message.text + message.html:
            message = render_message(row, context)  # a template filtered a per-recipient field: render in full
        rendered.append(message)
    return rendered


def render_message(row: OutboxMessage, context: dict) -> Rendered:
    """One row rendered in full, templates and all (render_messages does the same, faster)."""
    fields = _recipient_fields(row)
    return _rendered(row, fields, _render_templates(row.kind, row.channel, {**context, **fields}))


def _render_templates(kind: str, channel: str, context: dict) -> tuple[str, str, str]:
    """(subject, text, html) of `kind`; html only for email."""
    context = {**context, "channel": channel, "app_url": settings.NOTIFICATIONS_BASE_URL}
    base = f"notifications/{kind}"
    title = render_to_string(f"{base}.subject.txt", context)
    text = render_to_string(f"{base}.txt", context)
    html = render_to_string(f"{base}.html", context) if channel == NotificationChannel.EMAIL else ""
    return title, text, html


def _recipient_fields(row: OutboxMessage) -> dict:
    recipient = row.recipient
    is_email = row.channel == NotificationChannel.EMAIL
    return {
        "recipient_name": recipient.display_name or recipient.email,
        "unsubscribe_url": unsubscribe_url(user=recipient, kind=row.kind) if is_email else "",
    }


def _fill_in(row: OutboxMessage, fields: dict, draft: tuple[str, str, str]) -> Rendered:
    """The templates rendered with markers, with this row's recipient in their place."""
    parts = list(draft)
    for name, value in fields.items():
        marker, escaped_marker, escaped_value = _MARKERS[name], _ESCAPED_MARKERS[name], escape(value)
        for index, part in enumerate(parts):
            parts[index] = part.replace(marker, value).replace(escaped_marker, escaped_value)
    return _rendered(row, fields, parts)


def _rendered(row: OutboxMessage, fields: dict, parts) -> Rendered:
    title, text, html = parts
    return Rendered(
        message_id=row.id,
        recipient_id=row.recipient_id,
        email=row.recipient.email,
        kind=row.kind,
        subject=row.subject,
        title=" ".join(title.split()),
        text=text.strip(),
        html=html,
        unsubscribe_url=fields["unsubscribe_url"],
        data={"kind": row.kind, "subject": row.subject},
    )


def _shared_context(*, kind: str, subject: str) -> dict:
    """What the subject names, as template data, built once per batch: all a fan-out row has,
    and the defaults under a caller's own context."""
    prefix, _, object_id = subject.partition(":")
    try:
        uuid.UUID(object_id)
    except ValueError:
        return {}  # not an object of ours (a digest's date, a report's id): the caller's context is all
    if prefix == "update":
        update = CampaignUpdate.objects.select_related("campaign").get(id=object_id)
        return {
            "campaign_title": update.campaign.title,
            "campaign_id": str(update.campaign_id),
            "update_title": update.title,
            "update_body": update.body,
        }
    if prefix == "pledge":
        from crowdfund.pledges.models import Pledge

        pledge = Pledge.objects.select_related("campaign", "reward").filter(id=object_id).first()
        if pledge is None:
            return {}
        return {
            "pledge_id": str(pledge.id),
            "campaign_title": pledge.campaign.title,
            "amount": f"{pledge.amount:.2f}",
            "currency": pledge.currency,
            "reward_title": pledge.reward.title if pledge.reward_id else "",
        }
    if prefix == "campaign":
        campaign = Campaign.objects.get(id=object_id)
        return {
            "campaign_title": campaign.title,
            "campaign_id": str(campaign.id),
            "pledged_amount": str(campaign.pledged_amount),
            "goal_amount": str(campaign.goal_amount),
            "currency": campaign.currency,
            "backer_count": campaign.backer_count,
        }
    return {}


# --- Unsubscribe -------------------------------------------------------------------------------


def unsubscribe_url(*, user: User, kind: str) -> str:
    """A link to stop `kind` emails for `user`; "" for transactional kinds, which cannot be stopped."""
    if kind in TRANSACTIONAL_KINDS:
        return ""
    token = signing.dumps({"u": user.id, "k": kind}, key=settings.NOTIFICATIONS_UNSUBSCRIBE_KEY, salt=UNSUBSCRIBE_SALT)
    return settings.NOTIFICATIONS_BASE_URL.rstrip("/") + _unsubscribe_path_prefix() + token


@functools.cache
def _unsubscribe_path_prefix() -> str:
    # Reversed once, not per email of a fan-out: a token is URL-safe (base64 and ":"), so
    # reverse() would put it after this prefix unchanged.
    return reverse("notifications-unsubscribe", args=["-"]).removesuffix("-")


def unsubscribe_token_read(*, token: str) -> tuple[User, str]:
    """The user and kind a link was signed for; a forged or altered token is refused."""
    try:
        payload = signing.loads(token, key=settings.NOTIFICATIONS_UNSUBSCRIBE_KEY, salt=UNSUBSCRIBE_SALT)
        user = User.objects.get(id=payload["u"])
        kind = NotificationKind(payload["k"])
    except (signing.BadSignature, User.DoesNotExist, KeyError, TypeError, ValueError) as exc:
        raise DomainError("invalid_unsubscribe_link", "This unsubscribe link is not valid.", status=404) from exc
    return user, kind


def notification_unsubscribe(*, token: str) -> tuple[User, str]:
    """One click, no login: stop emailing the link's user about the link's kind."""
    from crowdfund.accounts.services import notification_preferences_set

    user, kind = unsubscribe_token_read(token=token)
    notification_preferences_set(user=user, preferences=[{"kind": kind, "channel": "email", "enabled": False}])
    return user, kind


# --- In-app list -------------------------------------------------------------------------------


def in_app_notification_read(*, user: User, notification_id: int):
    from crowdfund.notifications.models import InAppNotification

    notification = InAppNotification.objects.filter(user=user, id=notification_id).first()
    if notification is None:
        raise DomainError("not_found", "Not found.", status=404)
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])
    return notification


def in_app_notifications_read_all(*, user: User) -> int:
    return user.in_app_notifications.filter(read_at__isnull=True).update(read_at=timezone.now())


# --- Admin: resend -----------------------------------------------------------------------------


def outbox_messages_resend(*, messages) -> int:
    """Send the chosen rows again (failed, skipped, interrupted, or even sent: an admin's call),
    in tasks of a few hundred rows, after commit."""
    from crowdfund.notifications import tasks

    with transaction.atomic():
        ids = list(messages.exclude(state=OutboxState.PENDING).values_list("id", flat=True))
        OutboxMessage.objects.filter(id__in=ids).update(
            state=OutboxState.PENDING, claimed_by="", error="", updated_at=timezone.now()
        )
        for start in range(0, len(ids), settings.NOTIFICATIONS_FANOUT_CHUNK_SIZE):
            batch = ids[start : start + settings.NOTIFICATIONS_FANOUT_CHUNK_SIZE]
            task_enqueue(tasks.outbox_messages_send, kwargs={"message_ids": batch}, correlation_key="resend")
    return len(ids)


# --- Creator daily digest ----------------------------------------------------------------------


def creator_digests_send(*, day: date | None = None) -> int:
    """Send each creator of a live campaign one digest for `day` (subject "digest:<day>"); run
    again the same day, it sends nothing new. Creators are taken a few hundred at a time."""
    day = day or timezone.localdate()
    after, total = 0, 0
    while creator_ids := selectors.live_campaign_creator_ids(
        after=after, limit=settings.NOTIFICATIONS_FANOUT_CHUNK_SIZE
    ):
        with transaction.atomic():
            for creator in User.objects.filter(id__in=creator_ids):
                context = _digest_context(creator=creator, day=day)
                notification_send(
                    kind=NotificationKind.CREATOR_DAILY_DIGEST,
                    recipient=creator,
                    subject=f"digest:{day}",
                    context=context,
                )
        after, total = creator_ids[-1], total + len(creator_ids)
    return total


def _digest_context(*, creator: User, day: date) -> dict:
    since = timezone.now() - timedelta(days=1)
    campaigns = selectors.creator_live_campaigns_with_recent_pledges(creator=creator, since=since)
    return {
        "date": day.isoformat(),
        "campaigns": [
            {
                "title": campaign.title,
                "pledged_amount": str(campaign.pledged_amount),
                "goal_amount": str(campaign.goal_amount),
                "currency": campaign.currency,
                "backer_count": campaign.backer_count,
                "new_pledges": campaign.new_pledges,
                "deadline": campaign.deadline.date().isoformat(),
            }
            for campaign in campaigns
        ],
    }
