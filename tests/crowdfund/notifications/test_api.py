import pytest
from django.core import signing

from crowdfund.accounts.models import NotificationPreference
from crowdfund.notifications import services
from crowdfund.notifications.models import InAppNotification

pytestmark = pytest.mark.django_db

URL = "/api/v1/me/notifications"


def notify(user, n):
    services.notification_send(kind="report_ready", recipient=user, subject=f"report:{n}", context={"format": "csv"})


def test_it_lists_the_callers_in_app_notifications_newest_first(api_client, backer, outsider, send_all):
    notify(backer, 1)
    notify(backer, 2)
    notify(outsider, 3)
    send_all()

    response = api_client(backer).get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert body["next"] is None
    assert body["previous"] is None
    assert [n["subject"] for n in body["results"]] == ["report:2", "report:1"]
    assert body["results"][0]["title"] == "Your report is ready"
    assert body["results"][0]["read"] is False


def test_it_marks_one_notification_read(api_client, backer, send_all):
    notify(backer, 1)
    send_all()
    notification = InAppNotification.objects.get()

    response = api_client(backer).post(f"{URL}/{notification.id}/read")

    assert response.status_code == 200
    assert response.json()["read"] is True
    notification.refresh_from_db()
    assert notification.read_at is not None
    assert api_client(backer).get(URL, {"unread": "true"}).json()["count"] == 0


def test_nobody_can_mark_someone_elses_notification_read(api_client, backer, outsider, send_all):
    notify(backer, 1)
    send_all()
    notification = InAppNotification.objects.get()

    response = api_client(outsider).post(f"{URL}/{notification.id}/read")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    notification.refresh_from_db()
    assert notification.read_at is None


def test_read_all_marks_every_unread_notification_of_the_caller(api_client, backer, outsider, send_all):
    notify(backer, 1)
    notify(backer, 2)
    notify(outsider, 3)
    send_all()

    response = api_client(backer).post(f"{URL}/read-all")

    assert response.json() == {"marked_read": 2}
    assert InAppNotification.objects.filter(read_at__isnull=True).get().user == outsider


def test_the_list_needs_a_signed_in_user(api_client):
    response = api_client().get(URL)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_the_unsubscribe_link_works_without_logging_in(client, backer):
    url = services.unsubscribe_url(user=backer, kind="creator_update_posted")
    path = url.removeprefix("http://localhost:8000")

    page = client.get(path)
    assert page.status_code == 200
    assert b"backer@example.com" in page.content
    assert not NotificationPreference.objects.exists()  # looking is not unsubscribing

    done = client.post(path, {"List-Unsubscribe": "One-Click"})

    assert done.status_code == 200
    assert b"will no longer get emails" in done.content
    preference = NotificationPreference.objects.get(user=backer)
    assert (preference.kind, preference.channel, preference.enabled) == ("creator_update_posted", "email", False)


def test_an_unsubscribe_link_cannot_be_forged(client, backer, outsider):
    url = services.unsubscribe_url(user=backer, kind="creator_update_posted")
    token = url.rsplit("/", 1)[1]
    payload, _, signature = token.partition(":")
    other = signing.dumps({"u": outsider.id, "k": "creator_update_posted"}, salt="crowdfund.notifications.unsubscribe")
    forged = [
        signing.b64_encode(b'{"u":%d,"k":"creator_update_posted"}' % outsider.id).decode() + ":" + signature,
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        other.replace(other.rsplit(":", 1)[1], signature.rsplit(":", 1)[1]),
        "nonsense",
    ]

    for bad in forged:
        response = client.post(f"/api/v1/notifications/unsubscribe/{bad}")
        assert response.status_code == 404, bad

    assert not NotificationPreference.objects.exists()


def test_preferences_list_every_kind_and_channel_in_use(api_client, backer):
    body = api_client(backer).get("/api/v1/me/notification-preferences").json()
    pairs = {(p["kind"], p["channel"]) for p in body["preferences"]}
    assert ("creator_update_posted", "in_app") in pairs
    assert ("creator_daily_digest", "email") in pairs
    assert ("creator_daily_digest", "push") not in pairs
