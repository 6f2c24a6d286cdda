"""Scoring the pool: every queued document's priority under the active model (the query strategy's order with
the evaluation documents interleaved), or cold-start picks and zero-shot suggestions before the first model.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from annotation.models import Document, Label, Project
from learning.ml.classifier import Classifier
from learning.ml.coldstart import diverse_sample
from learning.ml.label_descriptions import encode_label_texts, zero_shot_probabilities
from learning.ml.strategies import get_strategy, top_k
from learning.models import DESCRIPTIONS_VERSION, ModelVersion, QueuePriority
from learning.services.classifiers import _held_classifier
from learning.services.embeddings import ProgressCallback, cached_embeddings_only, embeddings_for
from learning.services.evaluation import _state_lock, evaluation_reserve, interleaved_scores
from learning.services.snapshots import label_texts

VersionStatus = ModelVersion.Status

# Cold start asks for at least this many diverse documents before any model exists.
COLD_START_PICKS = 20

# Batch strategies pick the first documents of the queue among this many of the most uncertain.
SELECT_CANDIDATES = 1000


@dataclass
class PoolScores:
    """Rows for QueuePriority: one per queued document, evaluation ones without model or probabilities."""

    document_ids: np.ndarray
    scores: np.ndarray
    model_version: int | None
    probabilities: np.ndarray | None  # (n_learner, n_labels) for the learner's documents, in document order
    label_keys: list[str]
    learner_mask: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


def queued_pool(project: Project) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(document ids, random keys, evaluation mask) of the queued documents, ids ascending."""
    rows = Document.objects.filter(project=project, status=Document.Status.QUEUED).order_by("pk")
    sql, params = rows.values_list("pk", "random_key", "evaluation_reservation__pk").query.sql_with_params()
    # Fetched by the driver alone: at 1,000,000 rows the ORM's per-row work would cost seconds.
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        values = cursor.fetchall()
    if not values:
        return np.empty(0, dtype=np.int64), np.empty(0), np.empty(0, dtype=bool)
    ids = np.fromiter((v[0] for v in values), dtype=np.int64, count=len(values))
    keys = np.fromiter((v[1] for v in values), dtype=np.float64, count=len(values))
    reserved = np.fromiter((v[2] is not None for v in values), dtype=bool, count=len(values))
    return ids, keys, reserved


def version_examples_per_label(version: ModelVersion) -> np.ndarray | None:
    """How many training documents carried each of the version's labels, in its outputs' order (None when the
    version was trained before the counts were kept)."""
    counts = version.train_label_counts
    if not counts:
        return None
    return np.array([counts.get(key, 0) for key in version.label_keys], dtype=np.int64)


def learner_order(
    project: Project,
    probabilities: np.ndarray,
    embeddings: np.ndarray,
    labelled_embeddings: np.ndarray | None,
    rng: np.random.Generator,
    examples_per_label: np.ndarray | None = None,
) -> np.ndarray:
    """Pool row indices, the first to ask first: the strategy's next batch, then the rest by its scores.

    `examples_per_label` (the model's training documents per label) is what the strategies that favour the
    least-labelled labels weigh by, as the simulation gives them its labelled set's counts.
    """
    n = len(probabilities)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    strategy = get_strategy(project.query_strategy, multi_label=project.multi_label)
    scores = np.asarray(
        strategy.scores(probabilities, rng=rng, examples_per_label=examples_per_label), dtype=np.float64
    )
    batch = min(n, max(1, project.fast_retrain_every))
    # The diverse strategy clusters 40 candidates per pick; the others need far fewer.
    candidates = top_k(scores, min(n, max(SELECT_CANDIDATES, 40 * batch)), rng)
    picked = strategy.select(
        probabilities[candidates],
        batch,
        embeddings=embeddings[candidates],
        labelled_embeddings=labelled_embeddings,
        rng=rng,
        examples_per_label=examples_per_label,
    )
    head = candidates[np.asarray(picked, dtype=np.int64)]
    rest_mask = np.ones(n, dtype=bool)
    rest_mask[head] = False
    rest = np.flatnonzero(rest_mask)
    rest = rest[np.argsort(-scores[rest], kind="stable")]
    return np.concatenate([head, rest]).astype(np.int64)


