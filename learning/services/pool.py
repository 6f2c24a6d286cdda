"""Scoring the pool: every queued document's priority under the active model (the query strategy's order with
the evaluation documents interleaved), or cold-start picks and zero-shot suggestions before the first model.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from annotation.models import Document, Label, Project
from learning.ml.classifier import Classifier
from learning.ml.coldstart import diverse_sample
from learning.ml.label_descriptions import encode_label_texts, zero_shot_probabilities
from learning.ml.strategies import get_strategy, top_k
from learning.models import (
    DESCRIPTIONS_VERSION,
    EvaluationReservation,
    ModelVersion,
    PriorityLabelKeys,
    QueueExit,
    QueuePriority,
)
from learning.services.classifiers import _held_classifier
from learning.services.embeddings import (
    ProgressCallback,
    cached_embeddings,
    cached_embeddings_only,
    embeddings_for,
)
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
    """(document ids, random keys, evaluation mask) of the queued documents, ids ascending.

    The evaluation reservations are read apart and matched in numpy: joined in SQL, every queued document
    cost an index probe (a nested loop over 1,000,000 of them) for the few reserved.
    """
    rows = (
        Document.objects.filter(project=project, status=Document.Status.QUEUED)
        .order_by("pk")
        .values_list("pk", "random_key")
    )
    sql, params = rows.query.sql_with_params()
    if connection.vendor == "postgresql":
        ids, keys = _queued_pool_copy(sql, params)
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            values = cursor.fetchall()
        ids = np.fromiter((v[0] for v in values), dtype=np.int64, count=len(values))
        keys = np.fromiter((v[1] for v in values), dtype=np.float64, count=len(values))
    # A reservation belongs to its document's project (learning.services.evaluation).
    reserved_ids = np.fromiter(
        EvaluationReservation.objects.filter(project=project).values_list("document_id", flat=True), dtype=np.int64
    )
    return ids, keys, np.isin(ids, reserved_ids)


# One queued document in COPY's binary format: two fields (id, random key), each with its length.
_QUEUED_ROW = np.dtype([("fields", ">i2"), ("id_length", ">i4"), ("id", ">i8"), ("key_length", ">i4"), ("key", ">f8")])


def _queued_pool_copy(sql: str, params: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The queued pool read by COPY in binary, every row the same width, so numpy reads it as one array: at
    1,000,000 documents the driver's tuples (and their Python objects) cost seconds, this a fraction of one."""
    buffer = io.BytesIO()
    with connection.cursor() as cursor:
        query = cursor.mogrify(sql, params).decode()
        cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT binary)", buffer)
    data = buffer.getbuffer()
    count = (len(data) - len(_COPY_HEADER) - len(_COPY_TRAILER)) // _QUEUED_ROW.itemsize
    rows = np.frombuffer(data, dtype=_QUEUED_ROW, count=count, offset=len(_COPY_HEADER))
    return rows["id"].astype(np.int64), rows["key"].astype(np.float64)


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
    embeddings: np.ndarray | EmbeddingRows,
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
    embeddings = _pool_embeddings(project.pk, classifier, learner_ids, progress)
    embedded = time.monotonic()
    probabilities = _predict_in_chunks(classifier, embeddings) if len(learner_ids) else np.zeros((0, 0))
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


class EmbeddingRows:
    """Rows of an embedding matrix picked by index, gathered only when asked for: the pool's 1,000,000 vectors
    (1.5 GB) are read from the cache in chunks rather than copied out whole (learner_order needs only its
    candidates' vectors)."""

    def __init__(self, vectors: np.ndarray, rows: np.ndarray | None = None) -> None:
        self.vectors = vectors
        self.rows = rows

    def __len__(self) -> int:
        return len(self.vectors) if self.rows is None else len(self.rows)

    def __getitem__(self, index) -> np.ndarray:
        return self.vectors[index] if self.rows is None else self.vectors[self.rows[index]]


# Pool rows predicted at a time: 25 MB of vectors, so the gather reuses memory rather than faulting in 1.5 GB.
PREDICT_CHUNK = 16_384


