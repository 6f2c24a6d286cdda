"""GET /api/v1/projects/<id>/search: the read scope, filters, blind review, cursor pages, the error shape."""

import numpy as np
import pytest

from learning.services import _shard_write
from tests.api.conftest import assert_error, client_with, personal_key
from tests.factories import DocumentFactory

pytestmark = pytest.mark.django_db


def _url(side):
    return f"/api/v1/projects/{side.project.pk}/search"


def test_search_by_words_with_highlighted_snippets(home):
    found = DocumentFactory(project=home.project, text="We sell <b>browsing</b> history to data brokers.")
    client = client_with(personal_key(home.admin, [home.project], scopes=["read"]))
    body = client.get(_url(home), {"words": "broker*"}).json()
    assert [r["id"] for r in body["results"]] == [found.pk]
    assert "<mark>brokers</mark>" in body["results"][0]["snippet"]
    assert "<b>" not in body["results"][0]["snippet"]
    assert set(body) == {"next", "previous", "results"}


def test_search_needs_the_read_scope(home):
    client = client_with(personal_key(home.admin, [home.project], scopes=["predict"]))
    assert_error(client.get(_url(home), {"words": "x"}), 403, "scope_missing")


def test_another_projects_search_is_not_found(home, away):
    client = client_with(personal_key(home.admin, [home.project], scopes=["read"]))
    assert_error(client.get(_url(away), {"words": "x"}), 404, "not_found")


def test_reviewers_may_not_filter_on_others_answers(home):
    client = client_with(personal_key(home.reviewer, [home.project], scopes=["read"]))
    error = assert_error(client.get(_url(home), {"gold": "true"}), 400, "invalid")
    assert "gold" in error["details"]


def test_a_blank_filter_is_refused(home):
    client = client_with(personal_key(home.admin, [home.project], scopes=["read"]))
    assert_error(client.get(_url(home), {"words": ""}), 400, "invalid")


def test_cursor_pages_newest_first_without_repeats(home):
    for n in range(5):
        DocumentFactory(project=home.project, text=f"retention schedule {n}")
    client = client_with(personal_key(home.admin, [home.project], scopes=["read"]))
    seen, url, params = [], _url(home), {"words": "retention", "page_size": 2}
    while url:
        body = client.get(url, params).json()
        seen += [r["id"] for r in body["results"]]
        url, params = body["next"], None
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)


def test_search_by_meaning_pages_by_similarity(home, artifact_dir):
    documents = [DocumentFactory(project=home.project) for _ in range(5)]
    vectors = np.array([[1, 0], [0.9, 0.2], [0.5, 0.5], [0.1, 1], [-1, 0]], dtype=np.float32)
    _shard_write(home.project.pk, "body-a", np.array([d.pk for d in documents]), vectors)
    client = client_with(personal_key(home.admin, [home.project], scopes=["read"]))
    first = client.get(_url(home), {"like": documents[0].pk, "page_size": 2}).json()
    assert [r["id"] for r in first["results"]] == [documents[1].pk, documents[2].pk]
    second = client.get(first["next"]).json()
    assert [r["id"] for r in second["results"]] == [documents[3].pk, documents[4].pk]
    assert second["results"][0]["similarity"] < first["results"][0]["similarity"]


def test_search_by_meaning_before_any_embedding_is_503(home, artifact_dir):
    client = client_with(personal_key(home.admin, [home.project], scopes=["read"]))
    assert_error(client.get(_url(home), {"like": home.queued.pk}), 503, "model_not_ready")


def test_a_cursor_a_search_by_meaning_never_gave_is_400(home, artifact_dir):
    client = client_with(personal_key(home.admin, [home.project], scopes=["read"]))
    assert_error(client.get(_url(home), {"like": home.queued.pk, "cursor": "bm9wZQ=="}), 400, "invalid")
    assert_error(client.get(_url(home), {"like": home.queued.pk, "cursor": "%%%"}), 400, "invalid")
