"""The embedding cache: each document's vector under a model body, stored in shards under ARTIFACT_DIR and read
back merged, so a fast run encodes only what is new.
"""

from __future__ import annotations

import os
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from django.db import transaction

from annotation.models import Document
from learning.models import EmbeddingShard
from learning.services.projects import artifact_root

ProgressCallback = Callable[[int, int], None]

# Documents per embedding shard: each finished chunk is on disk, so an interrupted encoding resumes there.
SHARD_SIZE = 2048

# Past this many shards for one body, they are merged into one file (imports add small shards).
MAX_SHARDS = 32


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


def cached_document_ids(*, project_id: int, body_id: str) -> np.ndarray:
    """The ids of every cached embedding of the project under this body, sorted and unique, read without the
    vectors (a million documents' vectors are gigabytes, their ids megabytes)."""
    for _attempt in range(3):
        shards = list(
            EmbeddingShard.objects.filter(project_id=project_id, body_id=body_id)
            .order_by("id")
            .values_list("id", "path")
        )
        memo = _read_caches.get((project_id, body_id))
        if memo is not None and memo[0] == frozenset(pk for pk, _ in shards):
            return memo[1]
        parts = [np.empty(0, dtype=np.int64)]
        try:
            for _, path in shards:
                with np.load(artifact_root() / path) as data:
                    parts.append(data["ids"])
        except FileNotFoundError:
            continue  # merged by another worker after we listed them; the merged shard is listed now
        return np.unique(np.concatenate(parts))
    raise RuntimeError(f"embedding shards of {body_id} keep disappearing while being read")


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
    if len(ids) and found.all():
        # The fast loop's case: one copy of the rows asked for (150 MB at 100,000 documents), not two.
        if progress is not None:
            progress(0, 0)
        return vectors[rows]
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
    shard = _shard_file_write(project_id, body_id, ids, vectors)
    shard.save()
    return shard


def _shard_file_write(project_id: int, body_id: str, ids: np.ndarray, vectors: np.ndarray) -> EmbeddingShard:
    """Write a shard's file (whole, then renamed into place); returns its row, not yet saved: readers see the
    shard once the row is."""
    relative = Path("embeddings") / str(project_id) / body_id / f"{uuid.uuid4().hex}.npz"
    path = artifact_root() / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(scratch, "wb") as handle:
        np.savez(handle, ids=np.asarray(ids, dtype=np.int64), vectors=np.asarray(vectors, dtype=np.float32))
    os.replace(scratch, path)
    return EmbeddingShard(
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