def _pool_embeddings(
    project_id: int, classifier: Classifier, document_ids: np.ndarray, progress: ProgressCallback | None
) -> EmbeddingRows:
    """The pool's embeddings under the classifier's body: the cache's own rows when all are cached (the fast
    loop's case), else encoded and stored first."""
    cached_ids, vectors = cached_embeddings(project_id=project_id, body_id=classifier.body_id)
    if len(cached_ids):
        rows = np.minimum(np.searchsorted(cached_ids, document_ids), len(cached_ids) - 1)
        if (cached_ids[rows] == document_ids).all():
            if progress is not None:
                progress(0, 0)
            return EmbeddingRows(vectors, rows)
    return EmbeddingRows(
        embeddings_for(
            project_id=project_id,
            body_id=classifier.body_id,
            document_ids=document_ids,
            encode=classifier.encode,
            progress=progress,
        )
    )


def _predict_in_chunks(classifier: Classifier, embeddings: EmbeddingRows) -> np.ndarray:
    out = np.empty((len(embeddings), len(classifier.labels)), dtype=np.float64)
    for start in range(0, len(embeddings), PREDICT_CHUNK):
        stop = min(start + PREDICT_CHUNK, len(embeddings))
        out[start:stop] = classifier.predict_proba_embeddings(embeddings[start:stop])
    return out


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
    probabilities = _in_recorded_label_order(project_id, pool)
    if connection.vendor == "postgresql":
        return _priorities_copy(project_id, pool, probabilities)
    return _priorities_bulk_upsert(project_id, pool, probabilities)


def _in_recorded_label_order(project_id: int, pool: PoolScores) -> np.ndarray | None:
    """The pool's probabilities as float32, in the label order recorded for its version (PriorityLabelKeys.record):
    the model's own unless an earlier write of the same version number had other keys."""
    if pool.model_version is None or pool.probabilities is None or not len(pool.label_keys):
        return None
    keys = PriorityLabelKeys.record(project_id, pool.model_version, list(pool.label_keys))
    if keys == list(pool.label_keys):
        return np.asarray(pool.probabilities, dtype=np.float32)
    arranged = np.full((len(pool.probabilities), len(keys)), np.nan, dtype=np.float32)
    arranged[:, [keys.index(key) for key in pool.label_keys]] = pool.probabilities
    return arranged


def _priorities_copy(project_id: int, pool: PoolScores, probabilities: np.ndarray | None) -> int:
    """Delete the pool's rows, then COPY the new ones straight into the table, in COPY's binary format.

    Rewriting every row is the rule (after a refit nearly every score and probability changes), so the write is
    made as close to a bare COPY as the table allows: no staging table, no `INSERT ... ON CONFLICT`, no
    foreign-key check per row (QueuePriority's keys are not checked by the database: see the model), and rows
    of about 130 bytes that PostgreSQL copies without parsing a character. Readers keep the previous rows until
    the commit, and the deletion leaves the rows of documents outside the pool (labeled since) as they were,
    their scores lowered (`_queue_exits_apply`).
    """
    table = connection.ops.quote_name(QueuePriority._meta.db_table)
    pool = _queue_exits_apply(project_id, pool)
    data = _copy_binary(pool, probabilities, project_id=project_id, updated_at=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE document_id = ANY(%s::bigint[])",
            ["{" + ",".join(pool.document_ids.astype(str).tolist()) + "}"],
        )
        cursor.copy_expert(
            f"COPY {table} (document_id, score, model_version, probabilities, project_id, updated_at) "
            "FROM STDIN WITH (FORMAT binary)",
            io.BytesIO(data),
        )
    return len(pool.document_ids)


def _queue_exits_apply(project_id: int, pool: PoolScores) -> PoolScores:
    """Lower to -Infinity the scores of the documents that left the queue since the last write (QueueExit, recorded
    by the database), in the table and in `pool` (one read while it was still queued), and forget those exits.

    A labeled document's row keeps the prediction it was shown with; with its score lowered, the queue's scored
    route (which walks the priority index from the top, skipping documents no longer queued) no longer walks it.
    Exits recorded while this transaction runs are applied by the next write. A document queued again since
    (status back to queued) keeps its score.
    """
    exits = connection.ops.quote_name(QueueExit._meta.db_table)
    documents = connection.ops.quote_name(Document._meta.db_table)
    table = connection.ops.quote_name(QueuePriority._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH applied AS (DELETE FROM {exits} WHERE project_id = %s RETURNING document_id) "
            f"SELECT d.id FROM {documents} d WHERE d.id IN (SELECT document_id FROM applied) AND d.status <> %s",
            [project_id, Document.Status.QUEUED],
        )
        left = np.fromiter((row[0] for row in cursor.fetchall()), dtype=np.int64)
        if not len(left):
            return pool
        cursor.execute(
            f"UPDATE {table} SET score = '-Infinity' WHERE document_id = ANY(%s) AND score > '-Infinity'",
            [left.tolist()],
        )
    in_pool = np.isin(pool.document_ids, left)
    return replace(pool, scores=np.where(in_pool, -np.inf, pool.scores)) if in_pool.any() else pool


