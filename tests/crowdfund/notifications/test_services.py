import smtplib
from unittest import mock

import pytest
import time_machine
from django.core import mail
from django.utils.html import escape

from crowdfund.accounts.models import Device
from crowdfund.accounts.services import device_register, notification_preferences_set
from crowdfund.campaigns.models import CampaignStatus
from crowdfund.campaigns.services import campaign_cancel
from crowdfund.notifications import services
from crowdfund.notifications.channels import TransientChannelError
from crowdfund.notifications.models import (
    InAppNotification,
    OutboxMessage,
    OutboxState,
    SandboxPushDelivery,
)
from crowdfund.notifications.tasks import outbox_messages_send
from crowdfund.pledges.models import PledgeStatus
from tasks.models import TaskRecord
from tests.factories import CampaignFactory, CampaignUpdateFactory, PledgeFactory, UserFactory

pytestmark = pytest.mark.django_db

RECEIPT = {"pledge_id": "p-1", "campaign_title": "Solar Kettle", "amount": "25.00", "currency": "EUR"}


def states(user, kind):
    return dict(OutboxMessage.objects.filter(recipient=user, kind=kind).values_list("channel", "state"))


def test_calling_notification_send_twice_records_and_enqueues_once(backer):
    services.notification_send(kind="pledge_receipt", recipient=backer, subject="pledge:p-1", context=RECEIPT)
    services.notification_send(kind="pledge_receipt", recipient=backer, subject="pledge:p-1", context=RECEIPT)

    assert OutboxMessage.objects.filter(recipient=backer).count() == 2  # email and in-app
    assert TaskRecord.objects.filter(name__endswith="outbox_messages_send", correlation_key="pledge:p-1").count() == 1


def test_preferences_skip_what_the_user_turned_off(backer, send_all):
    device_register(user=backer, platform="ios", token="tok-1")
    notification_preferences_set(
        user=backer,
        preferences=[
            {"kind": "report_ready", "channel": "email", "enabled": False},
            {"kind": "report_ready", "channel": "push", "enabled": False},
        ],
    )
    services.notification_send(kind="report_ready", recipient=backer, subject="report:7", context={})
    send_all()

    assert states(backer, "report_ready") == {"email": "skipped", "push": "skipped", "in_app": "sent"}
    assert mail.outbox == []
    assert SandboxPushDelivery.objects.count() == 0


def test_a_receipt_is_emailed_even_to_someone_who_turned_receipt_emails_off(backer, send_all):
    notification_preferences_set(
        user=backer,
        preferences=[
            {"kind": "pledge_receipt", "channel": "email", "enabled": False},
            {"kind": "pledge_receipt", "channel": "in_app", "enabled": False},
        ],
    )
    services.notification_send(kind="pledge_receipt", recipient=backer, subject="pledge:p-1", context=RECEIPT)
    send_all()

    assert states(backer, "pledge_receipt") == {"email": "sent", "in_app": "skipped"}
    assert [m.to for m in mail.outbox] == [["backer@example.com"]]


def test_a_token_the_provider_reports_invalid_is_deactivated_and_not_used_again(backer, send_all):
    device_register(user=backer, platform="android", token="invalid-old-phone")
    device_register(user=backer, platform="ios", token="good-phone")

    services.notification_send(kind="report_ready", recipient=backer, subject="report:1", context={})
    send_all()
    services.notification_send(kind="report_ready", recipient=backer, subject="report:2", context={})
    send_all()

    old = Device.objects.get(token="invalid-old-phone")
    assert old.is_active is False
    assert old.deactivated_at is not None
    assert list(SandboxPushDelivery.objects.values_list("device_token", flat=True)) == ["good-phone", "good-phone"]
    assert states(backer, "report_ready")["push"] == "sent"


def test_a_push_to_someone_whose_only_token_is_invalid_is_recorded_failed(backer, send_all):
    device_register(user=backer, platform="android", token="invalid-token")
    services.notification_send(kind="report_ready", recipient=backer, subject="report:1", context={})
    send_all()

    push = OutboxMessage.objects.get(recipient=backer, channel="push")
    assert push.state == OutboxState.FAILED
    assert "Unregistered token" in push.error


def test_a_push_to_someone_without_a_device_is_skipped(backer, send_all):
    services.notification_send(kind="report_ready", recipient=backer, subject="report:1", context={})
    send_all()
    assert states(backer, "report_ready")["push"] == "skipped"


def test_non_transactional_email_carries_a_one_click_unsubscribe(backer, send_all):
    services.notification_send(kind="report_ready", recipient=backer, subject="report:1", context={})
    send_all()

    [email] = mail.outbox
    url = email.extra_headers["List-Unsubscribe"].strip("<>")
    assert url.startswith("http://localhost:8000/api/v1/notifications/unsubscribe/")
    assert email.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert url in email.body
    assert url in email.alternatives[0][0]


