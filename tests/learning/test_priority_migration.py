"""learning/0009: queue priorities stored as JSON objects become arrays in a recorded label order, and back."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.conftest import _connected_as, _owner_credentials
from tests.factories import DocumentFactory, project_with_labels

BEFORE = [("learning", "0008_model_version_train_label_counts")]
AFTER = [("learning", "0009_queue_priority_probabilities_array")]


def migrate(targets):
    """Migrate as the tables' owner, as deployments do; returns the models as they are at `targets`."""
    with _connected_as(_owner_credentials()):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def latest():
    """Every app's newest migration: where the tests after this one expect the database (not just 0009)."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    return executor.loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_stored_priorities_convert_to_arrays_and_back():
    project = project_with_labels(["first_party", "third_party"])
    scored, evaluation = DocumentFactory.create_batch(2, project=project)
    apps = migrate(BEFORE)
    try:
        old = apps.get_model("learning", "QueuePriority")
        old.objects.create(
            document_id=scored.pk,
            project_id=project.pk,
            score=0.5,
            model_version=3,
            probabilities={"third_party": 0.75, "first_party": 0.25},
        )
        old.objects.create(document_id=evaluation.pk, project_id=project.pk, score=0.1, probabilities={})

        apps = migrate(AFTER)
        keys = apps.get_model("learning", "PriorityLabelKeys").objects.get(project_id=project.pk, model_version=3)
        rows = {row.document_id: row for row in apps.get_model("learning", "QueuePriority").objects.all()}
        assert dict(zip(keys.label_keys, rows[scored.pk].probabilities, strict=True)) == {
            "first_party": 0.25,
            "third_party": 0.75,
        }
        assert rows[evaluation.pk].probabilities == []

        apps = migrate(BEFORE)
        back = {row.document_id: row.probabilities for row in apps.get_model("learning", "QueuePriority").objects.all()}
        assert back == {scored.pk: {"first_party": 0.25, "third_party": 0.75}, evaluation.pk: {}}
    finally:
        migrate(latest())
