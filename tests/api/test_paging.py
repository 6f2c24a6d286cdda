"""Every list of the API pages the same way, refuses paging values it cannot honour, and syncs by updated_after."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Annotation, Flag, Membership
from learning.models import ModelVersion, TrainingRun
from tests.api.conftest import assert_error, client_with, personal_key
from tests.factories import AnnotationFactory, DocumentFactory

pytestmark = pytest.mark.django_db

LISTS = ["", "/keys", "/labels", "/models", "/training-runs", "/documents", "/annotations", "/flags"]


@pytest.fixture
def full(home, away):
    """At least two of everything the lists show."""
    Membership.objects.create(project=away.project, user=home.admin, role="admin")
    AnnotationFactory(document=home.queued, reviewer=home.admin, label_list=[home.label])
    for document in (home.labeled, home.queued):
        Flag.objects.create(document=document, reviewer=home.reviewer, comment="Privileged?")
    for number in (1, 2):
        ModelVersion.objects.create(
            project=home.project,
            number=number,
            status="retired",
            kind="fast",
            taxonomy_version=1,
            label_keys=["a"],
            artifact_path=f"/nowhere/{number}",
        )
        TrainingRun.objects.create(project=home.project, kind="fast", trigger="labels", status="succeeded")
    return client_with(personal_key(home.admin, [home.project, away.project]))


def _walk(client, url: str) -> list:
    ids, pages = [], 0
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"next", "previous", "results"}
        ids += [item.get("id", item.get("number")) for item in body["results"]]
        url, pages = body["next"], pages + 1
    return ids, pages


@pytest.mark.parametrize("path", LISTS)
def test_every_list_pages_with_cursors(home, full, path):
    base = "/api/v1/projects" if path == "" else f"/api/v1/projects/{home.project.pk}{path}"
    everything = full.get(base, {"page_size": 500}).json()["results"]
    ids, pages = _walk(full, f"{base}?page_size=1")
    assert len(everything) >= 2 and pages == len(everything)
    assert ids == [item.get("id", item.get("number")) for item in everything] and len(set(ids)) == len(ids)


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("query", ["page_size=-1", "page_size=0", "page_size=501", "page_size=ten", "page_size="])
def test_a_page_size_out_of_range_is_400(home, full, path, query):
    base = "/api/v1/projects" if path == "" else f"/api/v1/projects/{home.project.pk}{path}"
    assert "page_size" in assert_error(full.get(f"{base}?{query}"), 400, "invalid")["details"]


@pytest.mark.parametrize("cursor", ["not-a-cursor", "", "%%%"])
def test_a_bad_cursor_is_400(home, full, cursor):
    response = full.get(f"/api/v1/projects/{home.project.pk}/documents", {"cursor": cursor})
    assert "cursor" in assert_error(response, 400, "invalid")["details"]


def test_next_links_keep_the_scheme_the_proxy_saw(home, full, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    url = f"/api/v1/projects/{home.project.pk}/documents?page_size=1"
    behind_proxy = full.get(url, HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="127.0.0.1").json()
    assert behind_proxy["next"].startswith("https://")
    # From an address that is not a trusted proxy, the header is not believed.
    direct = full.get(url, HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="203.0.113.9").json()
    assert direct["next"].startswith("http://")


def test_documents_updated_after_finds_new_answers(home, full):
    before = timezone.now()
    url = f"/api/v1/projects/{home.project.pk}/documents"
    assert full.get(url, {"updated_after": before.isoformat()}).json()["results"] == []
    annotation = Annotation.objects.get(document=home.labeled)
    annotation.save(update_fields=["updated_at"])  # an edited answer
    changed = full.get(url, {"updated_after": before.isoformat()}).json()["results"]
    assert [d["id"] for d in changed] == [home.labeled.pk]
    assert changed[0]["updated_at"] > before.isoformat().replace("+00:00", "Z")


def test_training_runs_updated_after_finds_progress(home, full):
    url = f"/api/v1/projects/{home.project.pk}/training-runs"
    run = TrainingRun.objects.filter(project=home.project).first()
    later = timezone.now() + timedelta(minutes=5)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=later + timedelta(seconds=1))
    changed = full.get(url, {"updated_after": later.isoformat()}).json()["results"]
    assert [r["id"] for r in changed] == [run.pk]


def test_datetimes_have_one_format(home, full):
    run = full.get(f"/api/v1/projects/{home.project.pk}/training-runs").json()["results"][0]
    document = full.get(f"/api/v1/projects/{home.project.pk}/documents").json()["results"][0]
    for value in (run["created_at"], run["updated_at"], document["created_at"], document["updated_at"]):
        assert value.endswith("Z") and "+00:00" not in value


def test_a_read_only_field_is_400_and_changes_nothing(home, full):
    url = f"/api/v1/projects/{home.project.pk}/labels/{home.label.pk}"
    error = assert_error(full.patch(url, {"key": "renamed"}, format="json"), 400, "invalid")
    assert "read-only" in error["details"]["key"][0]
    home.label.refresh_from_db()
    assert home.label.key != "renamed"
    project = f"/api/v1/projects/{home.project.pk}"
    assert (
        "read-only"
        in assert_error(full.patch(project, {"multi_label": True}, format="json"), 400)["details"]["multi_label"][0]
    )
    assert "Unknown" in assert_error(full.patch(url, {"colour": "#ffffff"}, format="json"), 400)["details"]["colour"][0]


def test_documents_updated_after_sees_a_new_document(home, full):
    before = timezone.now()
    new = DocumentFactory(project=home.project)
    url = f"/api/v1/projects/{home.project.pk}/documents"
    assert [d["id"] for d in full.get(url, {"updated_after": before.isoformat()}).json()["results"]] == [new.pk]