def test_a_receipt_has_no_unsubscribe_link(backer, send_all):
    services.notification_send(kind="pledge_receipt", recipient=backer, subject="pledge:p-1", context=RECEIPT)
    send_all()

    [email] = mail.outbox
    assert "List-Unsubscribe" not in email.extra_headers
    assert "nsubscribe" not in email.body


KINDS = [
    ("pledge_receipt", RECEIPT, "Receipt: your pledge of 25.00 EUR to Solar Kettle", 'to "Solar Kettle" is paid'),
    ("payment_failed", RECEIPT, "Your payment for Solar Kettle did not go through", "25.00 EUR for your pledge"),
    ("refund_issued", RECEIPT, "Refund: 25.00 EUR from Solar Kettle", "We refunded your pledge of 25.00 EUR"),
    (
        "report_ready",
        {"report_kind": "backers", "format": "csv", "campaign_title": "Solar Kettle", "download_url": "http://x/d"},
        "Your report is ready: Solar Kettle",
        "Your backers report (csv) for \"Solar Kettle\" is ready to download.\nhttp://x/d",
    ),
    (
        "creator_daily_digest",
        {
            "date": "2026-11-22",
            "campaigns": [
                {"title": "Solar Kettle", "pledged_amount": "500.00", "goal_amount": "1000.00", "currency": "EUR",
                 "backer_count": 12, "new_pledges": 3, "deadline": "2026-12-20"}
            ],
        },
        "Your campaigns today (2026-11-22)",
        "- Solar Kettle: 500.00 of 1000.00 EUR, 12 backers, 3 new pledges in the last day, ends 2026-12-20",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "context", "title", "excerpt"), KINDS, ids=[k[0] for k in KINDS])
def test_each_kind_has_its_own_subject_and_body(backer, send_all, kind, context, title, excerpt):
    services.notification_send(kind=kind, recipient=backer, subject=f"{kind}:1", context=context)
    send_all()

    [email] = mail.outbox
    assert email.subject == title
    assert excerpt in email.body
    html = email.alternatives[0][0]
    assert html.startswith("<!doctype html>")
    assert "Hi Bea Backer," in html
    assert "&quot;" not in email.body  # the text part is not HTML-escaped


FANOUT_KINDS = ["creator_update_posted", "campaign_succeeded", "campaign_failed", "campaign_cancelled"]


@pytest.mark.parametrize("kind", [k[0] for k in KINDS] + FANOUT_KINDS)
def test_templates_rendered_once_per_subject_give_each_recipient_what_a_full_render_gives(kind):
    context = next((k[1] for k in KINDS if k[0] == kind), {"is_creator": True})
    recipients = [UserFactory(display_name='Zoë "Z" <O\'Neil> & Co'), UserFactory(display_name="")]
    for recipient in recipients:
        services.notification_send(kind=kind, recipient=recipient, subject=f"{kind}:1", context=context)
    rows = list(OutboxMessage.objects.select_related("recipient").order_by("id"))

    with time_machine.travel("2026-11-22 12:00", tick=False):  # unsubscribe tokens carry the time
        assert services.render_messages(rows) == [services.render_message(row, row.context) for row in rows]


def test_each_backer_gets_their_own_name_and_unsubscribe_link():
    update = CampaignUpdateFactory()
    backers = [PledgeFactory(campaign=update.campaign, status=PledgeStatus.PAID).backer for _ in range(3)]

    services.campaign_update_notify_backers(update=update)
    run_fanout_chain()

    by_address = {email.to[0]: email for email in mail.outbox}
    for backer in backers:
        email = by_address[backer.email]
        token = email.extra_headers["List-Unsubscribe"].strip("<>").rstrip("/").rsplit("/", 1)[1]
        assert services.unsubscribe_token_read(token=token) == (backer, "creator_update_posted")
        assert f"Hi {escape(backer.display_name)}," in email.alternatives[0][0]
        assert token in email.body


def test_a_creator_update_reaches_every_paying_backer_once_in_chunks(settings, send_all):
    settings.NOTIFICATIONS_FANOUT_CHUNK_SIZE = 2
    update = CampaignUpdateFactory(title="Prototype done", body="It boils water.")
    paid = [PledgeFactory(campaign=update.campaign, status=PledgeStatus.PAID).backer for _ in range(5)]
    PledgeFactory(campaign=update.campaign, backer=paid[0], status=PledgeStatus.PAID)  # a second pledge
    PledgeFactory(campaign=update.campaign, status=PledgeStatus.PENDING)

    services.campaign_update_notify_backers(update=update)
    run_fanout_chain()

    subject = f"update:{update.id}"
    emails = OutboxMessage.objects.filter(subject=subject, channel="email")
    assert sorted(emails.values_list("recipient_id", flat=True)) == sorted(u.id for u in paid)
    assert set(emails.values_list("state", flat=True)) == {"sent"}
    assert sorted(m.to[0] for m in mail.outbox) == sorted(u.email for u in paid)
    assert mail.outbox[0].subject == f"New update from {update.campaign.title}: Prototype done"
    assert "It boils water." in mail.outbox[0].body
    assert InAppNotification.objects.filter(subject=subject).count() == 5
    chunks = TaskRecord.objects.filter(name__endswith="fanout_chunk_send")
    assert chunks.count() == 3  # after 0, after the 2nd backer, after the 4th


