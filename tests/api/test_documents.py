"""Documents and annotations over the API: bulk create with per-item outcomes, filters, cursor pages."""

import pytest

from annotation.models import Annotation, Document
from tests.api.conftest import client_with, personal_key, service_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(home):
    return client_with(personal_key(home.admin, [home.project]))


def test_bulk_create_reports_each_item(home, admin_client):
    response = admin_client.post(
        f"/api/v1/projects/{home.project.pk}/documents",
        {
            "documents": [
                {"text": "We keep logs for 90 days.", "external_id": "p-1", "metadata": {"source": "policy"}},
                {"text": home.queued.text},
                {"text": "We keep logs for 90 days."},
                {"text": "x" * 30_000},
                {"text": "Labeled on arrival.", "labels": [home.label.key]},
            ]
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["created", "duplicate", "duplicate", "rejected", "created"]
    assert body["results"][1]["id"] == home.queued.pk
    assert "characters" in body["results"][3]["reason"]
    assert (body["created"], body["duplicates"], body["rejected"]) == (2, 2, 1)
    assert Document.objects.get(external_id="p-1").metadata == {"source": "policy"}
    labeled = Document.objects.get(pk=body["results"][4]["id"])
    assert labeled.status == "labeled"


def test_bulk_create_with_nothing_usable_reports_each_reason(home, admin_client):
    response = admin_client.post(
        f"/api/v1/projects/{home.project.pk}/documents", {"documents": [{"text": "x" * 30_000}]}, format="json"
    )
    assert response.status_code == 201
    assert [r["status"] for r in response.json()["results"]] == ["rejected"]
    assert "characters" in response.json()["results"][0]["reason"]


def test_documents_filter_by_status_and_label(home, admin_client):
    url = f"/api/v1/projects/{home.project.pk}/documents"
    queued = admin_client.get(url, {"status": "queued"}).json()["results"]
    assert [d["id"] for d in queued] == [home.queued.pk]
    label_key = home.labeled.annotations.get().labels.get().key
    labeled = admin_client.get(url, {"label": label_key}).json()["results"]
    assert [d["id"] for d in labeled] == [home.labeled.pk]
    assert labeled[0]["labels"] == [label_key]


def test_documents_are_cursor_paginated(home, admin_client):
    admin_client.post(
        f"/api/v1/projects/{home.project.pk}/documents",
        {"documents": [{"text": f"clause number {i}"} for i in range(5)]},
        format="json",
    )
    seen, url = [], f"/api/v1/projects/{home.project.pk}/documents?page_size=3"
    while url:
        page = admin_client.get(url).json()
        seen += [d["id"] for d in page["results"]]
        url = page["next"]
    assert len(seen) == 7 and seen == sorted(seen)


def test_annotation_from_automation_is_stored_with_source_api_and_replays(home):
    client = client_with(service_key(home.admin, [home.project], role="reviewer"))
    body = {
        "document": home.queued.pk,
        "labels": [home.label.key],
        "submission_id": "5f0c8a4e-2b7e-4f7e-9b1c-1d2e3f4a5b6c",
    }
    first = client.post(f"/api/v1/projects/{home.project.pk}/annotations", body, format="json")
    again = client.post(f"/api/v1/projects/{home.project.pk}/annotations", body, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    annotation = Annotation.objects.get(pk=first.json()["id"])
    assert annotation.source == "api"
    assert annotation.reviewer.username.startswith("svc-")
    home.queued.refresh_from_db()
    assert home.queued.status == "labeled"


def test_export_streams_jsonl(home, admin_client):
    response = admin_client.get(f"/api/v1/projects/{home.project.pk}/annotations/export")
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    assert len(lines) == 2