def _pool_scores(
    project: Project,
    classifier: Classifier,
    version_number: int,
    *,
    labelled_embeddings: np.ndarray | None,
    examples_per_label: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
) -> PoolScores:
    """Score every queued document with the classifier (vectorised) and place evaluation documents among them."""
    started = time.monotonic()
    ids, random_keys, reserved = queued_pool(project)
    learner_ids = ids[~reserved]
    embeddings = embeddings_for(
        project_id=project.pk,
        body_id=classifier.body_id,
        document_ids=learner_ids,
        encode=classifier.encode,
        progress=progress,
    )
    embedded = time.monotonic()
    probabilities = classifier.predict_proba_embeddings(embeddings) if len(learner_ids) else np.zeros((0, 0))
    rng = np.random.default_rng()
    order = learner_order(project, probabilities, embeddings, labelled_embeddings, rng, examples_per_label)
    learner_scores, eval_scores = interleaved_scores(len(order), int(reserved.sum()), project.eval_fraction)
    scores = np.empty(len(ids), dtype=np.float64)
    learner_score_by_row = np.empty(len(learner_ids), dtype=np.float64)
    learner_score_by_row[order] = learner_scores
    scores[~reserved] = learner_score_by_row
    scores[reserved] = _evaluation_scores(ids[reserved], eval_scores, random_keys[reserved])
    return PoolScores(
        document_ids=ids,
        scores=scores,
        model_version=version_number,
        probabilities=probabilities,
        label_keys=list(classifier.labels),
        learner_mask=~reserved,
        timings={"embed_pool": embedded - started, "score": time.monotonic() - embedded},
    )


def _evaluation_scores(
    evaluation_ids: np.ndarray, scores_in_order: np.ndarray, random_keys: np.ndarray | None = None
) -> np.ndarray:
    """Evaluation documents take the evaluation slots in a random order fixed by their random key (read here
    unless given, in the order of `evaluation_ids`)."""
    if not len(evaluation_ids):
        return np.empty(0)
    if random_keys is None:
        keys = dict(Document.objects.filter(pk__in=evaluation_ids.tolist()).values_list("pk", "random_key"))
        random_keys = np.array([keys.get(int(pk), 0.0) for pk in evaluation_ids])
    order = np.argsort(random_keys, kind="stable")
    out = np.empty(len(evaluation_ids))
    out[order] = scores_in_order
    return out


def _priorities_write(project_id: int, pool: PoolScores) -> int:
    """Replace the pool's QueuePriority rows (COPY on PostgreSQL); call inside the switching transaction."""
    if not len(pool.document_ids):
        return 0
    if connection.vendor == "postgresql":
        return _priorities_copy(project_id, pool)
    return _priorities_bulk_upsert(project_id, pool)


