"""API fixtures: two projects with members, documents and keys, and a client that calls with a key."""

from dataclasses import dataclass, field

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from annotation.models import Label
from api import services
from tests.factories import AnnotationFactory, DocumentFactory, MembershipFactory, UserFactory, project_with_labels


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Factories hash a password for every user; the production hasher would dominate these tests' time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()
    yield
    cache.clear()


@dataclass
class Side:
    """One project with an admin, a reviewer, a labeled and a queued document, and an admin's key."""

    project: object
    admin: object
    reviewer: object
    labeled: object
    queued: object
    label: object
    extra: dict = field(default_factory=dict)


def build_side(name: str, *, multi_label: bool = False) -> Side:
    project = project_with_labels(multi_label=multi_label, name=name)
    admin, reviewer = UserFactory(), UserFactory()
    MembershipFactory(project=project, user=admin, role="admin")
    MembershipFactory(project=project, user=reviewer, role="reviewer")
    labels = list(Label.objects.filter(taxonomy__project=project).order_by("order"))
    labeled = DocumentFactory(project=project, status="labeled")
    AnnotationFactory(document=labeled, reviewer=reviewer, label_list=[labels[0]])
    queued = DocumentFactory(project=project)
    spare_key = services.api_key_create(
        actor=admin, projects=[project], name="spare", scopes=["predict"], kind="personal"
    ).key
    return Side(
        project=project,
        admin=admin,
        reviewer=reviewer,
        labeled=labeled,
        queued=queued,
        label=labels[1],
        extra={"key": spare_key},
    )


@pytest.fixture
def home(db):
    return build_side("Home project")


@pytest.fixture
def away(db):
    return build_side("Away project")


ALL = ("predict", "read", "write", "admin")
_counter = iter(range(1, 1_000_000))


def personal_key(admin, projects, scopes=ALL, **kwargs) -> str:
    """A project admin's own token."""
    return services.api_key_create(
        actor=admin, projects=projects, name="personal", scopes=scopes, kind="personal", **kwargs
    ).token


def service_key(issuer, projects, scopes=ALL, role="reviewer", **kwargs) -> str:
    """A key for a new service account that joins the projects with `role`."""
    n = next(_counter)
    return services.api_key_create(
        actor=issuer,
        projects=projects,
        name=f"automation-{n}",
        scopes=scopes,
        kind="service",
        role=role,
        **kwargs,
    ).token


def client_with(token: str | None = None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]
