"""Train, score the pool, promote, roll back: the Django glue around learning/ml.

Two speeds share one path, `training_run_execute`. A fast run refits the classification head on cached
embeddings of the active model's body; a slow run fine-tunes a fresh body from the base model (capped steps)
and re-embeds the pool in resumable chunks. Both end the same way: evaluate on the reserved evaluation set,
save in SetFit's format, and, when the project's promotion policy agrees, switch the active model and rescore
the whole queue in one transaction. The model that served before keeps serving until that commit.
"""

from __future__ import annotations

import filecmp
import io
import logging
import os
import shutil
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ObjectDoesNotExist
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from annotation.models import Adjudication, AnnotationRevision, Document, Label, Project, Taxonomy
from annotation.selectors import final_labels_for
from annotation.services.audit import audit_record
from annotation.services.liveness import Heartbeat, stale_seconds
from learning import selectors
from learning.exceptions import ActiveVersionChanged, ModelSwitchRefused, RunAbandoned, TrainingRefused
from learning.ml.checkpoint import FineTuneCheckpoint
from learning.ml.classifier import MIN_LABELLED_DOCUMENTS, Classifier, TrainingArgs
from learning.ml.coldstart import diverse_sample
from learning.ml.exceptions import FineTuneInterrupted, NotEnoughLabels
from learning.ml.label_descriptions import LabelText, anchor_rows, encode_label_texts, zero_shot_probabilities
from learning.ml.metrics import evaluate
from learning.ml.strategies import get_strategy, top_k
from learning.models import (
    DESCRIPTIONS_VERSION,
    EmbeddingShard,
    EvaluationReservation,
    LearningState,
    ModelVersion,
    QueuePriority,
    TrainingRun,
)

logger = logging.getLogger(__name__)

Kind = ModelVersion.Kind
RunStatus = TrainingRun.Status
VersionStatus = ModelVersion.Status
ProgressCallback = Callable[[int, int], None]

# Documents per embedding shard: each finished chunk is on disk, so an interrupted encoding resumes there.
SHARD_SIZE = 2048
# Past this many shards for one body, they are merged into one file (imports add small shards).
MAX_SHARDS = 32
# Cold start asks for at least this many diverse documents before any model exists.
COLD_START_PICKS = 20
# Batch strategies pick the first documents of the queue among this many of the most uncertain.
SELECT_CANDIDATES = 1000
# A queued run older than this with nothing running is enqueued again (its message may have been lost).
REKICK_QUEUED_AFTER = timedelta(seconds=30)
# Progress is written at most this often, so a fast encoder does not hammer the database.
PROGRESS_EVERY_SECONDS = 1.0
# Files at least this large that equal the reference version's are hard-linked instead of copied.
LINK_MIN_BYTES = 64 * 1024


def fine_tune_max_steps() -> int:
    """Default cap on body fine-tuning steps (~3 s per step of 16 pairs on two cores)."""
    return int(getattr(settings, "DOCKET_FINE_TUNE_MAX_STEPS", 100))


def stale_after() -> timedelta:
    """A running run whose heartbeat is older than this lost its worker."""
    return timedelta(seconds=stale_seconds())


def max_attempts() -> int:
    """How often a run is started in all when its worker is lost or its database connection drops."""
    return int(getattr(settings, "DOCKET_TRAINING_MAX_ATTEMPTS", 3))


# Errors that say nothing about the run itself: the database connection went away under it. Such a run is
# started again (up to max_attempts()); any other error ends it "failed" with that error.
CONNECTION_ERRORS = (OperationalError, InterfaceError)


def artifact_root() -> Path:
    return Path(settings.ARTIFACT_DIR)


def project_files_remove(project_id: int) -> None:
    """Delete what the learning side keeps on disk for a deleted project."""
    for path in selectors.project_files(project_id):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@dataclass
class _Vanished:
    deleted: bool = False


@contextmanager
def project_may_vanish(project_id: int) -> Iterator[_Vanished]:
    """`with project_may_vanish(id) as gone:` a task that finds its project deleted mid-way (a row gone, a
    foreign key that no longer holds) stops quietly, sets `gone.deleted` and removes the files it wrote after
    the deletion; any other error, or the same error while the project still exists, passes on."""
    outcome = _Vanished()
    try:
        yield outcome
    except (IntegrityError, ObjectDoesNotExist, RunAbandoned):
        if connection.in_atomic_block or Project.objects.filter(pk=project_id).exists():
            raise
        project_files_remove(project_id)
        outcome.deleted = True
        logger.info("Project %s was deleted while a task worked on it; stopped quietly", project_id)


def base_model_for(project: Project) -> str | None:
    """The project's base SentenceTransformer directory, or the site default, or None for the packaged one."""
    return project.base_model or getattr(settings, "DOCKET_BASE_MODEL", "") or None


# --- Embedding cache -----------------------------------------------------------------------------------------


# The last bodies' caches read by this process, by (project, body): shard ids and the merged arrays. Shards
# never change once written, so a memo is valid as long as its shards are still listed; new shards are read
# and merged in, so a fast run reads a 100,000-document cache from disk once, not once per step.
_read_caches: OrderedDict[tuple[int, str], tuple[frozenset[int], np.ndarray, np.ndarray]] = OrderedDict()
READ_CACHES_KEPT = 2


