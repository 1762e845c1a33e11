"""Whatever a client sends, the answer is the error format, never a 500."""

import pytest

from crowdfund.common.api import flatten_field_errors
from tests.factories import CampaignFactory

pytestmark = pytest.mark.django_db


def test_malformed_json_is_a_parse_error(api_client, backer):
    response = api_client(backer).post("/api/v1/campaigns", '{"title": ', content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"code": "parse_error", "detail": response.json()["detail"], "fields": {}}


def test_json_that_is_not_an_object_is_a_validation_error(api_client, backer):
    response = api_client(backer).post("/api/v1/campaigns", "[1, 2]", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert "non_field_errors" in response.json()["fields"]


def test_a_body_that_is_not_json_is_refused(api_client, backer):
    response = api_client(backer).post("/api/v1/campaigns", "title=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_wrong_types_are_field_errors(api_client, backer):
    body = {"title": ["x"], "goal_amount": {"a": 1}, "currency": 5, "deadline": 12}
    response = api_client(backer).post("/api/v1/campaigns", body)
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"title", "goal_amount", "currency", "deadline"}


def test_a_nul_character_is_refused_not_sent_to_postgres(api_client, backer):
    response = api_client(backer).post("/api/v1/me/devices", {"platform": "ios", "token": "a\x00b"})
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["token"]


def test_a_huge_creator_id_filter_is_refused(api_client):
    response = api_client().get("/api/v1/campaigns", {"creator": "9" * 40})
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["creator"]


def test_a_huge_page_number_is_not_found(api_client):
    CampaignFactory(live=True)
    assert api_client().get("/api/v1/campaigns", {"page": "9" * 40}).status_code == 404


def test_an_id_that_is_not_a_uuid_is_not_found_in_the_error_format(api_client):
    response = api_client().get("/api/v1/campaigns/not-a-uuid")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "detail": "Not found.", "fields": {}}


def test_an_unknown_id_is_not_found(api_client, backer):
    response = api_client(backer).get("/api/v1/pledges/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.json()["code"] == "pledge_not_found"


def test_a_method_the_endpoint_does_not_have_is_refused(api_client, backer):
    response = api_client(backer).delete("/api/v1/me")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_nested_field_errors_are_keyed_by_dotted_paths():
    detail = {"amount": ["Too small."], "items": [{}, {"sku": ["Unknown."]}], "payment": {"currency": ["Bad."]}}
    assert flatten_field_errors(detail) == {
        "amount": ["Too small."],
        "items.1.sku": ["Unknown."],
        "payment.currency": ["Bad."],
    }
