import pytest
from rest_framework_simplejwt.tokens import RefreshToken

from crowdfund.accounts.models import Device, NotificationPreference, User
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_it_registers_a_user(api_client):
    response = api_client().post(
        "/api/v1/auth/register",
        {"email": "New@Example.com", "password": "a-long-enough-password", "display_name": "Nia"},
        format="json",
    )
    assert response.status_code == 201
    user = User.objects.get()
    assert response.json() == {"id": user.id, "email": "new@example.com", "display_name": "Nia"}
    assert user.check_password("a-long-enough-password")


def test_it_refuses_an_email_already_registered_whatever_its_case(api_client, backer):
    response = api_client().post(
        "/api/v1/auth/register", {"email": "BACKER@example.com", "password": "a-long-enough-password"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "email_taken"
    assert list(response.json()["fields"]) == ["email"]
    assert User.objects.count() == 1


def test_it_refuses_a_weak_password(api_client):
    response = api_client().post("/api/v1/auth/register", {"email": "a@example.com", "password": "123"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "weak_password"
    assert response.json()["fields"]["password"]
    assert not User.objects.exists()


def test_it_lists_every_invalid_registration_field(api_client):
    response = api_client().post("/api/v1/auth/register", {"email": "not-an-email"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert set(body["fields"]) == {"email", "password"}
    assert not User.objects.exists()


def test_it_throttles_registration(api_client, settings):
    client = api_client()
    statuses = [
        client.post("/api/v1/auth/register", {"email": f"u{i}@example.com", "password": "x"}, format="json").status_code
        for i in range(21)
    ]
    assert statuses[:20] == [400] * 20
    assert statuses[20] == 429


def test_it_gives_tokens_for_the_right_password(api_client, backer):
    response = api_client().post("/api/v1/auth/token", {"email": "Backer@Example.com", "password": PASSWORD})
    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}
    me = api_client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert me.json()["email"] == "backer@example.com"


def test_it_refuses_tokens_for_a_wrong_password(api_client, backer):
    response = api_client().post("/api/v1/auth/token", {"email": backer.email, "password": "wrong"}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "no_active_account"
    assert set(response.json()) == {"code", "detail", "fields"}


def test_it_throttles_password_guessing(api_client, backer):
    client = api_client()
    statuses = [
        client.post("/api/v1/auth/token", {"email": backer.email, "password": f"guess{i}"}).status_code
        for i in range(21)
    ]
    assert statuses[:20] == [401] * 20
    assert statuses[20] == 429
    assert client.post("/api/v1/auth/token", {"email": backer.email, "password": PASSWORD}).json()["code"] == (
        "throttled"
    )


def test_it_refreshes_an_access_token(api_client, backer):
    refresh = RefreshToken.for_user(backer)
    response = api_client().post("/api/v1/auth/token/refresh", {"refresh": str(refresh)}, format="json")
    assert response.status_code == 200
    assert "access" in response.json()


def test_it_refuses_to_refresh_a_bad_token(api_client):
    response = api_client().post("/api/v1/auth/token/refresh", {"refresh": "garbage"}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_me_shows_the_callers_profile(api_client, backer):
    response = api_client(backer).get("/api/v1/me")
    assert response.status_code == 200
    assert response.json()["email"] == backer.email
    assert response.json()["display_name"] == "Bea Backer"


def test_me_needs_authentication(api_client):
    response = api_client().get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_me_refuses_a_garbled_token(api_client):
    response = api_client().get("/api/v1/me", HTTP_AUTHORIZATION="Bearer not.a.token")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_it_registers_a_device(api_client, backer):
    response = api_client(backer).post("/api/v1/me/devices", {"platform": "ios", "token": "apns-1"}, format="json")
    assert response.status_code == 201
    assert response.json()["platform"] == "ios"
    device = Device.objects.get()
    assert (device.user, device.token) == (backer, "apns-1")


def test_a_device_token_registered_again_moves_to_the_new_user(api_client, backer, outsider):
    api_client(backer).post("/api/v1/me/devices", {"platform": "android", "token": "fcm-1"}, format="json")
    response = api_client(outsider).post("/api/v1/me/devices", {"platform": "android", "token": "fcm-1"})
    assert response.status_code == 201
    assert Device.objects.get().user == outsider


def test_a_deactivated_token_registered_again_by_the_app_is_used_again(api_client, backer):
    from crowdfund.accounts.services import devices_deactivate

    api_client(backer).post("/api/v1/me/devices", {"platform": "ios", "token": "apns-2"}, format="json")
    assert devices_deactivate(tokens=["apns-2"]) == 1
    assert not Device.objects.active().exists()

    response = api_client(backer).post("/api/v1/me/devices", {"platform": "ios", "token": "apns-2"}, format="json")

    assert response.status_code == 201
    device = Device.objects.get()
    assert device.is_active is True
    assert device.deactivated_at is None


def test_it_refuses_an_unknown_platform(api_client, backer):
    response = api_client(backer).post("/api/v1/me/devices", {"platform": "palm", "token": "t"}, format="json")
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["platform"]
    assert not Device.objects.exists()


def test_devices_need_authentication(api_client):
    response = api_client().post("/api/v1/me/devices", {"platform": "ios", "token": "t"}, format="json")
    assert response.status_code == 401
    assert not Device.objects.exists()


def test_notification_preferences_are_all_on_by_default(api_client, backer):
    response = api_client(backer).get("/api/v1/me/notification-preferences")
    assert response.status_code == 200
    preferences = response.json()["preferences"]
    assert len(preferences) == 23  # each kind on the channels it goes out on
    assert all(p["enabled"] for p in preferences)


def test_it_turns_one_notification_preference_off(api_client, backer, outsider):
    body = {"preferences": [{"kind": "creator_update_posted", "channel": "email", "enabled": False}]}
    response = api_client(backer).put("/api/v1/me/notification-preferences", body, format="json")
    assert response.status_code == 200
    off = [(p["kind"], p["channel"]) for p in response.json()["preferences"] if not p["enabled"]]
    assert off == [("creator_update_posted", "email")]
    preference = NotificationPreference.objects.get(user=backer, kind="creator_update_posted", channel="email")
    assert preference.enabled is False
    outsiders = api_client(outsider).get("/api/v1/me/notification-preferences").json()["preferences"]
    assert all(p["enabled"] for p in outsiders)


def test_the_last_of_repeated_notification_preferences_wins(api_client, backer):
    body = {
        "preferences": [
            {"kind": "pledge_receipt", "channel": "push", "enabled": False},
            {"kind": "pledge_receipt", "channel": "push", "enabled": True},
        ]
    }
    response = api_client(backer).put("/api/v1/me/notification-preferences", body, format="json")
    assert response.status_code == 200
    assert NotificationPreference.objects.get().enabled is True


def test_it_refuses_an_unknown_notification_kind(api_client, backer):
    body = {"preferences": [{"kind": "spam", "channel": "push", "enabled": False}]}
    response = api_client(backer).put("/api/v1/me/notification-preferences", body, format="json")
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["preferences.0.kind"]
    assert not NotificationPreference.objects.exists()


def test_notification_preferences_need_authentication(api_client):
    assert api_client().get("/api/v1/me/notification-preferences").status_code == 401
    assert api_client().put("/api/v1/me/notification-preferences", {"preferences": []}).status_code == 401


def test_a_user_made_by_the_factory_can_sign_in(api_client):
    user = UserFactory()
    assert api_client().post("/api/v1/auth/token", {"email": user.email, "password": PASSWORD}).status_code == 200
