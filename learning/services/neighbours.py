"""Nearest documents by meaning, over the serving body's cached embeddings.

Each process holds one unit-normalised float32 matrix per project, keyed by the body it came from: a new body
(a promoted fine-tune) or new cached shards replace it on the next search, so nothing stale is ever answered.
Up to DOCKET_ANN_MIN_DOCUMENTS documents a search is exact (one matrix-vector product); from there on it asks
the approximate index (faiss, inverted file) the worker builds after each body change (`ann_index_build`), and
falls back to exact search while that index is missing or was built for other shards. No request builds one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db.models import Sum

from learning.models import EmbeddingShard, ModelVersion
from learning.services.classifiers import _held_classifier
from learning.services.embeddings import cached_embeddings
from learning.services.projects import artifact_root

logger = logging.getLogger(__name__)

# faiss's inverted file over the unit vectors (inner product = cosine): k-means cells, and a query compares
# exactly with the documents of its ANN_PROBES nearest cells. Chosen by measurement (docs/benchmarks.md, "Search
# by words and by meaning"): the graph indexes (faiss HNSW, hnswlib, usearch) searched as fast with as good a
# recall, but took minutes per 100,000 documents to build on two shared cores, and the worker rebuilds the index
# after every body change; cells are trained on a sample and filled with one matrix product per document.
ANN_LISTS = 1024
ANN_PROBES = 48
ANN_TRAIN_PER_LIST = 64
ANN_TRAIN_ITERATIONS = 10


class NoEmbeddings(Exception):
    """The project (or the document asked about) has no cached embedding to compare with yet."""


def ann_min_documents() -> int:
    return int(getattr(settings, "DOCKET_ANN_MIN_DOCUMENTS", 1_000_000))


@dataclass
class HeldMatrix:
    project_id: int
    body_id: str
    ids: np.ndarray  # sorted document ids
    unit: np.ndarray  # (n, dim) float32, each row of length 1
    source: np.ndarray  # the cached array it was made from: the same object means nothing changed
    fingerprint: str  # names the shards it holds; an index file carries the one it was built from


_held: dict[int, HeldMatrix] = {}
_held_lock = threading.Lock()
_indexes: dict[int, tuple[str, object]] = {}


def search_body(project) -> tuple[str, ModelVersion | None]:
    """The body searches compare in: the serving model's, else (before any model) the one the queue's cold start
    embedded with."""
    active = ModelVersion.objects.filter(project=project, status=ModelVersion.Status.ACTIVE).first()
    if active is not None and active.body_id:
        return active.body_id, active
    newest = EmbeddingShard.objects.filter(project=project).order_by("-id").values_list("body_id", flat=True).first()
    if newest is None:
        raise NoEmbeddings(
            f"{project.name} has no embeddings yet: they are computed when the worker first lays out the queue."
        )
    return newest, None


def _fingerprint(ids: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=12)
    digest.update(np.ascontiguousarray(ids).tobytes())
    return digest.hexdigest()


def held_matrix(project) -> HeldMatrix:
    """This process's matrix for the project under its current body (read from the cache when that changed)."""
    body_id, _version = search_body(project)
    ids, vectors = cached_embeddings(project_id=project.pk, body_id=body_id)
    held = _held.get(project.pk)
    if held is not None and held.body_id == body_id and held.source is vectors:
        return held
    if not len(ids):
        raise NoEmbeddings(f"{project.name} has no embeddings under its serving model yet.")
    with _held_lock:
        held = _held.get(project.pk)
        if held is not None and held.body_id == body_id and held.source is vectors:
            return held
        unit = unit_rows(vectors)
        held = HeldMatrix(project.pk, body_id, ids, unit, vectors, _fingerprint(ids))
        _held[project.pk] = held
    return held


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