def test_a_redelivered_chunk_sends_nothing_twice_and_does_not_fork_the_chain(settings):
    settings.NOTIFICATIONS_FANOUT_CHUNK_SIZE = 2
    update = CampaignUpdateFactory()
    for _ in range(3):
        PledgeFactory(campaign=update.campaign, status=PledgeStatus.PAID)
    kwargs = {"kind": "creator_update_posted", "subject": f"update:{update.id}", "campaign_id": str(update.campaign_id)}

    services.fanout_chunk_send(**kwargs, after=0, run_id="run-1")
    services.fanout_chunk_send(**kwargs, after=0, run_id="run-1")

    assert len(mail.outbox) == 2
    assert TaskRecord.objects.filter(name__endswith="fanout_chunk_send").count() == 1


def test_an_email_interrupted_mid_send_is_not_sent_again_by_the_rerun(backer):
    services.notification_send(kind="pledge_receipt", recipient=backer, subject="pledge:p-1", context=RECEIPT)
    email = OutboxMessage.objects.get(channel="email")
    # What a worker killed between claiming and recording leaves behind:
    OutboxMessage.objects.filter(id=email.id).update(state="sending", claimed_by="run-7")

    services.outbox_messages_send(message_ids=[email.id], run_id="run-7")

    email.refresh_from_db()
    assert email.state == OutboxState.FAILED
    assert "Interrupted" in email.error
    assert mail.outbox == []


def test_the_campaign_outcome_reaches_the_creator_and_every_backer(send_all, settings):
    campaign = CampaignFactory(live=True, status=CampaignStatus.SUCCEEDED, title="Solar Kettle")
    backers = [PledgeFactory(campaign=campaign, status=PledgeStatus.PAID).backer for _ in range(3)]

    services.campaign_outcome_notify(campaign=campaign)
    bodies = emails_sent_to(campaign.creator, *backers, send_all=send_all)

    assert bodies[campaign.creator.email].startswith('Your campaign "Solar Kettle" reached its goal')
    assert bodies[backers[0].email].startswith('"Solar Kettle", which you back, reached its goal')
    assert {m.subject for m in mail.outbox} == {"Solar Kettle was funded!"}


def test_a_cancelled_campaign_tells_its_creator_and_every_backer_paid_refunded_or_still_pending(send_all):
    campaign = CampaignFactory(live=True, title="Solar Kettle")
    backers = [
        PledgeFactory(campaign=campaign, status=status).backer
        for status in (PledgeStatus.PAID, PledgeStatus.REFUNDED, PledgeStatus.PENDING)
    ]
    PledgeFactory(campaign=campaign, status=PledgeStatus.FAILED)  # never going to pay: not told

    campaign_cancel(campaign=campaign)
    bodies = emails_sent_to(campaign.creator, *backers, send_all=send_all)

    assert bodies[campaign.creator.email].startswith('Your campaign "Solar Kettle" was cancelled.')
    assert bodies[backers[2].email].startswith('"Solar Kettle", which you back, was cancelled. You will not be charged')
    assert {m.subject for m in mail.outbox} == {"Solar Kettle was cancelled"}


def test_a_transient_smtp_error_puts_the_message_back_for_a_retry(backer):
    services.notification_send(kind="pledge_receipt", recipient=backer, subject="pledge:p-1", context=RECEIPT)
    email = OutboxMessage.objects.get(channel="email")
    disconnected = mock.patch("django.core.mail.EmailMessage.send", side_effect=smtplib.SMTPServerDisconnected("gone"))
    with disconnected, pytest.raises(TransientChannelError):
        services.outbox_messages_send(message_ids=[email.id], run_id="run-1")
    email.refresh_from_db()
    assert email.state == OutboxState.PENDING
    assert email.attempts == 1
    assert "gone" in email.error

    services.outbox_messages_send(message_ids=[email.id], run_id="run-1")
    email.refresh_from_db()
    assert email.state == OutboxState.SENT
    assert email.provider_message_id.startswith("<")
    assert len(mail.outbox) == 1