def _priorities_bulk_upsert(project_id: int, pool: PoolScores, probabilities: np.ndarray | None) -> int:
    """SQLite (`make run`): the ORM's upsert in batches."""
    rows_of = _probability_lists(pool, probabilities)
    versions = np.where(pool.learner_mask, pool.model_version if pool.model_version is not None else -1, -1)
    rows = [
        QueuePriority(
            document_id=document_id,
            project_id=project_id,
            score=score,
            model_version=None if version < 0 else version,
            probabilities=values,
        )
        for document_id, score, version, values in zip(
            pool.document_ids.tolist(), pool.scores.tolist(), versions.tolist(), rows_of, strict=True
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


def _probability_lists(pool: PoolScores, probabilities: np.ndarray | None) -> list[list[float]]:
    out: list[list[float]] = [[] for _ in range(len(pool.document_ids))]
    if probabilities is None or not len(probabilities):
        return out
    for row, values in zip(np.flatnonzero(pool.learner_mask).tolist(), probabilities.tolist(), strict=True):
        out[row] = values
    return out


# COPY's binary format (PostgreSQL docs, "COPY", Binary Format): a header, then per row the number of fields and
# each field as its length and bytes in network order (-1: NULL), then -1 as the trailer.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER = b"\xff\xff"
_FLOAT4_OID = 700
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _copy_binary(pool: PoolScores, probabilities: np.ndarray | None, *, project_id: int, updated_at: datetime) -> bytes:
    """The pool's rows in COPY's binary format: document id, score, model version, probabilities (real[]),
    project id and time written.

    Every row of a kind has the same layout, so numpy writes them as one structured array, with no per-row
    Python and no number printed or parsed: scores and probabilities go as stored, bit for bit.
    """
    microseconds = (updated_at - _POSTGRES_EPOCH) // timedelta(microseconds=1)
    learner = pool.learner_mask
    has_probabilities = probabilities is not None and pool.model_version is not None and probabilities.shape[1] > 0
    parts = [_COPY_HEADER]
    for mask in (learner, ~learner):
        rows = np.flatnonzero(mask)
        if not len(rows):
            continue
        is_learner = mask is learner
        version = pool.model_version if is_learner else None
        labels = probabilities.shape[1] if is_learner and has_probabilities else 0
        fields = [
            ("fields", ">i2"),
            ("id_length", ">i4"),
            ("id", ">i8"),
            ("score_length", ">i4"),
            ("score", ">f8"),
            ("version_length", ">i4"),
        ]
        if version is not None:
            fields.append(("version", ">i4"))
        # real[]: dimensions, has-nulls flag, element type, then per dimension its size and lower bound.
        fields += [("array_length", ">i4"), ("ndim", ">i4"), ("has_null", ">i4"), ("element_type", ">i4")]
        if labels:
            element = [("length", ">i4"), ("value", ">f4")]
            fields += [("size", ">i4"), ("lower_bound", ">i4"), ("values", element, (labels,))]
        fields += [("project_length", ">i4"), ("project", ">i8"), ("time_length", ">i4"), ("time", ">i8")]
        out = np.empty(len(rows), dtype=np.dtype(fields))
        out["fields"] = 6
        out["id_length"] = 8
        out["id"] = pool.document_ids[rows]
        out["score_length"] = 8
        out["score"] = pool.scores[rows]
        if version is not None:
            out["version_length"] = 4
            out["version"] = version
        else:
            out["version_length"] = -1
        out["array_length"] = 12 + (8 + 8 * labels if labels else 0)
        out["ndim"] = 1 if labels else 0
        out["has_null"] = 0
        out["element_type"] = _FLOAT4_OID
        if labels:
            out["size"] = labels
            out["lower_bound"] = 1
            out["values"]["length"] = 4
            out["values"]["value"] = probabilities
        out["project_length"] = 8
        out["project"] = project_id
        out["time_length"] = 8
        out["time"] = microseconds
        parts.append(out.tobytes())
    parts.append(_COPY_TRAILER)
    return b"".join(parts)


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