def exact_top_k(unit: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the k largest cosine similarities, best first, and those similarities (exact, brute force)."""
    scores = unit @ query
    k = min(k, len(scores))
    if k < len(scores):
        rows = np.argpartition(-scores, k - 1)[:k]
    else:
        rows = np.arange(len(scores))
    rows = rows[np.argsort(-scores[rows], kind="stable")]
    return rows, scores[rows]


def nearest_to_vector(project, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k documents most similar to `vector` (cosine), best first, as (document id, similarity)."""
    held = held_matrix(project)
    query = unit_rows(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0]
    index = _ann_index(held) if len(held.ids) >= ann_min_documents() else None
    if index is not None:
        rows, scores = _ann_search(index, query, k)
    else:
        rows, scores = exact_top_k(held.unit, query, k)
    return [(int(held.ids[r]), float(s)) for r, s in zip(rows, scores, strict=True)]


def nearest_to_document(*, project, document_id: int, k: int) -> list[tuple[int, float]]:
    held = held_matrix(project)
    row = int(np.searchsorted(held.ids, document_id))
    if row >= len(held.ids) or held.ids[row] != document_id:
        raise NoEmbeddings(
            f"Document {document_id} has no embedding under the serving model yet (documents get one when the "
            "worker lays out the queue)."
        )
    return nearest_to_vector(project, held.unit[row], k)


def nearest_to_text(*, project, text: str, k: int) -> list[tuple[int, float]]:
    """Nearest documents to free text, encoded by the serving body (loaded once per process)."""
    body_id, version = search_body(project)
    classifier = _held_classifier(version, project)
    if classifier.body_id != body_id:
        raise NoEmbeddings(f"{project.name}'s embeddings are not from the body that serves it; rescore the queue.")
    vector = classifier.encode([text])[0]
    return nearest_to_vector(project, vector, k)


# --- The approximate index: built by the worker, read by requests ----------------------------------------------


def ann_index_path(project_id: int, body_id: str) -> Path:
    return artifact_root() / "embeddings" / str(project_id) / body_id / "nearest.faiss"


def ann_build(unit: np.ndarray):
    """An inverted-file index of these unit rows; row numbers are the ids it answers with."""
    import faiss

    unit = np.ascontiguousarray(unit, dtype=np.float32)
    lists = max(1, min(ANN_LISTS, len(unit) // ANN_TRAIN_PER_LIST))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(unit.shape[1]), unit.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = ANN_TRAIN_ITERATIONS
    index.cp.max_points_per_centroid = ANN_TRAIN_PER_LIST  # faiss trains on a sample of this many per cell
    index.cp.seed = 17
    index.train(unit)
    index.add(unit)
    index.nprobe = min(ANN_PROBES, lists)
    return index


def ann_index_build(*, project_id: int) -> dict:
    """Build the approximate index for the project's current body and shards, when it is large enough to need one.

    Written beside the body's shards as a file and its fingerprint (the shard ids it holds), then renamed into
    place, so a searching process never reads half an index. Idempotent: an index for the same shards is kept.
    """
    import faiss

    from annotation.models import Project

    project = Project.objects.get(pk=project_id)
    try:
        held = held_matrix(project)
    except NoEmbeddings:
        return {"project": project_id, "built": False, "reason": "no embeddings"}
    if len(held.ids) < ann_min_documents():
        return {"project": project_id, "built": False, "reason": "exact search is fast enough"}
    path = ann_index_path(project_id, held.body_id)
    stamp = path.with_suffix(".fingerprint")
    if path.exists() and stamp.exists() and stamp.read_text() == held.fingerprint:
        return {"project": project_id, "built": False, "reason": "up to date"}
    index = ann_build(held.unit)
    scratch = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    faiss.write_index(index, str(scratch))
    os.replace(scratch, path)
    stamp_scratch = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
    stamp_scratch.write_text(held.fingerprint)
    os.replace(stamp_scratch, stamp)
    return {"project": project_id, "built": True, "documents": len(held.ids)}


def ann_index_request(project_id: int) -> bool:
    """Ask a worker to build the index when the serving body's cache is large enough to need one (after a
    rescore or a promotion: new documents or a new body). The build itself decides whether it is up to date."""
    from annotation.models import Project

    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return False
    try:
        body_id, _version = search_body(project)
    except NoEmbeddings:
        return False
    cached = EmbeddingShard.objects.filter(project_id=project_id, body_id=body_id).aggregate(n=Sum("document_count"))
    if (cached["n"] or 0) < ann_min_documents():
        return False
    from learning.tasks import build_neighbour_index

    try:
        build_neighbour_index.delay(project_id)
    except Exception:  # the broker is down: search stays exact until the next rescore asks again
        logger.exception("Could not ask a worker to build the neighbour index of project %s", project_id)
        return False
    return True


def _ann_index(held: HeldMatrix):
    """The index for exactly these shards (loaded once per process), or None: search is exact until it exists."""
    cached = _indexes.get(held.project_id)
    if cached is not None and cached[0] == held.fingerprint:
        return cached[1]
    path = ann_index_path(held.project_id, held.body_id)
    stamp = path.with_suffix(".fingerprint")
    try:
        if stamp.read_text() != held.fingerprint:
            return None
        import faiss

        index = faiss.read_index(str(path))
    except (FileNotFoundError, RuntimeError):
        logger.info("No current nearest-neighbour index for project %s; searching exactly", held.project_id)
        return None
    index.nprobe = min(ANN_PROBES, index.nlist)
    _indexes[held.project_id] = (held.fingerprint, index)
    return index


def _ann_search(index, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    similarities, rows = index.search(query.reshape(1, -1).astype(np.float32), k)
    found = rows[0] >= 0  # fewer than k documents: faiss pads with -1
    return rows[0][found].astype(np.int64), similarities[0][found]
