"""A corpus scored elsewhere (the Spark job, docs/scale.md) comes back into Docket without scoring it again.

Each row of the scored Parquet becomes (or finds, by its id) a document of the project and stores its
probabilities as the queue's, under the active model version the file was scored with; then the whole queue
is put in order from the stored probabilities, with the evaluation documents interleaved as after any rescore.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotation.models import Document, Project
from annotation.services.audit import audit_record
from annotation.services.imports import content_hash
from learning import selectors
from learning.exceptions import ScoresRejected
from learning.ml.spark_scoring import PROBABILITY_PREFIX
from learning.ml.strategies import get_strategy
from learning.models import EvaluationReservation, ModelVersion, PriorityLabelKeys, QueuePriority
from learning.services.evaluation import _state_lock, evaluation_reserve, interleaved_scores
from learning.services.pool import PoolScores, _evaluation_scores, _priorities_write, version_examples_per_label

BATCH_ROWS = 5_000


@dataclass
class ScoredImport:
    """What one import did, row by row of the file."""

    model_version: int
    rows: int = 0
    created: int = 0
    scored: int = 0
    not_queued: int = 0
    unmatched: int = 0
    duplicates: int = 0
    queue_reordered: int = 0


def scored_corpus_import(
    *, project: Project, path: str | Path, actor: AbstractBaseUser | None = None, batch_rows: int = BATCH_ROWS
) -> ScoredImport:
    """Store the probabilities of a scored Parquet file (or directory) as the project's queue scores.

    Rows whose id is a document's external id update it; rows with a `text` column and an unknown id become new
    documents; rows with neither are counted as unmatched. Only queued documents take the scores (a labeled one
    needs none). Refused, before anything is written, unless every row was scored by the active model version.
    """
    import pyarrow.dataset as ds

    active = selectors.active_model_version(project)
    if active is None:
        raise ScoresRejected("The project has no active model; scores of a corpus need the model that made them.")
    dataset = ds.dataset(str(path), format="parquet")
    columns = ["id", *(f"{PROBABILITY_PREFIX}{key}" for key in active.label_keys)]
    missing = [name for name in (*columns, "model_version", "taxonomy_version") if name not in dataset.schema.names]
    if missing:
        raise ScoresRejected(f"The scored file has no column {', '.join(missing)}: was it scored with this project?")
    _check_versions(dataset, active)
    with_text = "text" in dataset.schema.names
    result = ScoredImport(model_version=active.number)
    scored_ids, scored_rows = [], []
    for batch in dataset.to_batches(columns=columns + (["text"] if with_text else []), batch_size=batch_rows):
        ids, probabilities = _import_batch(project, active, batch.to_pydict(), with_text, result)
        scored_ids.append(ids)
        scored_rows.append(probabilities)
    evaluation_reserve(project=project)
    incoming = (
        np.concatenate(scored_ids) if scored_ids else np.empty(0, dtype=np.int64),
        np.concatenate(scored_rows) if scored_rows else np.empty((0, len(active.label_keys))),
    )
    result.scored = len(incoming[0])
    result.queue_reordered = queue_order_from_stored_scores(project=project, incoming=incoming)
    audit_record(
        action="import.scores",
        actor=actor,
        project=project,
        target=active,
        after=dict(vars(result)),
    )
    return result


def _check_versions(dataset, active: ModelVersion) -> None:
    import pyarrow.compute as pc

    table = dataset.to_table(columns=["model_version", "taxonomy_version"])
    versions = set(pc.unique(table["model_version"]).to_pylist())
    taxonomies = set(pc.unique(table["taxonomy_version"]).to_pylist())
    if versions - {active.number} or taxonomies - {active.taxonomy_version}:
        raise ScoresRejected(
            f"The file was scored with model version {sorted(versions)} (taxonomy {sorted(taxonomies)}), but version "
            f"{active.number} (taxonomy {active.taxonomy_version}) serves now: score it again with a bundle of "
            f"version {active.number} (manage.py export_model)."
        )


def _import_batch(
    project: Project, active: ModelVersion, rows: dict, with_text: bool, result: ScoredImport
) -> tuple[np.ndarray, np.ndarray]:
    """Find or create the batch's documents; returns the queued ones' ids and their rows of probabilities."""
    ids = [str(value) for value in rows["id"]]
    result.rows += len(ids)
    found = dict(Document.objects.filter(project=project, external_id__in=ids).values_list("external_id", "pk"))
    duplicates = set()
    if with_text:
        new = [(i, text) for i, text in zip(ids, rows["text"], strict=True) if i not in found and text]
        # ignore_conflicts: the same text under another id is a duplicate, as in any import. It returns no keys
        # on every database, so they are read back by external id.
        Document.objects.bulk_create(
            [Document(project=project, external_id=i, text=text, content_hash=content_hash(text)) for i, text in new],
            ignore_conflicts=True,
        )
        created = Document.objects.filter(project=project, external_id__in=[i for i, _ in new])
        found.update(created.values_list("external_id", "pk"))
        duplicates = {i for i, _ in new if i not in found}
        result.created += len(new) - len(duplicates)
        result.duplicates += len(duplicates)
    queued = set(
        Document.objects.filter(pk__in=list(found.values()), status=Document.Status.QUEUED).values_list("pk", flat=True)
    )
    columns = np.column_stack(
        [np.asarray(rows[f"{PROBABILITY_PREFIX}{key}"], dtype=np.float64) for key in active.label_keys]
    )
    keep, document_ids = [], []
    for row, external_id in enumerate(ids):
        pk = found.get(external_id)
        if pk is None:
            result.unmatched += external_id not in duplicates
        elif pk not in queued:
            result.not_queued += 1
        else:
            keep.append(row)
            document_ids.append(pk)
    return np.asarray(document_ids, dtype=np.int64), columns[keep]


def queue_order_from_stored_scores(*, project: Project, incoming: tuple[np.ndarray, np.ndarray] | None = None) -> int:
    """Order the whole queue by the strategy's scores of the active model's probabilities, encoding nothing.

    Those are the ones stored, and `incoming` (document ids, probabilities in the model's label order) in their
    place. Queued documents with probabilities are ordered by the project's query strategy; evaluation documents
    take their slots as after any rescore; documents without the active model's scores keep their rows until the
    next rescore. Returns the rows written (0 when the active model changed meanwhile), in one statement.
    """
    active = selectors.active_model_version(project)
    if active is None:
        return 0
    queued = Document.objects.filter(project=project, status=Document.Status.QUEUED)
    reserved = set(
        EvaluationReservation.objects.filter(project=project, document__in=queued).values_list("document_id", flat=True)
    )
    stored = (
        QueuePriority.objects.filter(document__in=queued, model_version=active.number)
        .exclude(document_id__in=reserved)
        .order_by("document_id")
        .values_list("document_id", "probabilities")
    )
    keys = list(active.label_keys)
    incoming_ids, incoming_rows = (
        incoming if incoming is not None else (np.empty(0, np.int64), np.empty((0, len(keys))))
    )
    replaced = set(incoming_ids.tolist())
    # Stored rows are in the order of the keys recorded for the version; read them in the model's own.
    recorded = list(
        PriorityLabelKeys.objects.filter(project=project, model_version=active.number)
        .values_list("label_keys", flat=True)
        .first()
        or []
    )
    places = [recorded.index(key) if key in recorded else None for key in keys]
    learner_ids, rows = [], []
    for document_id, values in stored.iterator(chunk_size=10_000):
        if document_id not in replaced:
            learner_ids.append(document_id)
            rows.append([_stored_value(values, place) for place in places])
    fresh = ~np.isin(incoming_ids, np.asarray(sorted(reserved), dtype=np.int64))
    learner_ids = np.concatenate([np.asarray(learner_ids, dtype=np.int64), incoming_ids[fresh]])
    probabilities = np.concatenate([np.asarray(rows, dtype=np.float64).reshape(-1, len(keys)), incoming_rows[fresh]])
    evaluation_ids = np.asarray(sorted(reserved), dtype=np.int64)
    strategy = get_strategy(project.query_strategy, multi_label=project.multi_label)
    examples = version_examples_per_label(active)
    scores = np.asarray(
        strategy.scores(probabilities, rng=np.random.default_rng(), examples_per_label=examples), dtype=np.float64
    )
    order = np.argsort(-scores, kind="stable")
    learner_scores, eval_scores = interleaved_scores(len(order), len(evaluation_ids), project.eval_fraction)
    by_row = np.empty(len(learner_ids))
    by_row[order] = learner_scores
    pool = PoolScores(
        document_ids=np.concatenate([learner_ids, evaluation_ids]),
        scores=np.concatenate([by_row, _evaluation_scores(evaluation_ids, eval_scores)]),
        model_version=active.number,
        probabilities=probabilities,
        label_keys=keys,
        learner_mask=np.concatenate([np.ones(len(learner_ids), bool), np.zeros(len(evaluation_ids), bool)]),
    )
    with transaction.atomic():
        _state_lock(project.pk)
        now_active = selectors.active_model_version(project)
        if now_active is None or now_active.pk != active.pk:
            return 0
        return _priorities_write(project.pk, pool)


def _stored_value(values: list[float], place: int | None) -> float:
    """A stored probability, 0 where the row has none for the label (as a missing key read before)."""
    if place is None or place >= len(values) or math.isnan(values[place]):
        return 0.0
    return values[place]
