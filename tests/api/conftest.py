"""API fixtures: two projects with members, documents and keys, and a client that calls with a key."""

import uuid
from dataclasses import dataclass, field

import pytest
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
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


@pytest.fixture(params=["memory", "redis"])
def throttle_cache(request, settings):
    """The throttle's counts in the local-memory cache, then in Redis as deployed (the test broker's database,
    under a prefix of this test's own, so clearing it touches nothing else there)."""
    if request.param == "redis":
        prefix = f"test-throttle-{uuid.uuid4().hex}"
        settings.CACHES = {
            "default": {
                "BACKEND": "operations.cache.RedisCache",  # as config/settings.py makes of redis://
                "LOCATION": settings.CELERY_BROKER_URL,
                "KEY_PREFIX": prefix,
            }
        }
        yield request.param
        client = cache._cache.get_client(write=True)
        for name in client.scan_iter(f"{prefix}:*"):
            client.delete(name)
        return
    yield request.param


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


# --- Models ---------------------------------------------------------------------------------------------------

TRAINING_TEXTS = {
    "first_party": [
        "We collect your email address when you register.",
        "We use your location to show nearby stores.",
        "Our app records the pages you visit on our site.",
        "We collect your name and phone number at checkout.",
    ],
    "third_party": [
        "We share your data with advertising partners.",
        "Analytics vendors receive your device identifiers.",
        "We sell aggregated data to marketing companies.",
        "Partners may receive your purchase history.",
    ],
    "data_security": [
        "Your data is encrypted in transit and at rest.",
        "We use firewalls and access controls to protect data.",
        "Passwords are hashed and never stored in clear text.",
        "Security audits are run on our servers every year.",
    ],
}


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory) -> dict:
    """Three small real SetFit models (frozen MiniLM body, fitted heads), trained once for the whole run."""
    from learning.ml.classifier import Classifier, TrainingArgs

    root = tmp_path_factory.mktemp("models")
    labels = list(TRAINING_TEXTS)
    texts = [t for key in labels for t in TRAINING_TEXTS[key]]
    y = [key for key in labels for _ in TRAINING_TEXTS[key]]
    first = Classifier.create(labels, args=TrainingArgs(max_steps=0))
    first.fit(texts, y, fine_tune=False)
    paths = {"v1": first.save(root / "v1")}
    # A second version that differs: a much weaker head, so its probabilities are visibly other.
    second = Classifier.create(labels, args=TrainingArgs(max_steps=0, head_c=0.01))
    second.fit(texts, y, fine_tune=False)
    paths["v2"] = second.save(root / "v2")
    multi = Classifier.create(labels, multi_label=True, args=TrainingArgs(max_steps=0))
    multi.fit(
        texts + ["We encrypt the data we share with partners."],
        [[k] for k in y] + [["third_party", "data_security"]],
        fine_tune=False,
    )
    paths["multi"] = multi.save(root / "multi")
    return paths


@pytest.fixture
def serving_cache(trained_models, monkeypatch):
    """The process's model cache, emptied, loading each artifact from disk once per test session."""
    from learning import serving
    from learning.ml.classifier import Classifier

    def load_once(path):
        if str(path) not in _LOADED_CLASSIFIERS:
            _LOADED_CLASSIFIERS[str(path)] = Classifier.load(path)
        return _LOADED_CLASSIFIERS[str(path)]

    monkeypatch.setattr(serving.models, "_loader", load_once)
    serving.models.clear()
    yield serving.models
    serving.models.clear()


_LOADED_CLASSIFIERS: dict = {}


def add_model_versions(side: Side, trained_models: dict, *, active: str = "v2") -> None:
    """v1 (retired) and v2 (active), both real models; `active` may name v1 to swap the roles."""
    from annotation.models import Taxonomy
    from learning.models import ModelVersion

    taxonomy_version = Taxonomy.objects.get(project=side.project).version
    for number, name in ((1, "v1"), (2, "v2")):
        ModelVersion.objects.create(
            project=side.project,
            number=number,
            status="active" if name == active else "retired",
            kind="fast",
            taxonomy_version=taxonomy_version,
            label_keys=list(TRAINING_TEXTS),
            artifact_path=str(trained_models[name]),
            macro_f1=0.8 + number / 100,
            metrics={"macro_f1": 0.8 + number / 100},
        )


@pytest.fixture
def wsgi_app_in_test_transaction(settings):
    """The real WSGI app, sharing the test's database transaction as Django's own test client does."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_key": "1000000/min"}}
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
