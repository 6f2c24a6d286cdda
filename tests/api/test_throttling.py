"""Each key has its own request budget; past it the API answers 429 with Retry-After."""

import pytest
from django.test import override_settings

from tests.api.conftest import assert_error, client_with, personal_key

pytestmark = pytest.mark.django_db

LOW_RATE = {
    "DEFAULT_THROTTLE_RATES": {"api_key": "3/min"},
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["api.auth.ApiKeyRateThrottle"],
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
}


def _rest_framework(settings_module) -> dict:
    return {**settings_module.REST_FRAMEWORK, **LOW_RATE}


def test_a_key_over_its_rate_gets_429_with_retry_after(home, settings):
    settings.REST_FRAMEWORK = _rest_framework(settings)
    client = client_with(personal_key(home.admin, [home.project], ["read"]))
    for _ in range(3):
        assert client.get("/api/v1/projects").status_code == 200
    response = client.get("/api/v1/projects")
    error = assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
    assert error["details"]["retry_after_seconds"] > 0


def test_budgets_are_per_key(home, settings):
    settings.REST_FRAMEWORK = _rest_framework(settings)
    first = client_with(personal_key(home.admin, [home.project], ["read"]))
    second = client_with(personal_key(home.admin, [home.project], ["read"]))
    for _ in range(3):
        first.get("/api/v1/projects")
    assert first.get("/api/v1/projects").status_code == 429
    assert second.get("/api/v1/projects").status_code == 200


@override_settings()
def test_rate_is_configurable(home, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "1/hour"}}
    client = client_with(personal_key(home.admin, [home.project], ["read"]))
    assert client.get("/api/v1/projects").status_code == 200
    assert client.get("/api/v1/projects").status_code == 429
