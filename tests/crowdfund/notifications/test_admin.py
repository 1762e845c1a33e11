import pytest
from django.contrib.admin.sites import site

from crowdfund.notifications import services
from crowdfund.notifications.models import OutboxMessage, OutboxState
from tasks.models import TaskRecord
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_every_notifications_model_has_a_searchable_admin_page(admin_client, backer):
    services.notification_send(kind="report_ready", recipient=backer, subject="report:1", context={})
    models = [m for m in site._registry if m._meta.app_label == "notifications"]
    assert len(models) == 4
    for model in models:
        url = f"/admin/notifications/{model._meta.model_name}/"
        assert admin_client.get(url, {"q": "report"}).status_code == 200, url


def test_the_outbox_filters_by_state_channel_and_kind(admin_client, backer):
    services.notification_send(kind="report_ready", recipient=backer, subject="report:1", context={})
    response = admin_client.get(
        "/admin/notifications/outboxmessage/", {"state__exact": "pending", "channel__exact": "email", "q": "backer@"}
    )
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == list(OutboxMessage.objects.filter(channel="email"))


def test_the_resend_action_queues_the_chosen_messages_again(admin_client, backer):
    services.notification_send(kind="report_ready", recipient=backer, subject="report:1", context={})
    failed = OutboxMessage.objects.get(channel="email")
    OutboxMessage.objects.filter(id=failed.id).update(state=OutboxState.FAILED, error="SMTP 550")

    admin_client.post("/admin/notifications/outboxmessage/", {"action": "resend", "_selected_action": [failed.id]})

    failed.refresh_from_db()
    assert failed.state == OutboxState.PENDING
    assert failed.error == ""
    assert TaskRecord.objects.get(correlation_key="resend").kwargs == {"message_ids": [failed.id]}
