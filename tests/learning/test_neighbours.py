"""Nearest documents by meaning: the held matrix, its invalidation, the worker-built approximate index."""

import numpy as np
import pytest

from learning.models import ModelVersion
from learning.services import _shard_write, neighbours
from tests.factories import DocumentFactory

pytestmark = pytest.mark.django_db


def _store(project, body_id, documents, vectors):
    ids = np.array([d.pk for d in documents], dtype=np.int64)
    return _shard_write(project.pk, body_id, ids, np.asarray(vectors, dtype=np.float32))


@pytest.fixture
def documents(project):
    return DocumentFactory.create_batch(4, project=project)


def test_more_like_this_ranks_by_cosine_similarity(project, documents, artifact_dir):
    _store(project, "body-a", documents, [[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [-1, 0, 0]])
    found = neighbours.nearest_to_document(project=project, document_id=documents[0].pk, k=4)
    assert [pk for pk, _ in found] == [d.pk for d in documents]
    assert found[0][1] == pytest.approx(1.0) and found[-1][1] == pytest.approx(-1.0)


def test_a_document_without_an_embedding_says_so(project, documents, artifact_dir):
    _store(project, "body-a", documents[:2], [[1, 0], [0, 1]])
    with pytest.raises(neighbours.NoEmbeddings):
        neighbours.nearest_to_document(project=project, document_id=documents[3].pk, k=2)


def test_new_shards_are_searched_at_once(project, documents, artifact_dir):
    _store(project, "body-a", documents[:2], [[1, 0], [0, 1]])
    assert len(neighbours.nearest_to_vector(project, np.array([1, 0]), k=10)) == 2
    _store(project, "body-a", documents[2:], [[0.7, 0.7], [1, 0.1]])
    assert len(neighbours.nearest_to_vector(project, np.array([1, 0]), k=10)) == 4


def test_a_new_serving_body_replaces_the_held_matrix(project, documents, artifact_dir):
    _store(project, "body-a", documents, [[1, 0], [0, 1], [0, 1], [0, 1]])
    assert neighbours.nearest_to_vector(project, np.array([1, 0]), k=1)[0][0] == documents[0].pk
    _store(project, "body-b", documents, [[0, 1], [0, 1], [0, 1], [1, 0]])
    ModelVersion.objects.create(
        project=project,
        number=1,
        status=ModelVersion.Status.ACTIVE,
        kind="slow",
        taxonomy_version=1,
        body_id="body-b",
        artifact_path="models/x",
    )
    held = neighbours.held_matrix(project)
    assert held.body_id == "body-b"
    assert neighbours.nearest_to_vector(project, np.array([1, 0]), k=1)[0][0] == documents[3].pk


def test_no_embeddings_yet(project):
    with pytest.raises(neighbours.NoEmbeddings):
        neighbours.held_matrix(project)


def test_large_projects_search_exactly_until_the_worker_built_their_index(project, artifact_dir, settings):
    settings.DOCKET_ANN_MIN_DOCUMENTS = 200
    rng = np.random.default_rng(3)
    documents = [DocumentFactory(project=project) for _ in range(400)]
    vectors = rng.normal(size=(400, 16)).astype(np.float32)
    _store(project, "body-a", documents, vectors)
    queries = rng.normal(size=(20, 16)).astype(np.float32)
    exact = [neighbours.nearest_to_vector(project, q, k=10) for q in queries]
    held = neighbours.held_matrix(project)
    path = neighbours.ann_index_path(project.pk, "body-a")
    assert not path.exists()  # searching never builds it

    assert neighbours.ann_index_build(project_id=project.pk)["built"]
    assert neighbours.ann_index_build(project_id=project.pk) == {
        "project": project.pk,
        "built": False,
        "reason": "up to date",
    }
    approximate = [neighbours.nearest_to_vector(project, q, k=10) for q in queries]
    assert neighbours._indexes[project.pk][0] == held.fingerprint  # the index answered
    hits = [len({a for a, _ in x} & {e for e, _ in y}) / 10 for x, y in zip(approximate, exact, strict=True)]
    assert np.mean(hits) >= 0.95


def test_an_index_for_other_shards_is_not_used(project, artifact_dir, settings):
    settings.DOCKET_ANN_MIN_DOCUMENTS = 50
    rng = np.random.default_rng(4)
    documents = [DocumentFactory(project=project) for _ in range(120)]
    _store(project, "body-a", documents[:60], rng.normal(size=(60, 8)))
    neighbours.ann_index_build(project_id=project.pk)
    _store(project, "body-a", documents[60:], rng.normal(size=(60, 8)))
    found = neighbours.nearest_to_vector(project, rng.normal(size=8), k=120)
    assert len(found) == 120  # exact over all 120, not the index of the first 60
