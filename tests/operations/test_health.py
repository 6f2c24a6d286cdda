"""/healthz and /readyz: cheap, no login, and /readyz says which dependency is missing."""

import logging

import pytest

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_checks_database_cache_broker_and_models(client, settings):
    settings.DOCKET_WARM_MODELS = False  # no model loading in the test process; the served test covers it
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert set(body["checks"]) == {"database", "cache", "broker", "models"}
    assert all(check["ok"] for check in body["checks"].values())


def test_readyz_is_503_and_names_the_cache_when_the_cache_loses_what_it_stored(client, settings):
    settings.DOCKET_WARM_MODELS = False
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["cache"]["ok"] is False and body["checks"]["database"]["ok"] is True


def test_each_response_carries_a_request_id_that_the_access_log_repeats(client, caplog):
    with caplog.at_level(logging.INFO, logger="docket.access"):
        response = client.get("/accounts/login/", HTTP_X_REQUEST_ID="probe-42")
    assert response["X-Request-ID"] == "probe-42"
    lines = [r for r in caplog.records if r.name == "docket.access"]
    assert lines and lines[-1].request_id == "probe-42" and lines[-1].status == 200
    assert '"GET /accounts/login/" 200' in lines[-1].getMessage()


def test_a_request_id_that_is_not_sane_is_replaced(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="x" * 500)
    assert response["X-Request-ID"] != "x" * 500 and len(response["X-Request-ID"]) == 32


def test_forwarded_proto_is_believed_only_from_a_trusted_proxy(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.DOCKET_TRUSTED_PROXIES = ["10.0.0.5"]
    trusted = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="10.0.0.5")
    assert trusted.status_code == 200
    from django.test import Client

    spoofed = Client().get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="203.0.113.9")
    assert spoofed.status_code == 301 and spoofed["Location"].startswith("https://")