def _priorities_copy(project_id: int, pool: PoolScores) -> int:
    """Delete the pool's rows, then COPY the new ones straight into the table.

    Rewriting every row is the rule (after a refit nearly every score and probability changes), so the write is
    made as close to a bare COPY as the table allows: no staging table, no `INSERT ... ON CONFLICT`, and no
    foreign-key check per row (QueuePriority's keys are not checked by the database: see the model). At
    100,000 rows that takes 2 to 2.5 times PostgreSQL's raw COPY of the same rows, where staging and upserting
    took about 4 times. Readers keep the previous rows until the commit, and the deletion leaves the rows of
    documents outside the pool (labeled since) as they were.
    """
    table = connection.ops.quote_name(QueuePriority._meta.db_table)
    ids = "{" + ",".join(map(str, pool.document_ids.tolist())) + "}"
    text = _copy_text(pool, project_id=project_id, updated_at=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE document_id = ANY(%s::bigint[])", [ids])
        cursor.copy_expert(
            f"COPY {table} (document_id, score, model_version, probabilities, project_id, updated_at) FROM STDIN",
            io.BytesIO(text),
        )
    return len(pool.document_ids)


def _priorities_bulk_upsert(project_id: int, pool: PoolScores) -> int:
    """SQLite (`make run`): the ORM's upsert in batches."""
    json_rows = _probability_json(pool)
    versions = np.where(pool.learner_mask, pool.model_version if pool.model_version is not None else -1, -1)
    rows = [
        QueuePriority(
            document_id=document_id,
            project_id=project_id,
            score=score,
            model_version=None if version < 0 else version,
            probabilities=json.loads(probabilities),
        )
        for document_id, score, version, probabilities in zip(
            pool.document_ids.tolist(), pool.scores.tolist(), versions.tolist(), json_rows, strict=True
        )
    ]
    QueuePriority.objects.bulk_create(
        rows,
        batch_size=1000,
        update_conflicts=True,
        unique_fields=["document"],
        update_fields=["project", "score", "model_version", "probabilities", "updated_at"],
    )
    return len(rows)


def _probability_json(pool: PoolScores) -> list[str]:
    """JSON objects of label key -> probability, formatted by one template (keys are slugs: no escaping)."""
    out = ["{}"] * len(pool.document_ids)
    if pool.probabilities is None or pool.model_version is None or not len(pool.probabilities):
        return out
    template = "{" + ", ".join(f'"{key}": %.4f' for key in pool.label_keys) + "}"
    learner_rows = np.flatnonzero(pool.learner_mask)
    for row, values in zip(learner_rows.tolist(), pool.probabilities.tolist(), strict=True):
        out[row] = template % tuple(values)
    return out


def _copy_text(pool: PoolScores, *, project_id: int, updated_at: datetime) -> bytes:
    """The pool's rows in COPY's text format: document id, score, model version, probabilities (JSON), project
    id and time written.

    Built by numpy as byte matrices, one row per document, rather than formatted document by document in
    Python: a few hundred milliseconds at 1,000,000 documents instead of seconds. Numbers are padded with
    spaces, which PostgreSQL's number and JSON parsers skip; probabilities are written to 4 decimals.
    """
    learner = pool.learner_mask
    with_probabilities = pool.probabilities is not None and pool.model_version is not None and len(pool.label_keys)
    parts = []
    for mask in (learner, ~learner):
        rows = np.flatnonzero(mask)
        if not len(rows):
            continue
        is_learner = mask is learner
        version = pool.model_version if is_learner and pool.model_version is not None else None
        columns = [
            _text_column(pool.document_ids[rows].astype(np.int64)),
            _text_column(pool.scores[rows].astype(np.float64)),
            _constant_column("\\N" if version is None else str(version), len(rows)),
            _probability_column(pool.probabilities, pool.label_keys)
            if is_learner and with_probabilities
            else _constant_column("{}", len(rows)),
            _constant_column(str(int(project_id)), len(rows)),
            _constant_column(updated_at.isoformat(), len(rows)),
        ]
        separators = [b"\t"] * (len(columns) - 1) + [b"\n"]
        width = sum(c.shape[1] for c in columns) + len(separators)
        matrix = np.empty((len(rows), width), dtype=np.uint8)
        at = 0
        for column, separator in zip(columns, separators, strict=True):
            matrix[:, at : at + column.shape[1]] = column
            at += column.shape[1]
            matrix[:, at] = separator[0]
            at += 1
        parts.append(matrix.tobytes())
    return b"".join(parts)


def _text_column(values: np.ndarray) -> np.ndarray:
    """Numbers as numpy prints them (exact for floats), one row of bytes each, padded with spaces."""
    text = values.astype(np.bytes_)
    matrix = text.view(np.uint8).reshape(len(values), text.dtype.itemsize).copy()
    matrix[matrix == 0] = ord(" ")
    return matrix


def _constant_column(text: str, rows: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(text.encode(), dtype=np.uint8), (rows, len(text.encode())))


def _probability_column(probabilities: np.ndarray, label_keys: list[str]) -> np.ndarray:
    """{"key": 0.1234, ...} per row: one template, the digits of each probability written into it."""
    prefixes = [("{" if j == 0 else ", ") + json.dumps(key) + ": " for j, key in enumerate(label_keys)]
    prefixes = [prefix.replace("\\", "\\\\").encode() for prefix in prefixes]  # COPY's own escape
    template = np.frombuffer(b"".join(prefix + b"0.0000" for prefix in prefixes) + b"}", dtype=np.uint8)
    matrix = np.empty((len(probabilities), len(template)), dtype=np.uint8)
    matrix[:] = template
    ten_thousandths = np.rint(np.clip(probabilities, 0.0, 1.0) * 10_000).astype(np.int64)
    at = 0
    for j, prefix in enumerate(prefixes):
        at += len(prefix)
        value = ten_thousandths[:, j]
        matrix[:, at] = ord("0") + value // 10_000
        for place, divisor in ((2, 1000), (3, 100), (4, 10), (5, 1)):
            matrix[:, at + place] = ord("0") + (value // divisor) % 10
        at += 6
    return matrix


def pool_rescore(*, project_id: int) -> int:
    """Write queue priorities for every queued document: under the active model, or cold-start picks before one.

    Returns how many rows were written (0 when another switch overtook this one, which then wrote its own).
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return 0
    evaluation_reserve(project=project)
    active = ModelVersion.objects.filter(project=project, status=VersionStatus.ACTIVE).first()
    if active is None:
        return _cold_start(project)
    classifier = _held_classifier(active, project)
    pool = _pool_scores(
        project,
        classifier,
        active.number,
        labelled_embeddings=_labelled_embeddings(project, active.body_id),
        examples_per_label=version_examples_per_label(active),
    )
    with transaction.atomic():
        _state_lock(project.pk)
        current = ModelVersion.objects.filter(project=project, status=VersionStatus.ACTIVE).values_list("pk", flat=True)
        if current.first() != active.pk:
            return 0
        return _priorities_write(project.pk, pool)


def _labelled_embeddings(project: Project, body_id: str) -> np.ndarray | None:
    """Cached embeddings of the training documents, which batch strategies keep new picks away from."""
    labelled = Document.objects.filter(
        project=project, status=Document.Status.LABELED, evaluation_reservation__isnull=True
    )
    ids = np.fromiter(labelled.values_list("pk", flat=True).order_by("pk"), dtype=np.int64)
    if not len(ids):
        return None
    return cached_embeddings_only(project_id=project.pk, body_id=body_id, document_ids=ids)


def _cold_start(project: Project) -> int:
    """Before any model: suggestions from the labels' own words, and diverse documents first.

    Every queued document gets zero-shot probabilities (its similarity to each label's name, description
    and guideline under the base body), which the labeling page shows as a suggestion from the first
    document on. The first documents asked are one per k-means region of the embeddings, so the first
    labels cover the collection.
    """
    classifier = _held_classifier(None, project)
    ids, random_keys, reserved = queued_pool(project)
    learner_ids = ids[~reserved]
    embeddings = embeddings_for(
        project_id=project.pk, body_id=classifier.body_id, document_ids=learner_ids, encode=classifier.encode
    )
    labels = list(
        Label.objects.filter(taxonomy__project=project, deprecated=False).order_by("order", "id").values("pk", "key")
    )
    probabilities, label_keys = None, []
    if len(labels) >= 2 and len(learner_ids):
        vectors = encode_label_texts(label_texts([label["pk"] for label in labels]), classifier.encode)
        probabilities = zero_shot_probabilities(embeddings, vectors, project.multi_label)
        label_keys = [label["key"] for label in labels]
    k = min(len(learner_ids), max(COLD_START_PICKS, 2 * project.fast_retrain_every))
    picks = diverse_sample(embeddings, k) if k else np.empty(0, dtype=np.int64)
    rest_mask = np.ones(len(learner_ids), dtype=bool)
    rest_mask[picks] = False
    rest = np.flatnonzero(rest_mask)
    # The tail in the queue's own order for unscored documents, which spreads the overlap set (the lowest
    # random keys) over it at its share instead of putting all of it first (annotation.services.queue).
    rest_keys = random_keys[~reserved][rest]
    rate = project.overlap_rate
    positions = (
        np.where(rest_keys < rate, rest_keys / rate, (rest_keys - rate) / (1 - rate)) if 0 < rate < 1 else rest_keys
    )
    rest = rest[np.argsort(positions, kind="stable")]
    order = np.concatenate([picks, rest]).astype(np.int64)
    learner_scores, eval_scores = interleaved_scores(len(order), int(reserved.sum()), project.eval_fraction)
    scores = np.empty(len(ids))
    by_row = np.empty(len(learner_ids))
    by_row[order] = learner_scores
    scores[~reserved] = by_row
    scores[reserved] = _evaluation_scores(ids[reserved], eval_scores, random_keys[reserved])
    pool = PoolScores(
        document_ids=ids,
        scores=scores,
        model_version=DESCRIPTIONS_VERSION if probabilities is not None else None,
        probabilities=probabilities,
        label_keys=label_keys,
        learner_mask=~reserved,
    )
    with transaction.atomic():
        state = _state_lock(project.pk)
        if ModelVersion.objects.filter(project=project, status=VersionStatus.ACTIVE).exists():
            return 0
        written = _priorities_write(project.pk, pool)
        state.cold_start_at = timezone.now()
        state.save(update_fields=["cold_start_at"])
    return written


def pool_needs_scoring(project: Project) -> bool:
    """Whether some queued document has no priority yet (new imports, or nothing scored at all)."""
    return Document.objects.filter(project=project, status=Document.Status.QUEUED, queue_priority__isnull=True).exists()
