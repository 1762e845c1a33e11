import pytest
from django.core.cache import cache
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from tests.factories import CampaignFactory, UserFactory


@pytest.fixture(autouse=True)
def _fresh_throttles_and_fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()  # throttle counters live in the cache; each test starts with none
    yield
    cache.clear()


@pytest.fixture
def backer(db):
    return UserFactory(email="backer@example.com", display_name="Bea Backer")


@pytest.fixture
def creator(db):
    return UserFactory(email="creator@example.com", display_name="Cai Creator")


@pytest.fixture
def outsider(db):
    return UserFactory(email="outsider@example.com", display_name="Otto Outsider")


@pytest.fixture
def api_client():
    """api_client(user) is a client sending `user`'s JWT access token; api_client() is anonymous."""

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
        return client

    return make


@pytest.fixture
def live_campaign(creator):
    return CampaignFactory(creator=creator, live=True, currency="EUR", goal_amount="1000.00")


@pytest.fixture
def draft_campaign(creator):
    return CampaignFactory(creator=creator)
