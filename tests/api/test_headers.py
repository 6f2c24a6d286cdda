"""Headers every API answer carries: the request id, the caller's rate limit, and Retry-After where waiting helps."""

import pytest

from tests.api.conftest import assert_error, client_with, personal_key

pytestmark = pytest.mark.django_db


@pytest.mark.usefixtures("throttle_cache")
def test_a_success_says_the_rate_limit_left(home, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "5/min"}}
    client = client_with(personal_key(home.admin, [home.project]))
    first = client.get(f"/api/v1/projects/{home.project.pk}")
    second = client.get(f"/api/v1/projects/{home.project.pk}")
    assert (first["RateLimit-Limit"], first["RateLimit-Remaining"]) == ("5", "4")
    assert second["RateLimit-Remaining"] == "3"
    assert 1 <= int(second["RateLimit-Reset"]) <= 60


@pytest.mark.usefixtures("throttle_cache")
def test_a_throttled_answer_has_no_budget_left_and_says_when(home, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "1/min"}}
    client = client_with(personal_key(home.admin, [home.project]))
    client.get("/api/v1/projects")
    throttled = client.get("/api/v1/projects")
    assert throttled.status_code == 429
    assert throttled["RateLimit-Remaining"] == "0"
    assert int(throttled["Retry-After"]) >= 1 and throttled["RateLimit-Reset"] == throttled["Retry-After"]


@pytest.mark.usefixtures("throttle_cache")
def test_errors_before_the_throttle_carry_the_headers_too(home):
    response = client_with("dk_00000000_nope").get("/api/v1/projects")
    assert response.status_code == 401
    assert response.has_header("RateLimit-Limit") and response.has_header("RateLimit-Remaining")
    assert response.has_header("X-Request-ID")


def test_the_request_id_is_echoed_or_made(home):
    client = client_with(personal_key(home.admin, [home.project]))
    assert client.get("/api/v1/projects", HTTP_X_REQUEST_ID="tracker-42")["X-Request-ID"] == "tracker-42"
    assert len(client.get("/api/v1/projects")["X-Request-ID"]) == 32
    assert client.delete("/api/v1/projects")["X-Request-ID"]  # a 405 too


def test_no_model_yet_is_503_with_retry_after(home, serving_cache):
    client = client_with(personal_key(home.admin, [home.project]))
    response = client.post(f"/api/v1/projects/{home.project.pk}/predict", {"texts": ["x"]}, format="json")
    error = assert_error(response, 503, "model_not_ready")
    assert int(response["Retry-After"]) == error["details"]["retry_after_seconds"] > 0


@pytest.mark.usefixtures("throttle_cache")
def test_a_rate_lowered_below_the_requests_made_still_says_when_to_retry(home, settings):
    client = client_with(personal_key(home.admin, [home.project]))
    for _ in range(4):
        client.get("/api/v1/projects")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "2/min"}}
    throttled = client.get("/api/v1/projects")
    error = assert_error(throttled, 429, "throttled")
    assert int(throttled["Retry-After"]) == error["details"]["retry_after_seconds"] >= 1


def test_a_path_no_operation_matches_has_the_headers_too(home):
    response = client_with(personal_key(home.admin, [home.project])).get("/api/v1/projects/-3/models")
    assert_error(response, 404, "not_found")
    assert response.has_header("RateLimit-Limit") and response.has_header("X-Request-ID")
