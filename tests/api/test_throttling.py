"""Each key has its own request budget; past it the API answers 429 with Retry-After."""

import pytest
import redis
from django.core.cache import cache
from django.test import override_settings

from api.models import ApiKey
from tests.api.conftest import assert_error, client_with, personal_key

# Every test runs with the counts in the local-memory cache and in Redis (one Lua script per request there).
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("throttle_cache")]

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


@pytest.mark.parametrize("throttle_cache", ["redis"], indirect=True)
def test_a_request_costs_the_throttle_one_redis_round_trip(home, settings, throttle_cache, monkeypatch):
    settings.REST_FRAMEWORK = _rest_framework(settings)
    client = client_with(personal_key(home.admin, [home.project], ["read"]))
    client.get("/api/v1/projects")  # the script is loaded into Redis on first use
    commands = []
    send = redis.Redis.execute_command
    monkeypatch.setattr(
        redis.Redis, "execute_command", lambda self, *args, **kw: commands.append(args[0]) or send(self, *args, **kw)
    )
    response = client.get("/api/v1/projects")
    assert response.status_code == 200 and response["RateLimit-Remaining"] == "1"
    # The invalid-key count of the caller's address (read before the key is looked up), then the throttle's one.
    assert commands == ["GET", "EVALSHA"]


def test_counts_left_by_the_earlier_list_form_do_not_break_a_request(home, settings):
    settings.REST_FRAMEWORK = _rest_framework(settings)
    token = personal_key(home.admin, [home.project], ["read"])
    key = ApiKey.objects.get(prefix=token.split("_")[1])
    cache.set(f"throttle_api_key_key-{key.pk}", [1.0, 2.0], 60)
    assert client_with(token).get("/api/v1/projects").status_code == 200
