"""The approximate index of a large project is built by a real worker, then answers searches in this process."""

import os

import numpy as np
import pytest

from learning import tasks
from learning.services import _shard_write, neighbours
from tests.factories import DocumentFactory, project_with_labels
from tests.learning.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

THRESHOLD = "200"


@pytest.fixture(scope="module")
def worker_with_small_threshold(request):
    """A worker that counts a project of 200 embedded documents as large (the setting comes from its environment)."""
    before = os.environ.get("DOCKET_ANN_MIN_DOCUMENTS")
    os.environ["DOCKET_ANN_MIN_DOCUMENTS"] = THRESHOLD
    try:
        yield request.getfixturevalue("celery_worker_process")
    finally:
        if before is None:
            os.environ.pop("DOCKET_ANN_MIN_DOCUMENTS", None)
        else:
            os.environ["DOCKET_ANN_MIN_DOCUMENTS"] = before


def test_the_worker_builds_the_index_and_searches_use_it(worker_with_small_threshold, settings):
    settings.DOCKET_ANN_MIN_DOCUMENTS = int(THRESHOLD)
    project = project_with_labels()
    documents = [DocumentFactory(project=project) for _ in range(300)]
    rng = np.random.default_rng(5)
    _shard_write(project.pk, "body-w", np.array([d.pk for d in documents]), rng.normal(size=(300, 24)))

    assert neighbours.ann_index_request(project.pk)
    path = neighbours.ann_index_path(project.pk, "body-w")
    wait_for(lambda: path.with_suffix(".fingerprint").exists(), timeout=180, what="the worker's index")

    query = rng.normal(size=24)
    held = neighbours.held_matrix(project)
    found = neighbours.nearest_to_vector(project, query, k=10)
    assert neighbours._indexes[project.pk][0] == held.fingerprint
    rows, _ = neighbours.exact_top_k(held.unit, neighbours.unit_rows(query.reshape(1, -1))[0], 10)
    truth = {int(held.ids[r]) for r in rows}
    assert len(truth & {pk for pk, _ in found}) >= 9


def test_a_small_project_asks_for_no_index(worker_with_small_threshold, settings):
    settings.DOCKET_ANN_MIN_DOCUMENTS = int(THRESHOLD)
    project = project_with_labels()
    documents = [DocumentFactory(project=project) for _ in range(20)]
    _shard_write(project.pk, "body-s", np.array([d.pk for d in documents]), np.ones((20, 4)))
    assert not neighbours.ann_index_request(project.pk)
    assert tasks.build_neighbour_index.delay(project.pk).get(timeout=180)["built"] is False
