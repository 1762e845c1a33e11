"""Property-based run of the whole API against its own OpenAPI schema (schemathesis): whatever
the generated request (valid or not), no 5xx, and every response matches what the schema says.
Deterministic (derandomized) and bounded, so it runs in CI in seconds."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from tests.factories import CampaignFactory, PledgeFactory, RewardFactory

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# The schema is built from the code alone (no database), so it is loaded once, at collection.
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture
def _keep_the_test_connection():
    """Requests go through the real WSGI handler; like Django's test client, keep it from closing
    the test's database connection (and its transaction) at the end of every request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def scene(backer, creator):
    """Some of everything, so that reads return real objects and not only empty lists."""
    campaign = CampaignFactory(creator=creator, live=True)
    RewardFactory(campaign=campaign, quantity=3)
    PledgeFactory(backer=backer, campaign=campaign)
    CampaignFactory(creator=backer)  # a draft of the caller's own


@schema.parametrize()
@pytest.mark.usefixtures("_keep_the_test_connection", "scene")
@settings(max_examples=15, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_answers_every_request_as_its_schema_says(case, backer):
    token = RefreshToken.for_user(backer).access_token
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