def test_a_transient_error_mid_group_records_what_went_and_puts_the_rest_back():
    for _ in range(3):
        services.notification_send(
            kind="pledge_receipt", recipient=UserFactory(), subject="pledge:p-1", context=RECEIPT
        )
    ids = list(OutboxMessage.objects.filter(channel="email").order_by("id").values_list("id", flat=True))
    send, tried = mail.EmailMessage.send, []

    def second_one_finds_the_server_gone(email, *args, **kwargs):
        tried.append(email)
        if len(tried) == 2:
            raise smtplib.SMTPServerDisconnected("gone")
        return send(email, *args, **kwargs)

    flaky = mock.patch("django.core.mail.EmailMessage.send", second_one_finds_the_server_gone)
    with flaky, pytest.raises(TransientChannelError):
        services.outbox_messages_send(message_ids=ids, run_id="run-1")
    emails = OutboxMessage.objects.filter(id__in=ids).order_by("id")
    assert [(m.state, m.attempts) for m in emails] == [("sent", 1), ("pending", 1), ("pending", 0)]

    services.outbox_messages_send(message_ids=ids, run_id="run-1")
    assert set(emails.values_list("state", flat=True)) == {"sent"}
    assert len(mail.outbox) == 3


def test_a_refused_recipient_is_recorded_failed_without_retrying(backer):
    services.notification_send(kind="pledge_receipt", recipient=backer, subject="pledge:p-1", context=RECEIPT)
    email = OutboxMessage.objects.get(channel="email")
    refused = smtplib.SMTPRecipientsRefused({backer.email: (550, b"no such user")})
    with mock.patch("django.core.mail.EmailMessage.send", side_effect=refused):
        services.outbox_messages_send(message_ids=[email.id], run_id="run-1")
    email.refresh_from_db()
    assert email.state == OutboxState.FAILED
    assert "Recipient refused" in email.error


def test_resend_sends_a_failed_message_again(backer):
    services.notification_send(kind="pledge_receipt", recipient=backer, subject="pledge:p-1", context=RECEIPT)
    OutboxMessage.objects.filter(channel="email").update(state="failed", error="boom")

    assert services.outbox_messages_resend(messages=OutboxMessage.objects.filter(channel="email")) == 1
    record = TaskRecord.objects.filter(correlation_key="resend").get()
    outbox_messages_send(**record.kwargs)

    assert OutboxMessage.objects.get(channel="email").state == OutboxState.SENT
    assert len(mail.outbox) == 1


def test_the_daily_digest_goes_once_a_day_to_each_creator_of_a_live_campaign(send_all):
    live = CampaignFactory(live=True, title="Solar Kettle")
    CampaignFactory(live=True, creator=live.creator, title="Wind Kite")
    CampaignFactory(title="Draft thing")
    PledgeFactory(campaign=live, status=PledgeStatus.PAID, paid_at=live.created_at)

    assert services.creator_digests_send() == 1
    services.creator_digests_send()
    send_all()

    [email] = mail.outbox
    assert email.to == [live.creator.email]
    assert "Solar Kettle" in email.body
    assert "Wind Kite" in email.body
    assert "Draft thing" not in email.body
    assert "1 new pledges" in email.body


def emails_sent_to(*users, send_all) -> dict[str, str]:
    """Send what is pending and run the fan-out chain; check that exactly `users` got one email
    each, and return each email's body by address."""
    send_all()
    run_fanout_chain()
    assert sorted(m.to[0] for m in mail.outbox) == sorted(user.email for user in users)
    return {m.to[0]: m.body for m in mail.outbox}


def run_fanout_chain():
    """Run the recorded fan-out chunk tasks in order, as workers would."""
    from crowdfund.notifications.tasks import fanout_chunk_send

    done = set()
    while todo := TaskRecord.objects.filter(name__endswith="fanout_chunk_send").exclude(id__in=done).first():
        fanout_chunk_send(**todo.kwargs)
        done.add(todo.id)


def test_nobody_else_is_notified(send_all):
    services.notification_send(kind="report_ready", recipient=UserFactory(), subject="report:1", context={})
    send_all()
    assert OutboxMessage.objects.values("recipient").distinct().count() == 1


def test_a_receipt_names_the_campaign_and_reward_from_the_pledge_itself(backer, send_all):
    pledge = PledgeFactory(backer=backer, status=PledgeStatus.PAID, amount="40.00", campaign__title="Wind Kite")
    services.notification_send(
        kind="pledge_receipt", recipient=backer, subject=f"pledge:{pledge.id}", context={"amount": "40.00"}
    )
    send_all()

    [email] = mail.outbox
    assert email.subject == "Receipt: your pledge of 40.00 EUR to Wind Kite"
    assert f"Pledge reference: {pledge.id}" in email.body