def cached_embeddings(*, project_id: int, body_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Every cached (document ids, float32 vectors) of the project under this body; ids sorted and unique.

    The arrays may be shared with later callers: read them, never write to them.
    """
    key = (project_id, body_id)
    for _attempt in range(3):
        shards = list(
            EmbeddingShard.objects.filter(project_id=project_id, body_id=body_id)
            .order_by("id")
            .values_list("id", "path")
        )
        listed = frozenset(pk for pk, _ in shards)
        memo = _read_caches.get(key)
        if memo is not None and memo[0] == listed:
            _read_caches.move_to_end(key)
            return memo[1], memo[2]
        base_ids, base_vectors, known = np.empty(0, dtype=np.int64), None, frozenset()
        if memo is not None and memo[0] <= listed:
            base_ids, base_vectors, known = memo[1], memo[2], memo[0]
        ids_parts: list[np.ndarray] = [base_ids] if base_vectors is not None else []
        vector_parts: list[np.ndarray] = [base_vectors] if base_vectors is not None else []
        try:
            for pk, path in shards:
                if pk in known:
                    continue
                with np.load(artifact_root() / path) as data:
                    ids_parts.append(data["ids"])
                    vector_parts.append(data["vectors"])
        except FileNotFoundError:
            # Another worker merged these shards after we listed them; the merged one is listed now.
            continue
        break
    else:
        raise RuntimeError(f"embedding shards of {body_id} keep disappearing while being read")
    if not ids_parts:
        return np.empty(0, dtype=np.int64), np.empty((0, 0), dtype=np.float32)
    ids = np.concatenate(ids_parts)
    vectors = np.concatenate(vector_parts)
    # Stable sort keeps shard order among duplicates; the last of each run is the newest.
    order = np.argsort(ids, kind="stable")
    ids, vectors = ids[order], vectors[order]
    newest = np.ones(len(ids), dtype=bool)
    newest[:-1] = ids[1:] != ids[:-1]
    ids, vectors = ids[newest], vectors[newest]
    ids.flags.writeable = False
    vectors.flags.writeable = False
    _read_caches[key] = (listed, ids, vectors)
    _read_caches.move_to_end(key)
    while len(_read_caches) > READ_CACHES_KEPT:
        _read_caches.popitem(last=False)
    return ids, vectors


def embeddings_for(
    *,
    project_id: int,
    body_id: str,
    document_ids: np.ndarray | Sequence[int],
    encode: Callable[..., np.ndarray] | None,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Embeddings of these documents under this body, in their order: cached ones read, the rest encoded.

    `encode(texts, progress_callback=...)` is the body's encoder (`Classifier.encode`). Missing documents are
    encoded in chunks of SHARD_SIZE, each stored as a shard before the next starts. With `encode=None`, a
    missing document is an error.
    """
    document_ids = np.asarray(document_ids, dtype=np.int64)
    ids, vectors = cached_embeddings(project_id=project_id, body_id=body_id)
    found, rows = _lookup(ids, document_ids)
    missing = document_ids[~found]
    new_vectors = np.empty((0, 0), dtype=np.float32)
    if len(missing):
        if encode is None:
            raise LookupError(f"{len(missing)} documents have no cached embedding under {body_id}")
        new_vectors = _encode_and_store(project_id, body_id, missing, encode, progress)
    elif progress is not None:
        progress(0, 0)
    dim = vectors.shape[1] if len(ids) else new_vectors.shape[1] if len(missing) else 0
    out = np.empty((len(document_ids), dim), dtype=np.float32)
    if found.any():
        out[found] = vectors[rows[found]]
    if len(missing):
        out[~found] = new_vectors
    if len(missing) and EmbeddingShard.objects.filter(project_id=project_id, body_id=body_id).count() > MAX_SHARDS:
        embedding_shards_compact(project_id=project_id, body_id=body_id)
    return out


def cached_embeddings_only(*, project_id: int, body_id: str, document_ids: np.ndarray) -> np.ndarray | None:
    """Cached embeddings of all these documents, or None when any is missing (nothing is encoded)."""
    ids, vectors = cached_embeddings(project_id=project_id, body_id=body_id)
    found, rows = _lookup(ids, np.asarray(document_ids, dtype=np.int64))
    if not found.all():
        return None
    return vectors[rows]


def embedding_shards_compact(*, project_id: int, body_id: str) -> EmbeddingShard | None:
    """Merge a body's shards into one file, dropping documents that no longer exist."""
    listed = list(EmbeddingShard.objects.filter(project_id=project_id, body_id=body_id).values_list("id", "path"))
    ids, vectors = cached_embeddings(project_id=project_id, body_id=body_id)
    if not len(ids):
        return None
    alive = np.fromiter(
        Document.objects.filter(project_id=project_id).values_list("pk", flat=True).order_by("pk"), dtype=np.int64
    )
    keep = np.isin(ids, alive, assume_unique=True)
    with transaction.atomic():
        merged = _shard_write(project_id, body_id, ids[keep], vectors[keep])
        EmbeddingShard.objects.filter(pk__in=[pk for pk, _ in listed]).delete()
        old_paths = [artifact_root() / path for _, path in listed]
        transaction.on_commit(lambda: _unlink_quietly(old_paths))
    return merged


def _lookup(sorted_ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(sorted_ids):
        return np.zeros(len(wanted), dtype=bool), np.zeros(len(wanted), dtype=np.int64)
    rows = np.searchsorted(sorted_ids, wanted)
    rows = np.minimum(rows, len(sorted_ids) - 1)
    return sorted_ids[rows] == wanted, rows


def _encode_and_store(
    project_id: int,
    body_id: str,
    missing: np.ndarray,
    encode: Callable[..., np.ndarray],
    progress: ProgressCallback | None,
) -> np.ndarray:
    total = len(missing)
    parts: list[np.ndarray] = []
    for start in range(0, total, SHARD_SIZE):
        chunk = missing[start : start + SHARD_SIZE]
        texts_by_id = dict(Document.objects.filter(pk__in=chunk.tolist()).values_list("pk", "text"))
        texts = [texts_by_id.get(int(pk), "") for pk in chunk]

        def chunk_progress(done: int, _chunk_total: int, offset: int = start) -> None:
            if progress is not None:
                progress(offset + done, total)

        vectors = np.asarray(encode(texts, progress_callback=chunk_progress), dtype=np.float32)
        _shard_write(project_id, body_id, chunk, vectors)
        parts.append(vectors)
    return np.concatenate(parts)


def _shard_write(project_id: int, body_id: str, ids: np.ndarray, vectors: np.ndarray) -> EmbeddingShard:
    relative = Path("embeddings") / str(project_id) / body_id / f"{uuid.uuid4().hex}.npz"
    path = artifact_root() / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(scratch, "wb") as handle:
        np.savez(handle, ids=np.asarray(ids, dtype=np.int64), vectors=np.asarray(vectors, dtype=np.float32))
    os.replace(scratch, path)
    return EmbeddingShard.objects.create(
        project_id=project_id,
        body_id=body_id,
        path=str(relative),
        document_count=len(ids),
        dimension=int(vectors.shape[1]) if vectors.ndim == 2 else 0,
    )


def _unlink_quietly(paths: Sequence[Path]) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


# --- Evaluation set ------------------------------------------------------------------------------------------


def _state_lock(project_id: int) -> LearningState:
    """The project's learning row, locked until the transaction ends: switches and claims queue up here."""
    LearningState.objects.get_or_create(project_id=project_id)
    return LearningState.objects.select_for_update().get(project_id=project_id)


def evaluation_reserve(*, project: Project) -> int:
    """Give every document not yet considered its chance of joining the evaluation set; returns how many joined.

    A random `eval_fraction` of the documents is reserved, imported labeled ones included. A document the
    learner already scored and a reviewer labeled is never reserved: it was chosen, not drawn at random.
    """
    with transaction.atomic():
        state = _state_lock(project.pk)
        new = (
            Document.objects.filter(project=project, pk__gt=state.reserved_through_document_id)
            .order_by("pk")
            .values_list("pk", "status", "queue_priority__model_version")
        )
        rows = list(new)
        if not rows:
            return 0
        eligible = [pk for pk, status, scored_by in rows if status == Document.Status.QUEUED or scored_by is None]
        rng = np.random.default_rng()
        # Randomised rounding keeps the expected share exact even when documents arrive a few at a time.
        count = min(len(eligible), int(np.floor(project.eval_fraction * len(eligible) + rng.random())))
        chosen = rng.choice(np.asarray(eligible, dtype=np.int64), size=count, replace=False) if count else []
        EvaluationReservation.objects.bulk_create(
            [EvaluationReservation(document_id=int(pk), project=project) for pk in chosen], ignore_conflicts=True
        )
        state.reserved_through_document_id = rows[-1][0]
        state.save(update_fields=["reserved_through_document_id"])
    return len(chosen)


def interleaved_scores(n_learner: int, n_evaluation: int, eval_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Queue scores (higher first) for documents in the learner's order and evaluation documents in theirs.

    Positions are rank-based: an evaluation document comes about every 1/eval_fraction places, so the
    evaluation set is labeled at that rate, in random order, whatever the model thinks of it.
    """
    learner_positions = (np.arange(n_learner) + 1.0) / max(1.0 - eval_fraction, 1e-9)
    if eval_fraction > 0:
        # Half a slot off the learner's grid, so the two never tie.
        evaluation_positions = (np.arange(n_evaluation) + 0.5) / eval_fraction + 1e-6
    else:
        evaluation_positions = n_learner + 1.0 + np.arange(n_evaluation)
    last = max(learner_positions.max(initial=0.0), evaluation_positions.max(initial=0.0))
    return 1.0 - learner_positions / (last + 1.0), 1.0 - evaluation_positions / (last + 1.0)


# --- What the model learns from --------------------------------------------------------------------------------


@dataclass
class LabelSnapshot:
    """The labels a run trains and evaluates on, read once at its start."""

    label_keys: list[str]
    labels: list[dict[str, Any]]
    taxonomy_version: int
    multi_label: bool
    train_ids: np.ndarray
    train_targets: list[Any]
    eval_ids: np.ndarray
    eval_targets: list[Any]
    label_events: int


def label_event_count(project: Project) -> int:
    """Label events so far, the retraining clock: every stored or changed answer (one revision each) and
    every adjudication (which changes a disputed document's final label without touching any answer)."""
    return (
        AnnotationRevision.objects.filter(annotation__document__project=project).count()
        + Adjudication.objects.filter(document__project=project).count()
    )


def label_snapshot(project: Project) -> LabelSnapshot:
    """Final labels of the labeled documents, split into training and evaluation by the reservation."""
    labels = list(
        Label.objects.filter(taxonomy__project=project, deprecated=False)
        .order_by("order", "id")
        .values("id", "key", "name")
    )
    keys = [label["key"] for label in labels]
    known = set(keys)
    taxonomy_version = Taxonomy.objects.filter(project=project).values_list("version", flat=True).first() or 0
    events = label_event_count(project)
    labeled = Document.objects.filter(project=project, status=Document.Status.LABELED).values_list("pk", flat=True)
    by_document = final_labels_for(labeled)
    reserved = set(EvaluationReservation.objects.filter(project=project).values_list("document_id", flat=True))
    train_ids, train_targets, eval_ids, eval_targets = [], [], [], []
    for document_id in sorted(by_document):
        # Adjudicated, gold, unanimous or single-reviewer labels; disputed documents wait for a decision.
        chosen = [key for key in by_document[document_id].labels if key in known]
        if not chosen:
            continue
        target: Any = chosen if project.multi_label else chosen[0]
        if document_id in reserved:
            eval_ids.append(document_id)
            eval_targets.append(target)
        else:
            train_ids.append(document_id)
            train_targets.append(target)
    return LabelSnapshot(
        label_keys=keys,
        labels=labels,
        taxonomy_version=taxonomy_version,
        multi_label=project.multi_label,
        train_ids=np.asarray(train_ids, dtype=np.int64),
        train_targets=train_targets,
        eval_ids=np.asarray(eval_ids, dtype=np.int64),
        eval_targets=eval_targets,
        label_events=events,
    )


def training_refusal(snapshot: LabelSnapshot) -> str | None:
    """Why a model cannot be trained on these labels yet, in words for the models page; None when it can."""
    if len(snapshot.label_keys) < 2:
        return "The taxonomy has fewer than two labels in use; add labels before training a model."
    n = len(snapshot.train_ids)
    held = len(snapshot.eval_ids)
    if n < MIN_LABELLED_DOCUMENTS:
        return (
            f"Training needs at least {MIN_LABELLED_DOCUMENTS} labeled documents outside the evaluation set; "
            f"there are {n} so far ({held} more are reserved for evaluation). Label more documents."
        )
    names = {label["key"]: label["name"] for label in snapshot.labels}
    if snapshot.multi_label:
        counts: dict[str, int] = {}
        for target in snapshot.train_targets:
            for key in target:
                counts[key] = counts.get(key, 0) + 1
        if not any(0 < c < n for c in counts.values()):
            return (
                f"All {n} labeled documents carry the same labels; label documents whose labels differ "
                "before training a model."
            )
    else:
        present = set(snapshot.train_targets)
        if len(present) < 2:
            only = names.get(next(iter(present)), next(iter(present)))
            return (
                f"All {n} labeled documents carry the same label, “{only}”; label at least one document "
                "with another label before training a model."
            )
    return None


# --- Classifiers held by this worker process --------------------------------------------------------------------

# Loading a body costs about a second; the fast loop reuses the active model's and the base model's.
_held: OrderedDict[str, Classifier] = OrderedDict()
HELD_CLASSIFIERS = 2


def _held_classifier(version: ModelVersion | None, project: Project) -> Classifier:
    """A loaded classifier to encode and predict with; never fitted in place (shared across runs)."""
    if version is not None:
        key = f"version:{version.artifact_dir}"
    else:
        key = f"base:{base_model_for(project) or ''}:{project.multi_label}"
    if key in _held:
        _held.move_to_end(key)
        return _held[key]
    if version is not None:
        classifier = Classifier.load(version.artifact_dir)
    else:
        # The labels do not matter for encoding; a classifier needs two of them to exist.
        classifier = Classifier.create(["a", "b"], project.multi_label, base_model_for(project))
    _held[key] = classifier
    while len(_held) > HELD_CLASSIFIERS:
        _held.popitem(last=False)
    return classifier


def _classifier_on_body(source: Classifier, labels: list[str], multi_label: bool, args: TrainingArgs) -> Classifier:
    """A new, untrained classifier sharing `source`'s body (read-only on the fast path), for these labels.

    Adapter over learning.ml: it has no call for "same body, new head and label set", so this builds the
    SetFitModel the way `Classifier.create` does and keeps the source's body id for the embedding cache.
    """
    from setfit import SetFitModel

    model = SetFitModel(
        model_body=source.setfit_model.model_body,
        model_head=None,
        multi_target_strategy="one-vs-rest" if multi_label else None,
        normalize_embeddings=source.setfit_model.normalize_embeddings,
        labels=list(labels),
    )
    return Classifier(
        model,
        labels=labels,
        multi_label=multi_label,
        args=args,
        base_model=source.base_model,
        body_id=source.body_id,
    )


# --- Scoring the pool ----------------------------------------------------------------------------------------


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
    values = list(rows.values_list("pk", "random_key", "evaluation_reservation__pk"))
    if not values:
        return np.empty(0, dtype=np.int64), np.empty(0), np.empty(0, dtype=bool)
    ids = np.fromiter((v[0] for v in values), dtype=np.int64, count=len(values))
    keys = np.fromiter((v[1] for v in values), dtype=np.float64, count=len(values))
    reserved = np.fromiter((v[2] is not None for v in values), dtype=bool, count=len(values))
    return ids, keys, reserved


def learner_order(
    project: Project,
    probabilities: np.ndarray,
    embeddings: np.ndarray,
    labelled_embeddings: np.ndarray | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Pool row indices, the first to ask first: the strategy's next batch, then the rest by its scores."""
    n = len(probabilities)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    strategy = get_strategy(project.query_strategy, multi_label=project.multi_label)
    scores = np.asarray(strategy.scores(probabilities, rng=rng), dtype=np.float64)
    batch = min(n, max(1, project.fast_retrain_every))
    # The diverse strategy clusters 40 candidates per pick; the others need far fewer.
    candidates = top_k(scores, min(n, max(SELECT_CANDIDATES, 40 * batch)), rng)
    picked = strategy.select(
        probabilities[candidates],
        batch,
        embeddings=embeddings[candidates],
        labelled_embeddings=labelled_embeddings,
        rng=rng,
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
    progress: ProgressCallback | None = None,
) -> PoolScores:
    """Score every queued document with the classifier (vectorised) and place evaluation documents among them."""
    started = time.monotonic()
    ids, _keys, reserved = queued_pool(project)
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
    order = learner_order(project, probabilities, embeddings, labelled_embeddings, rng)
    learner_scores, eval_scores = interleaved_scores(len(order), int(reserved.sum()), project.eval_fraction)
    scores = np.empty(len(ids), dtype=np.float64)
    learner_score_by_row = np.empty(len(learner_ids), dtype=np.float64)
    learner_score_by_row[order] = learner_scores
    scores[~reserved] = learner_score_by_row
    scores[reserved] = _evaluation_scores(ids[reserved], eval_scores)
    return PoolScores(
        document_ids=ids,
        scores=scores,
        model_version=version_number,
        probabilities=probabilities,
        label_keys=list(classifier.labels),
        learner_mask=~reserved,
        timings={"embed_pool": embedded - started, "score": time.monotonic() - embedded},
    )


def _evaluation_scores(evaluation_ids: np.ndarray, scores_in_order: np.ndarray) -> np.ndarray:
    """Evaluation documents take the evaluation slots in a random order fixed by their random key."""
    if not len(evaluation_ids):
        return np.empty(0)
    keys = dict(Document.objects.filter(pk__in=evaluation_ids.tolist()).values_list("pk", "random_key"))
    order = np.argsort([keys.get(int(pk), 0.0) for pk in evaluation_ids], kind="stable")
    out = np.empty(len(evaluation_ids))
    out[order] = scores_in_order
    return out


def _priorities_write(project_id: int, pool: PoolScores) -> int:
    """Upsert QueuePriority for the whole pool in one statement (COPY on PostgreSQL); call inside a transaction."""
    n = len(pool.document_ids)
    if n == 0:
        return 0
    json_rows = _probability_json(pool)
    versions = np.where(pool.learner_mask, pool.model_version if pool.model_version is not None else -1, -1)
    if connection.vendor == "postgresql" and hasattr(connection.connection, "cursor"):
        table = QueuePriority._meta.db_table
        document_table = Document._meta.db_table
        buffer = io.StringIO()
        for document_id, score, version, probabilities in zip(
            pool.document_ids.tolist(), pool.scores.tolist(), versions.tolist(), json_rows, strict=True
        ):
            version_text = "\\N" if version < 0 else str(version)
            buffer.write(f"{document_id}\t{score!r}\t{version_text}\t{probabilities.replace(chr(92), chr(92) * 2)}\n")
        buffer.seek(0)
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS docket_priority_load")
            cursor.execute(
                "CREATE TEMP TABLE docket_priority_load (document_id bigint, score double precision, "
                "model_version integer, probabilities jsonb) ON COMMIT DROP"
            )
            cursor.copy_expert("COPY docket_priority_load FROM STDIN", buffer)
            cursor.execute(
                f"INSERT INTO {table} (document_id, project_id, score, model_version, probabilities, updated_at) "
                f"SELECT l.document_id, %s, l.score, l.model_version, l.probabilities, now() "
                f"FROM docket_priority_load l JOIN {document_table} d ON d.id = l.document_id "
                "ON CONFLICT (document_id) DO UPDATE SET project_id = EXCLUDED.project_id, score = EXCLUDED.score, "
                "model_version = EXCLUDED.model_version, probabilities = EXCLUDED.probabilities, "
                "updated_at = EXCLUDED.updated_at",
                [project_id],
            )
            return cursor.rowcount
    import json

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
        project, classifier, active.number, labelled_embeddings=_labelled_embeddings(project, active.body_id)
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
    scores[reserved] = _evaluation_scores(ids[reserved], eval_scores)
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


# --- Training runs: asking, coalescing, claiming ---------------------------------------------------------------


def training_run_request(
    *,
    project: Project,
    kind: str,
    trigger: str,
    requested_by: AbstractBaseUser | None = None,
    label_events: int | None = None,
    max_steps: int | None = None,
) -> TrainingRun:
    """Ask for a training run; a queued run of the same kind absorbs the request (coalescing), else one is queued.

    Fast and slow runs have a lane each: a head refit never waits for a body fine-tune of the same project (it
    trains on the serving body meanwhile), and whichever finishes later is compared with what serves by then.
    In each lane one run trains and at most one follow-up waits (partial unique indexes enforce both); the
    follow-up's task is enqueued when the running one ends.
    """
    if label_events is None:
        label_events = label_event_count(project)
    user = requested_by if requested_by is not None and requested_by.is_authenticated else None
    with transaction.atomic():
        _state_lock(project.pk)
        lane = TrainingRun.objects.filter(project=project, kind=kind)
        queued = lane.select_for_update().filter(status=RunStatus.QUEUED).first()
        running = lane.filter(status=RunStatus.RUNNING).exists()
        if queued is not None:
            changed = []
            if trigger == TrainingRun.Trigger.ADMIN and queued.trigger != trigger:
                queued.trigger, queued.requested_by = trigger, user
                changed += ["trigger", "requested_by"]
            if label_events > queued.label_events:
                queued.label_events = label_events
                changed.append("label_events")
            if max_steps is not None and queued.max_steps != max_steps:
                queued.max_steps = max_steps
                changed.append("max_steps")
            if changed:
                queued.save(update_fields=changed)
            if not running and timezone.now() - queued.created_at > REKICK_QUEUED_AFTER:
                _enqueue_on_commit(queued)
            return queued
        run = TrainingRun.objects.create(
            project=project,
            kind=kind,
            trigger=trigger,
            requested_by=user,
            label_events=label_events,
            max_steps=max_steps,
            phase=f"Waiting for the {kind} run in progress to end" if running else "Waiting for a worker",
        )
        if user is not None:
            audit_record(action="model.train_requested", actor=user, project=project, target=run, after={"kind": kind})
        if not running:
            _enqueue_on_commit(run)
    return run


def training_due(project: Project, label_events: int) -> str | None:
    """Which run the new labels call for: slow every `slow_retrain_every` events, fast every `fast_retrain_every`.

    Events are counted since the last run that did not fail (queued, running, succeeded or refused runs cover
    the events they saw), so a burst of labels asks once and a refused run does not ask again at once.
    """
    covering = TrainingRun.objects.filter(project=project).exclude(status=RunStatus.FAILED)
    last_any = covering.aggregate(m=Max("label_events"))["m"] or 0
    last_slow = covering.filter(kind=Kind.SLOW).aggregate(m=Max("label_events"))["m"] or 0
    if label_events - last_slow >= project.slow_retrain_every:
        return Kind.SLOW
    if label_events - last_any >= project.fast_retrain_every:
        return Kind.FAST
    return None


def training_on_labels_changed(*, project_id: int) -> TrainingRun | None:
    """What `labels_changed` does: fail dead runs, ask for a run if one is due, keep the queue scored."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return None
    training_runs_fail_stale(project_id=project.pk)
    events = label_event_count(project)
    kind = training_due(project, events) or _taxonomy_retrain_due(project)
    run = None
    if kind is not None:
        run = training_run_request(project=project, kind=kind, trigger=TrainingRun.Trigger.LABELS, label_events=events)
    else:
        _rekick_queued(project)
    if (
        pool_needs_scoring(project)
        and not TrainingRun.objects.filter(project=project, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).exists()
    ):
        _enqueue_rescore_on_commit(project.pk)
    return run


def _taxonomy_retrain_due(project: Project) -> str | None:
    """A fast run when the taxonomy changed under the active model and no run has started since the change."""
    taxonomy = Taxonomy.objects.filter(project=project).first()
    active = ModelVersion.objects.filter(project=project, status=VersionStatus.ACTIVE).first()
    if taxonomy is None or active is None or active.taxonomy_version == taxonomy.version:
        return None
    since = TrainingRun.objects.filter(project=project, created_at__gte=taxonomy.updated_at)
    if since.exclude(status=RunStatus.FAILED).exists():
        return None
    return Kind.FAST


def training_request_now(*, project: Project, actor: AbstractBaseUser, max_steps: int | None = None) -> TrainingRun:
    """An admin's "Train now": a slow run (body fine-tuned), after clearing runs whose worker died."""
    training_runs_fail_stale(project_id=project.pk)
    return training_run_request(
        project=project, kind=Kind.SLOW, trigger=TrainingRun.Trigger.ADMIN, requested_by=actor, max_steps=max_steps
    )


def pool_rescore_request(*, project: Project) -> None:
    """Ask a worker to rescore the queue (after an import, or to lay out cold-start picks)."""
    _enqueue_rescore_on_commit(project.pk)


def _rekick_queued(project: Project) -> None:
    """Enqueue a queued run again when nothing runs in its lane and it has waited long: its message may be lost."""
    for queued in TrainingRun.objects.filter(project=project, status=RunStatus.QUEUED):
        if TrainingRun.objects.filter(project=project, kind=queued.kind, status=RunStatus.RUNNING).exists():
            continue
        if timezone.now() - queued.created_at > REKICK_QUEUED_AFTER:
            _enqueue(queued.pk, queued.kind)


def _enqueue_on_commit(run: TrainingRun) -> None:
    run_id, kind = run.pk, run.kind
    transaction.on_commit(lambda: _enqueue(run_id, kind))


def _enqueue(run_id: int, kind: str) -> None:
    from learning import tasks

    task = tasks.train_slow if kind == Kind.SLOW else tasks.train_fast
    try:
        task.delay(run_id)
    except Exception:  # the broker is down: the run stays queued and the sweeper sends it again
        logger.exception("Could not enqueue training run %s", run_id)
        return
    TrainingRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(enqueued_at=timezone.now())


def _enqueue_rescore_on_commit(project_id: int) -> None:
    def enqueue() -> None:
        from learning import tasks

        try:
            tasks.rescore_pool.delay(project_id)
        except Exception:  # as above: the next trigger asks again
            logger.exception("Could not enqueue rescoring of project %s", project_id)

    transaction.on_commit(enqueue)


def training_runs_fail_stale(*, project_id: int | None = None, now: datetime | None = None) -> int:
    """End runs whose worker stopped sending heartbeats: each is started again (while attempts remain) or
    marked failed, so training goes on; returns how many were ended."""
    now = now or timezone.now()
    stale = TrainingRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=now - stale_after())
    if project_id is not None:
        stale = stale.filter(project_id=project_id)
    count = 0
    for run_id, heartbeat, task_id in stale.values_list("pk", "heartbeat_at", "celery_task_id"):
        message = (
            f"The worker training this model stopped sending heartbeats at {heartbeat:%Y-%m-%d %H:%M:%S} UTC: "
            "it was stopped or killed (out of memory, a restart), or its machine went away. The active model "
            "was not changed."
        )
        if _run_retry_or_fail(run_id, task_id=task_id, error=message, retry=True, stale_before=now - stale_after()):
            count += 1
    return count


def _run_retry_or_fail(
    run_id: int, *, task_id: str, error: str, retry: bool, stale_before: datetime | None = None
) -> str | None:
    """End this task's attempt at a running run: queue it again when `retry` and attempts remain (and no other
    run waits), else mark it failed with `error`. Returns "queued", "failed", or None when it was not ours.

    `stale_before`: only if the run's heartbeat is still older than this (a sweeper's view may be outdated).
    """
    project_id = TrainingRun.objects.filter(pk=run_id).values_list("project_id", flat=True).first()
    if project_id is None:
        return None
    with transaction.atomic():
        _state_lock(project_id)
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != RunStatus.RUNNING or run.celery_task_id != task_id:
            return None
        if stale_before is not None and run.heartbeat_at is not None and run.heartbeat_at >= stale_before:
            return None
        waiting = TrainingRun.objects.filter(project_id=project_id, kind=run.kind, status=RunStatus.QUEUED).exists()
        if not retry or run.attempts >= max_attempts() or waiting:
            if retry and run.attempts >= max_attempts():
                error = f"{error} Gave up after {run.attempts} attempts."
            _run_end(run_id, task_id=task_id, status=RunStatus.FAILED, error=error)
            return "failed"
        now = timezone.now()
        ModelVersion.objects.filter(training_runs=run, status=VersionStatus.TRAINING).update(
            status=VersionStatus.FAILED, error=f"Interrupted: {error}", finished_at=now
        )
        run.status = RunStatus.QUEUED
        run.error = f"Attempt {run.attempts} of {max_attempts()} was interrupted: {error} Started again."
        run.phase = "Starting again after an interruption"
        run.celery_task_id = ""
        run.heartbeat_at = None
        run.progress_done = run.progress_total = 0
        run.model_version = None
        run.save(
            update_fields=[
                "status",
                "error",
                "phase",
                "celery_task_id",
                "heartbeat_at",
                "progress_done",
                "progress_total",
                "model_version",
            ]
        )
        _enqueue_on_commit(run)
    logger.warning("Training run %s was interrupted and queued again: %s", run_id, error)
    return "queued"


def training_runs_rekick(*, now: datetime | None = None) -> int:
    """Send queued runs to the broker again when nothing runs in their lane and their message seems lost
    (the broker was down when they were asked for, or lost them). Waits double each time; returns how many."""
    now = now or timezone.now()
    busy = set(TrainingRun.objects.filter(status=RunStatus.RUNNING).values_list("project_id", "kind"))
    queued = TrainingRun.objects.filter(status=RunStatus.QUEUED, created_at__lt=now - REKICK_QUEUED_AFTER)
    count = 0
    for run in queued:
        if (run.project_id, run.kind) in busy:
            continue  # the running one of its lane enqueues it when it ends
        sent = run.enqueued_at or run.created_at
        if now - sent < max(REKICK_QUEUED_AFTER, sent - run.created_at):
            continue
        _enqueue(run.pk, run.kind)
        count += 1
    return count


def _run_claim(run_id: int, task_id: str) -> TrainingRun | None:
    """Move a queued run to running for this task; None when it is not this task's to run (yet or any more).

    The same Celery message delivered again (its worker died or stopped before acknowledging it) takes the run
    over: the half-trained version of the lost attempt is marked failed and training starts again, a fine-tune
    from its last checkpoint.
    """
    project_id = TrainingRun.objects.filter(pk=run_id).values_list("project_id", flat=True).first()
    if project_id is None:
        return None
    try:
        with transaction.atomic():
            _state_lock(project_id)
            run = TrainingRun.objects.select_for_update().get(pk=run_id)
            if run.status == RunStatus.RUNNING and task_id and run.celery_task_id == task_id:
                # The broker handed this message out again. While its first worker still beats, that worker
                # has it (a visibility timeout shorter than the run); only a silent one is taken over.
                if run.heartbeat_at is not None and run.heartbeat_at >= timezone.now() - stale_after():
                    return None
                ModelVersion.objects.filter(training_runs=run, status=VersionStatus.TRAINING).update(
                    status=VersionStatus.FAILED, error="Interrupted: the worker was lost; the run was retried."
                )
                run.model_version = None
            elif run.status != RunStatus.QUEUED:
                return None
            elif TrainingRun.objects.filter(project_id=project_id, kind=run.kind, status=RunStatus.RUNNING).exists():
                return None  # the running one of its lane enqueues this run when it ends
            now = timezone.now()
            run.status = RunStatus.RUNNING
            run.started_at = run.heartbeat_at = now
            run.celery_task_id = task_id
            run.attempts += 1
            run.phase, run.progress_done, run.progress_total = "Starting", 0, 0
            if run.attempts == 1:
                run.error = ""  # a retry keeps the note of what interrupted the attempt before
            run.save(
                update_fields=[
                    "status",
                    "started_at",
                    "heartbeat_at",
                    "celery_task_id",
                    "attempts",
                    "phase",
                    "progress_done",
                    "progress_total",
                    "error",
                    "model_version",
                ]
            )
    except IntegrityError:
        return None  # another run became running first; the database said no
    return run


def _run_end(run_id: int, *, task_id: str | None, status: str, error: str = "") -> bool:
    """Finish a running run as failed or refused (its training version fails with it); False if not ours."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != RunStatus.RUNNING:
            return False
        if task_id is not None and run.celery_task_id != task_id:
            return False
        run.status = status
        run.error = error
        run.finished_at = timezone.now()
        run.phase = "Refused" if status == RunStatus.REFUSED else "Failed"
        run.progress_done = min(run.progress_done, run.progress_total)
        run.save(update_fields=["status", "error", "finished_at", "phase", "progress_done"])
        ModelVersion.objects.filter(training_runs=run, status=VersionStatus.TRAINING).update(
            status=VersionStatus.FAILED, error=error, finished_at=run.finished_at
        )
        _kick_follow_up_on_commit(run.project_id, run.kind)
        transaction.on_commit(lambda: fine_tune_checkpoint(run_id).discard())
    return True


def _kick_follow_up_on_commit(project_id: int, kind: str) -> None:
    follow_up = TrainingRun.objects.filter(project_id=project_id, kind=kind, status=RunStatus.QUEUED).first()
    if follow_up is not None:
        _enqueue_on_commit(follow_up)


class _Progress:
    """Writes a run's phase and progress (throttled) and its heartbeat; stops the work if the run was taken away."""

    def __init__(self, run: TrainingRun) -> None:
        self.run_id = run.pk
        self.task_id = run.celery_task_id
        self._last_write = 0.0
        self._phase = ""
        self._key = ""
        self._phase_started = time.monotonic()
        self.timings: dict[str, float] = {}

    def phase(self, text: str, key: str, total: int = 0) -> None:
        self._close_phase()
        self._phase, self._key = text, key
        self._phase_started = time.monotonic()
        self._write(done=0, total=total)

    def __call__(self, done: int, total: int) -> None:
        if time.monotonic() - self._last_write >= PROGRESS_EVERY_SECONDS or done >= total:
            self._write(done=min(done, total), total=total)

    def close(self) -> dict[str, float]:
        self._close_phase()
        return self.timings

    def _close_phase(self) -> None:
        if self._phase:
            elapsed = time.monotonic() - self._phase_started
            self.timings[self._key] = round(self.timings.get(self._key, 0.0) + elapsed, 3)
            self._phase = ""

    def _write(self, *, done: int, total: int) -> None:
        self._last_write = time.monotonic()
        updated = TrainingRun.objects.filter(
            pk=self.run_id, status=RunStatus.RUNNING, celery_task_id=self.task_id
        ).update(phase=self._phase, progress_done=done, progress_total=total, heartbeat_at=timezone.now())
        if not updated:
            raise RunAbandoned(f"training run {self.run_id} is no longer this worker's")


# --- Training runs: the work ---------------------------------------------------------------------------------


@dataclass
class _Trained:
    classifier: Classifier
    metrics: dict[str, Any]
    reference_version: ModelVersion | None  # whose files equal ours (same body), for hard links
    labelled_embeddings: np.ndarray


def training_run_execute(*, run_id: int, task_id: str = "") -> TrainingRun | None:
    """Run a claimed training run to its end: refused, failed or succeeded (and maybe promoted).

    Safe to call twice for the same run: only the caller that claims it works on it.
    """
    project_id = TrainingRun.objects.filter(pk=run_id).values_list("project_id", flat=True).first()
    if project_id is None:
        return None
    training_runs_fail_stale(project_id=project_id)
    run = _run_claim(run_id, task_id)
    if run is None:
        return None
    progress = _Progress(run)
    started = time.monotonic()
    task = run.celery_task_id
    try:
        with Heartbeat(lambda: _run_heartbeat(run_id, task), name=f"heartbeat-run-{run_id}"):
            _run_work(run, progress, started)
    except (TrainingRefused, NotEnoughLabels) as refusal:
        _run_end(run.pk, task_id=task, status=RunStatus.REFUSED, error=str(refusal))
    except FineTuneInterrupted as stop:
        # The worker is stopping: the run stays "running" under this task, whose message goes back to the
        # broker; the worker that receives it again takes the run over and resumes from the checkpoint. Its
        # heartbeat is made old at once, so that delivery may take it over (and the sweeper queues it again if
        # the message is lost).
        logger.warning("Training run %s paused after %s of %s fine-tuning steps", run.pk, stop.steps_done, stop.steps)
        TrainingRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            phase=f"Paused after {stop.steps_done} of {stop.steps} steps: resumes when a worker is back",
            heartbeat_at=timezone.now() - stale_after() - timedelta(seconds=1),
        )
        raise
    except RunAbandoned:
        if not Project.objects.filter(pk=project_id).exists():
            project_files_remove(project_id)  # what this run wrote after the deletion cleared the rest
            return None
        logger.warning("Training run %s was ended elsewhere while this worker held it; stopping", run.pk)
    except Exception as error:
        lost_connection = isinstance(error, CONNECTION_ERRORS)
        if lost_connection or not connection.is_usable():
            # The error may have come from this very connection; the run is ended on a fresh one.
            connection.close()
        if not Project.objects.filter(pk=project_id).exists():
            project_files_remove(project_id)
            logger.info("Project %s was deleted while run %s trained; stopped quietly", project_id, run_id)
            return None
        outcome = _run_retry_or_fail(
            run_id, task_id=task, error=f"{type(error).__name__}: {error}".strip(), retry=lost_connection
        )
        if outcome != "queued":
            raise
        logger.warning("Training run %s lost its database connection; queued again", run_id, exc_info=True)
    finally:
        timings = progress.close()
        try:
            TrainingRun.objects.filter(pk=run.pk).update(timings=timings)
        except CONNECTION_ERRORS:
            connection.close()
    ended = TrainingRun.objects.filter(pk=run.pk).first()
    if ended is None or ended.is_finished:
        fine_tune_checkpoint(run.pk).discard()  # a run queued again keeps its checkpoint to resume from
    return ended


def _run_heartbeat(run_id: int, task_id: str) -> None:
    TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, celery_task_id=task_id).update(
        heartbeat_at=timezone.now()
    )


def _run_work(run: TrainingRun, progress: _Progress, started: float) -> None:
    project = Project.objects.get(pk=run.project_id)
    progress.phase("Reading labels", "read_labels")
    evaluation_reserve(project=project)
    snapshot = label_snapshot(project)
    TrainingRun.objects.filter(pk=run.pk).update(label_events=snapshot.label_events)
    refusal = training_refusal(snapshot)
    if refusal:
        raise TrainingRefused(refusal)
    args = TrainingArgs(max_steps=run.max_steps if run.max_steps is not None else fine_tune_max_steps())
    active = ModelVersion.objects.filter(project=project, status=VersionStatus.ACTIVE).first()
    version = _version_create(run, project, snapshot, args)
    if run.kind == Kind.SLOW:
        trained = _train_slow(project, snapshot, args, progress, run.pk)
    else:
        trained = _train_fast(project, snapshot, args, active, progress)

    progress.phase("Saving the model", "save")
    artifact_path = _artifact_save(trained.classifier, project, version, trained.reference_version)
    # The other lane may switch models while this one trains (a head refit during a fine-tune, or the
    # fine-tune ending during a refit): compare with whatever serves now, and again if it changes meanwhile.
    for attempt in range(1, OVERTAKEN_ATTEMPTS + 1):
        if attempt > 1:
            active = ModelVersion.objects.filter(project=project, status=VersionStatus.ACTIVE).first()
        progress.phase("Comparing with the active model", "compare")
        comparison = _compare_with_active(project, snapshot, trained.metrics, active)
        promote, reason = promotion_decision(
            policy=project.promotion_policy, has_active=active is not None, comparison=comparison
        )
        pool = None
        if promote:
            progress.phase("Scoring the queue", "score_pool")
            pool = _pool_scores(
                project,
                trained.classifier,
                version.number,
                labelled_embeddings=trained.labelled_embeddings,
                progress=progress,
            )
        progress.phase("Switching models" if promote else "Finishing", "switch")
        try:
            _run_finish(
                run=run,
                version=version,
                classifier=trained.classifier,
                metrics={**trained.metrics, "comparison": {**comparison, "promoted": promote, "reason": reason}},
                artifact_path=artifact_path,
                promote_over=active if promote else None,
                pool=pool,
                duration=time.monotonic() - started,
                progress=progress,
                retry_if_overtaken=attempt < OVERTAKEN_ATTEMPTS,
            )
            return
        except _Overtaken:
            continue


class _Overtaken(Exception):
    """Another model started serving between this run's comparison and its switch."""


# Comparisons a finished run makes when other runs keep switching models under it, before it gives up.
OVERTAKEN_ATTEMPTS = 3


def _version_create(run: TrainingRun, project: Project, snapshot: LabelSnapshot, args: TrainingArgs) -> ModelVersion:
    with transaction.atomic():
        _state_lock(project.pk)
        number = (ModelVersion.objects.filter(project=project).aggregate(m=Max("number"))["m"] or 0) + 1
        version = ModelVersion.objects.create(
            project=project,
            number=number,
            status=VersionStatus.TRAINING,
            kind=run.kind,
            taxonomy_version=snapshot.taxonomy_version,
            label_keys=snapshot.label_keys,
            labels=snapshot.labels,
            training_args=args.to_dict(),
            base_model=base_model_for(project) or "",
            train_label_count=len(snapshot.train_ids),
            eval_label_count=len(snapshot.eval_ids),
        )
        TrainingRun.objects.filter(pk=run.pk).update(model_version=version)
    return version


def _train_fast(
    project: Project,
    snapshot: LabelSnapshot,
    args: TrainingArgs,
    active: ModelVersion | None,
    progress: _Progress,
) -> _Trained:
    """Refit the head on cached embeddings of the serving body (the base body before any model)."""
    progress.phase("Loading the model body", "load")
    holder = _held_classifier(active, project)
    classifier = _classifier_on_body(holder, snapshot.label_keys, snapshot.multi_label, args)
    needed = np.concatenate([snapshot.train_ids, snapshot.eval_ids])
    progress.phase("Embedding labeled documents", "embed_labeled", total=len(needed))
    embeddings = embeddings_for(
        project_id=project.pk,
        body_id=classifier.body_id,
        document_ids=needed,
        encode=holder.encode,
        progress=progress,
    )
    n_train = len(snapshot.train_ids)
    progress.phase("Fitting the classifier head", "fit_head")
    anchors = _label_anchors(snapshot, args, holder.encode)
    classifier.fit_head(embeddings[:n_train], snapshot.train_targets, anchors=anchors)
    progress.phase("Evaluating", "evaluate")
    metrics = _evaluate(classifier, embeddings[n_train:], snapshot)
    reference = (
        ModelVersion.objects.filter(project=project, body_id=classifier.body_id)
        .exclude(artifact_path="")
        .order_by("-number")
        .first()
    )
    return _Trained(classifier, metrics, reference, embeddings[:n_train])


def fine_tune_checkpoint(run_id: int) -> FineTuneCheckpoint:
    """Where a run's fine-tune saves its progress: on the shared store, so any training worker can resume it."""
    return FineTuneCheckpoint(
        directory=artifact_root() / "checkpoints" / f"run-{run_id}",
        every_steps=int(getattr(settings, "DOCKET_FINE_TUNE_CHECKPOINT_STEPS", 10)),
    )


def _train_slow(
    project: Project, snapshot: LabelSnapshot, args: TrainingArgs, progress: _Progress, run_id: int
) -> _Trained:
    """Fine-tune a fresh body from the base model (capped), re-embed the pool under it, fit the head."""
    progress.phase("Loading the base model", "load")
    classifier = Classifier.create(snapshot.label_keys, snapshot.multi_label, base_model_for(project), args)
    texts_by_id = dict(Document.objects.filter(pk__in=snapshot.train_ids.tolist()).values_list("pk", "text").iterator())
    texts = [texts_by_id[int(pk)] for pk in snapshot.train_ids]
    progress.phase("Fine-tuning the body", "fine_tune", total=args.max_steps)
    classifier.fine_tune_body(
        texts, snapshot.train_targets, progress_callback=progress, checkpoint=fine_tune_checkpoint(run_id)
    )
    pool_ids, _keys, reserved = queued_pool(project)
    needed = np.concatenate([snapshot.train_ids, snapshot.eval_ids, pool_ids[~reserved]])
    progress.phase("Embedding documents with the new body", "embed", total=len(needed))
    embeddings = embeddings_for(
        project_id=project.pk,
        body_id=classifier.body_id,
        document_ids=needed,
        encode=classifier.encode,
        progress=progress,
    )
    n_train, n_eval = len(snapshot.train_ids), len(snapshot.eval_ids)
    progress.phase("Fitting the classifier head", "fit_head")
    anchors = _label_anchors(snapshot, args, classifier.encode)
    classifier.fit_head(embeddings[:n_train], snapshot.train_targets, anchors=anchors)
    progress.phase("Evaluating", "evaluate")
    metrics = _evaluate(classifier, embeddings[n_train : n_train + n_eval], snapshot)
    return _Trained(classifier, metrics, None, embeddings[:n_train])


def label_texts(label_ids: Sequence[int]) -> list[LabelText]:
    """Each label's own words (name, description, guideline), in the order of `label_ids`."""
    rows = {
        row["pk"]: row
        for row in Label.objects.filter(pk__in=list(label_ids)).values("pk", "name", "description", "guideline")
    }
    return [
        LabelText(name=rows[pk]["name"], description=rows[pk]["description"], guideline=rows[pk]["guideline"])
        for pk in label_ids
    ]


def _label_anchors(
    snapshot: LabelSnapshot, args: TrainingArgs, encode: Callable[[list[str]], np.ndarray]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The labels' own texts as extra training rows (encoded by the body the head is fitted on), or None."""
    if args.anchor_copies <= 0:
        return None
    vectors = encode_label_texts(label_texts([label["id"] for label in snapshot.labels]), encode)
    return anchor_rows(vectors, snapshot.multi_label)


def _evaluate(classifier: Classifier, embeddings: np.ndarray, snapshot: LabelSnapshot) -> dict[str, Any]:
    """learning.ml.metrics.evaluate on the evaluation set, or an empty record when nothing is reserved yet."""
    if not len(snapshot.eval_ids):
        return {"n_documents": 0, "macro_f1": None, "micro_f1": None}
    predicted = classifier.decide(classifier.predict_proba_embeddings(embeddings))
    return evaluate(snapshot.eval_targets, predicted, snapshot.label_keys, snapshot.multi_label)


def _compare_with_active(
    project: Project, snapshot: LabelSnapshot, metrics: dict[str, Any], active: ModelVersion | None
) -> dict[str, Any]:
    """Both models' macro-F1 on today's evaluation set (the active one is measured again, not remembered)."""
    comparison: dict[str, Any] = {"new_macro_f1": metrics.get("macro_f1"), "n_documents": len(snapshot.eval_ids)}
    if active is None:
        return comparison
    comparison["active_version"] = active.number
    if not len(snapshot.eval_ids) or active.label_keys != snapshot.label_keys:
        comparison["comparable"] = False
        return comparison
    holder = _held_classifier(active, project)
    embeddings = embeddings_for(
        project_id=project.pk, body_id=active.body_id, document_ids=snapshot.eval_ids, encode=holder.encode
    )
    predicted = holder.decide(holder.predict_proba_embeddings(embeddings))
    active_metrics = evaluate(snapshot.eval_targets, predicted, snapshot.label_keys, snapshot.multi_label)
    comparison["active_macro_f1"] = active_metrics["macro_f1"]
    comparison["comparable"] = True
    return comparison


def promotion_decision(*, policy: str, has_active: bool, comparison: dict[str, Any]) -> tuple[bool, str]:
    """Whether a freshly trained version should start serving, and why, under the project's policy."""
    Policy = Project.PromotionPolicy
    if policy == Policy.MANUAL:
        return False, "The project's policy leaves promotion to an admin."
    if not has_active:
        return True, "First model of the project."
    if policy == Policy.ALWAYS:
        return True, "The project's policy promotes every ready model."
    if not comparison.get("comparable"):
        if not comparison.get("n_documents"):
            return True, "No evaluation labels yet, so nothing to compare; promoted."
        return True, "The taxonomy changed since the active model, so the two cannot be compared; promoted."
    new, old = comparison["new_macro_f1"], comparison["active_macro_f1"]
    n, active = comparison["n_documents"], comparison["active_version"]
    same = f"on the same {n} evaluation documents"
    if new + 1e-9 >= old:
        return True, f"Macro-F1 {new:.3f} is not worse than {old:.3f} of v{active} {same}."
    return False, f"Macro-F1 {new:.3f} is worse than {old:.3f} of the active v{active} {same}."


def _artifact_save(
    classifier: Classifier, project: Project, version: ModelVersion, reference: ModelVersion | None
) -> str:
    """Save in SetFit's format under ARTIFACT_DIR; the directory appears whole (written aside, then renamed)."""
    relative = Path("models") / str(project.pk) / f"v{version.number}-{uuid.uuid4().hex[:8]}"
    final = artifact_root() / relative
    scratch = final.with_name(final.name + ".partial")
    try:
        classifier.save(scratch)
        if reference is not None and reference.artifact_dir is not None:
            _link_identical_files(scratch, reference.artifact_dir)
        os.replace(scratch, final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return str(relative)


def _link_identical_files(directory: Path, reference: Path) -> None:
    """Hard-link large files equal to the reference's (the 90 MB body of a head-only refit) to save disk."""
    if not reference.is_dir():
        return
    for path in directory.rglob("*"):
        twin = reference / path.relative_to(directory)
        if not path.is_file() or not twin.is_file():
            continue
        size = path.stat().st_size
        if size < LINK_MIN_BYTES or size != twin.stat().st_size or not filecmp.cmp(path, twin, shallow=False):
            continue
        link = path.with_name(path.name + ".link")
        try:
            os.link(twin, link)
            os.replace(link, path)
        except OSError:  # another file system: keep the copy
            link.unlink(missing_ok=True)


def _run_finish(
    *,
    run: TrainingRun,
    version: ModelVersion,
    classifier: Classifier,
    metrics: dict[str, Any],
    artifact_path: str,
    promote_over: ModelVersion | None,
    pool: PoolScores | None,
    duration: float,
    progress: _Progress,
    retry_if_overtaken: bool = False,
) -> None:
    """One transaction: the version becomes ready (or active, with the whole queue rescored), the run succeeds.

    When another model started serving since the comparison, raises _Overtaken (nothing written) if the
    caller will compare again, else finishes without promoting.
    """
    with transaction.atomic():
        state = _state_lock(run.project_id)
        current = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if current.status != RunStatus.RUNNING or current.celery_task_id != run.celery_task_id:
            raise RunAbandoned(f"training run {run.pk} is no longer this worker's")
        active_now = ModelVersion.objects.filter(project_id=run.project_id, status=VersionStatus.ACTIVE).first()
        promote = pool is not None and (active_now.pk if active_now else None) == (
            promote_over.pk if promote_over else None
        )
        if pool is not None and not promote and retry_if_overtaken:
            raise _Overtaken
        if pool is not None and not promote:
            metrics["comparison"]["promoted"] = False
            metrics["comparison"]["reason"] = "Another model was switched to while this one trained; not promoted."
        now = timezone.now()
        version.status = VersionStatus.READY
        version.artifact_path = artifact_path
        version.body_id = classifier.body_id
        version.training_args = {**classifier.args.to_dict(), "kind": version.kind}
        version.metrics = metrics
        version.macro_f1 = metrics.get("macro_f1")
        version.micro_f1 = metrics.get("micro_f1")
        version.duration_seconds = round(duration, 3)
        version.finished_at = now
        version.save(
            update_fields=[
                "status",
                "artifact_path",
                "body_id",
                "training_args",
                "metrics",
                "macro_f1",
                "micro_f1",
                "duration_seconds",
                "finished_at",
            ]
        )
        if promote:
            _switch(
                project=state.project,
                version=version,
                actor=None,
                action="model.promote",
                reason=metrics["comparison"]["reason"],
            )
            _priorities_write(run.project_id, pool)
        current.status = RunStatus.SUCCEEDED
        current.finished_at = now
        current.phase = "Promoted" if promote else "Ready, not promoted"
        current.progress_done = current.progress_total
        current.save(update_fields=["status", "finished_at", "phase", "progress_done"])
        _kick_follow_up_on_commit(run.project_id, run.kind)
    progress.close()


# --- Switching the serving model -------------------------------------------------------------------------------


def _switch(
    *, project: Project, version: ModelVersion, actor: AbstractBaseUser | None, action: str, reason: str
) -> ModelVersion | None:
    """Retire the active version and activate `version` (caller holds the project's learning lock)."""
    previous = ModelVersion.objects.select_for_update().filter(project=project, status=VersionStatus.ACTIVE).first()
    if previous is not None:
        previous.status = VersionStatus.RETIRED
        previous.save(update_fields=["status"])
    version.status = VersionStatus.ACTIVE
    version.activated_at = timezone.now()
    version.save(update_fields=["status", "activated_at"])
    audit_record(
        action=action,
        actor=actor,
        actor_label="" if actor is not None else "learning loop",
        project=project,
        target=version,
        before={"active_version": previous.number if previous else None},
        after={"active_version": version.number, "reason": reason},
    )
    return previous


def model_version_promote(
    *, version: ModelVersion, actor: AbstractBaseUser, from_version: int | None = None
) -> ModelVersion:
    """An admin makes a ready or retired version serve; the queue is rescored under it right after.

    With `from_version`, only while that version serves (ActiveVersionChanged otherwise): a retried call that
    finds its own version active already is answered with it, any other change of the serving one is refused.
    """
    with transaction.atomic():
        _state_lock(version.project_id)
        version = ModelVersion.objects.select_for_update().select_related("project").get(pk=version.pk)
        if version.status == VersionStatus.ACTIVE:
            return version
        _refuse_unless_serving(version.project_id, from_version)
        if version.pruned_at is not None:
            raise ModelSwitchRefused(
                f"The files of version {version.number} were pruned on {version.pruned_at:%Y-%m-%d}; "
                "it can no longer serve. Train a new version instead."
            )
        if version.status not in (VersionStatus.READY, VersionStatus.RETIRED):
            raise ModelSwitchRefused(
                f"Version {version.number} is {version.get_status_display().lower()}; only a ready or retired "
                "version can be promoted."
            )
        _switch(project=version.project, version=version, actor=actor, action="model.promote", reason="manual")
        _enqueue_rescore_on_commit(version.project_id)
    return version


def model_version_rollback(
    *, project: Project, actor: AbstractBaseUser, from_version: int | None = None
) -> ModelVersion:
    """Go back to the newest retired version older than the active one; the queue is rescored under it.

    With `from_version`, only while that version serves (ActiveVersionChanged otherwise), so a retried rollback
    never goes back a second version.
    """
    with transaction.atomic():
        _state_lock(project.pk)
        _refuse_unless_serving(project.pk, from_version)
        active = ModelVersion.objects.filter(project=project, status=VersionStatus.ACTIVE).first()
        if active is None:
            raise ModelSwitchRefused("No model is active, so there is nothing to roll back from.")
        target = selectors.rollback_candidates(project, active).select_for_update().first()
        if target is None:
            raise ModelSwitchRefused(
                f"No earlier version served before v{active.number}; there is nothing to roll back to."
            )
        _switch(
            project=project,
            version=target,
            actor=actor,
            action="model.rollback",
            reason=f"rolled back from v{active.number}",
        )
        _enqueue_rescore_on_commit(project.pk)
    return target


def _refuse_unless_serving(project_id: int, from_version: int | None) -> None:
    if from_version is None:
        return
    active = (
        ModelVersion.objects.filter(project_id=project_id, status=VersionStatus.ACTIVE)
        .values_list("number", flat=True)
        .first()
    )
    if active != from_version:
        raise ActiveVersionChanged(expected=from_version, active=active)
