"""Re-embedding in shards: a shard another worker holds is left to it, finished shards are never encoded again,
and what the shards store equals what one process would have encoded."""

import numpy as np
import psycopg2
import pytest
from django.db import connection

from learning import services
from learning.ml.classifier import Classifier
from learning.models import EmbeddingShard
from learning.services import reembedding
from tests.learning.conftest import build_labelled_project

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def small_shards(settings):
    settings.DOCKET_EMBED_SHARD_SIZE = 4
    settings.DOCKET_EMBED_HELPERS = 1


def planned(project, run_id=1):
    classifier = Classifier.create(["first_party", "third_party", "data_security"])
    ids = np.asarray(sorted(project.documents.values_list("pk", flat=True)), dtype=np.int64)
    return (
        classifier,
        ids,
        reembedding.plan_write(project_id=project.pk, run_id=run_id, classifier=classifier, document_ids=ids),
    )


class Counting:
    def __init__(self, classifier):
        self.classifier, self.texts = classifier, 0

    def __call__(self, texts, **kwargs):
        self.texts += len(texts)
        return self.classifier.encode(texts, **kwargs)


def stored(project, body_id) -> int:
    return sum(EmbeddingShard.objects.filter(project=project, body_id=body_id).values_list("document_count", flat=True))


def held_elsewhere(body_id: str, index: int):
    """Another database session holding a shard's lock, as a helper on another worker would."""
    params = connection.settings_dict
    other = psycopg2.connect(
        dbname=params["NAME"], user=params["USER"], password=params["PASSWORD"], host=params["HOST"] or "127.0.0.1"
    )
    other.autocommit = True
    key = reembedding._lock_key(body_id)
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [key, index])
    return other


def test_a_shard_held_by_another_worker_is_left_to_it_and_taken_once_it_is_free(artifact_dir, small_shards):
    project, _ = build_labelled_project(pool=6)  # 24 documents: six shards of four
    classifier, ids, plan = planned(project)
    other = held_elsewhere(classifier.body_id, 2)
    encode = Counting(classifier)
    assert reembedding.shards_embed(plan, encode=encode) == 20
    assert stored(project, classifier.body_id) == 20
    other.close()  # the other worker died: the database frees its lock
    progress = []
    assert reembedding.shards_embed(plan, encode=encode, wait=True, progress=lambda d, t: progress.append((d, t))) == 4
    assert encode.texts == 24 and stored(project, classifier.body_id) == 24
    assert progress[-1] == (24, 24)
    together = services.embeddings_for(project_id=project.pk, body_id=classifier.body_id, document_ids=ids, encode=None)
    np.testing.assert_allclose(
        together, classifier.encode([d.text for d in project.documents.order_by("pk")]), atol=1e-5
    )


def test_a_resumed_run_encodes_only_the_shards_not_finished(artifact_dir, small_shards):
    project, _ = build_labelled_project(pool=6)
    classifier, ids, plan = planned(project, run_id=7)
    first_half = ids[:12]
    services.embeddings_for(
        project_id=project.pk, body_id=classifier.body_id, document_ids=first_half, encode=classifier.encode
    )
    # The same run again (its worker died): the plan on disk is reused, and only the other half is encoded.
    assert reembedding.plan_write(project_id=project.pk, run_id=7, classifier=classifier, document_ids=ids) == plan
    encode = Counting(classifier)
    assert reembedding.shards_embed(plan, encode=encode, wait=True) == 12
    assert encode.texts == 12 and stored(project, classifier.body_id) == 24


def test_a_helper_arriving_after_the_run_finished_does_nothing(artifact_dir, small_shards):
    assert reembedding.shards_help(plan_path="embeddings/1/ft-0/plans/run-1") == 0
