"""A corpus scored outside Docket comes back as documents whose queue and suggestions use its scores as they are."""

import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from annotation.models import AuditEvent, Document
from learning import selectors, services, serving
from learning.ml.spark_scoring import PROBABILITY_PREFIX
from learning.models import QueuePriority, TrainingRun
from tests.learning.conftest import KEYS, build_labelled_project

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

NEW = [f"Scored elsewhere: clause {n} on how we keep records of your requests." for n in range(6)]


def trained_project(**options):
    project, _ = build_labelled_project(pool=4, **options)
    run = services.training_run_request(project=project, kind="fast", trigger=TrainingRun.Trigger.LABELS)
    assert services.training_run_execute(run_id=run.pk).status == "succeeded"
    return project


def scored_file(path, ids, texts, probabilities, *, model_version=1, taxonomy_version=1):
    frame = pd.DataFrame({"id": ids})
    for j, key in enumerate(KEYS):
        frame[f"{PROBABILITY_PREFIX}{key}"] = probabilities[:, j]
    frame["labels"] = [[KEYS[int(np.argmax(row))]] for row in probabilities]
    frame["model_version"] = np.int32(model_version)
    frame["taxonomy_version"] = np.int32(taxonomy_version)
    if texts is not None:
        frame["text"] = texts
    frame.to_parquet(path)
    return path


def test_imported_scores_order_the_queue_and_serve_as_suggestions_without_encoding(artifact_dir, tmp_path, monkeypatch):
    project = trained_project(query_strategy="margin")
    model = serving.ModelCache().active(project)
    probabilities = model.predict_proba(NEW)
    path = scored_file(tmp_path / "scored.parquet", [f"ext-{n}" for n in range(6)], NEW, probabilities)
    # Nothing may be encoded: the scores in the file are the model's.
    monkeypatch.setattr("learning.ml.classifier.Classifier.encode", lambda *a, **k: pytest.fail("encoded"))
    call_command("import_scores", str(project.pk), str(path))
    new = Document.objects.filter(project=project, external_id__startswith="ext-").order_by("external_id")
    assert [d.text for d in new] == NEW
    predictions = selectors.predictions_for([d.pk for d in new])
    for row, document in enumerate(new):
        stored = predictions[document.pk]
        assert stored["model_version"] == 1
        np.testing.assert_allclose([stored["probabilities"][k] for k in KEYS], probabilities[row], atol=1e-4)
    # The whole queue (the four documents scored by the worker and the six imported) is ordered by margin.
    queued = Document.objects.filter(project=project, status="queued")
    ordered = list(selectors.order_by_priority(queued).values_list("queue_priority__probabilities", flat=True))
    margins = [sorted(p)[-1] - sorted(p)[-2] for p in ordered]  # stored in the model's label order
    assert len(ordered) == 10 and margins == sorted(margins)
    assert AuditEvent.objects.get(action="import.scores").after["created"] == 6
    # Explore filters on the imported probabilities too.
    from explore.search import ExploreQuery, filtered_documents

    key = KEYS[int(np.argmax(probabilities[0]))]
    found = filtered_documents(
        project, ExploreQuery(predicted_label=key, probability_min=0.0), sees_answers=True, user=None
    )
    assert new[0] in found


def test_rows_for_known_documents_update_them_and_labeled_ones_are_left_alone(artifact_dir, tmp_path):
    project = trained_project()
    queued = Document.objects.filter(project=project, status="queued").order_by("pk").first()
    labeled = Document.objects.filter(project=project, status="labeled").order_by("pk").first()
    Document.objects.filter(pk=queued.pk).update(external_id="q-1")
    Document.objects.filter(pk=labeled.pk).update(external_id="l-1")
    sure = np.array([[0.98, 0.01, 0.01]] * 3)
    path = scored_file(tmp_path / "s.parquet", ["q-1", "l-1", "nobody"], None, sure)
    call_command("import_scores", project.name, str(path))
    assert QueuePriority.objects.get(document=queued).label_probabilities() == dict(
        zip(KEYS, [0.98, 0.01, 0.01], strict=True)
    )
    assert not QueuePriority.objects.filter(document=labeled).exists()
    assert Document.objects.filter(project=project).count() == 18 + 4


def test_scores_of_another_model_version_are_refused_before_anything_is_stored(artifact_dir, tmp_path):
    project = trained_project()
    before = list(QueuePriority.objects.filter(project=project).values_list("document_id", "score", "probabilities"))
    path = scored_file(tmp_path / "old.parquet", ["x"], ["A new clause."], np.array([[0.2, 0.3, 0.5]]), model_version=7)
    with pytest.raises(CommandError, match="version 1"):
        call_command("import_scores", str(project.pk), str(path))
    assert not Document.objects.filter(external_id="x").exists()
    after = list(QueuePriority.objects.filter(project=project).values_list("document_id", "score", "probabilities"))
    assert after == before
