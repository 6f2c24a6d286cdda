"""Sign-in protection (finding 4): repeated failures lock a username and address out; invalid keys get 429."""

import pytest
from axes.models import AccessAttempt
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from annotation.models import AuditEvent
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counts():
    cache.clear()
    yield
    cache.clear()


def _sign_in(username: str, password: str, address: str = "10.0.0.7", path: str = "/accounts/login/"):
    client = Client(REMOTE_ADDR=address)
    response = client.post(path, {"username": username, "password": password})
    return client, response


def test_repeated_failures_lock_the_username_from_that_address_with_a_clear_message(settings):
    person = UserFactory(username="dana")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _, response = _sign_in("dana", "wrong-guess")
        assert response.status_code == 200  # the form again, with its error
    _, response = _sign_in("dana", "wrong-guess")
    assert response.status_code == 429
    # Even the right password is refused now, with a message that says why and for how long.
    client, response = _sign_in("dana", PASSWORD)
    page = response.content.decode()
    assert response.status_code == 429 and "_auth_user_id" not in client.session
    assert "Sign-in locked for 15 minutes" in page and "dana" in page
    assert int(response["Retry-After"]) == 15 * 60
    assert AuditEvent.objects.filter(action="sign_in.locked_out", actor_label="dana").exists()
    # Another address is not locked out for this username; the lock is on the pair.
    other, _ = _sign_in("dana", PASSWORD, address="10.0.0.8")
    assert other.session["_auth_user_id"] == str(person.pk)


def test_the_django_admin_sign_in_is_protected_too(settings):
    UserFactory(username="root", is_staff=True, is_superuser=True)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _sign_in("root", "wrong-guess", path="/admin/login/")
    client, response = _sign_in("root", PASSWORD, path="/admin/login/")
    assert response.status_code == 429 and "_auth_user_id" not in client.session


def test_a_superuser_unlocks_an_account_in_the_django_admin(settings):
    UserFactory(username="dana")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _sign_in("dana", "wrong-guess")
    attempt = AccessAttempt.objects.get(username="dana")
    superuser = UserFactory(username="office-admin", is_staff=True, is_superuser=True)
    admin = Client()
    admin.force_login(superuser)
    listing = admin.get(reverse("admin:axes_accessattempt_changelist")).content.decode()
    assert "dana" in listing
    admin.post(reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"})
    client, response = _sign_in("dana", PASSWORD)
    assert response.status_code == 302 and "_auth_user_id" in client.session


def test_a_successful_sign_in_resets_the_count(settings):
    UserFactory(username="dana")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _sign_in("dana", "wrong-guess")
    _sign_in("dana", PASSWORD)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _, response = _sign_in("dana", "wrong-guess")
    assert response.status_code == 200


def test_invalid_api_keys_are_throttled_with_retry_after(settings):
    # The review sent 700 invalid keys and got 700 answers of 401.
    settings.DOCKET_API_KEY_FAILURES = "20/min"
    client = Client(REMOTE_ADDR="10.0.0.9", HTTP_AUTHORIZATION="Bearer dk_0000aaaa_not-a-real-secret")
    statuses = [client.get("/api/v1/projects").status_code for _ in range(25)]
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}
    response = client.get("/api/v1/projects")
    assert response.status_code == 429 and 0 < int(response["Retry-After"]) <= 60
    assert response.json()["error"]["code"] == "throttled"
    # Another address is not held up by it.
    elsewhere = Client(REMOTE_ADDR="10.0.0.10", HTTP_AUTHORIZATION="Bearer dk_0000aaaa_not-a-real-secret")
    assert elsewhere.get("/api/v1/projects").status_code == 401
