"""Embeddings made elsewhere (the Spark job, docs/scale.md): the pool goes out as Parquet with its document ids,
the vectors come back into the embedding cache as shards, exactly as a worker would have stored them.

A fine-tune's re-embedding left to Spark (`DOCKET_REEMBED_ON_SPARK_ABOVE`) waits for its plan's documents to be
cached; `embeddings_import` stores them, so the waiting run finds every shard finished and goes on.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from annotation.models import Document, Project
from annotation.services.audit import audit_record
from learning.exceptions import EmbeddingsRejected, NoReembeddingWaiting
from learning.ml.classifier import base_body_id, default_base_model, embedding_dimension
from learning.ml.spark_embedding import BODY_FILE
from learning.models import EmbeddingShard, ModelVersion
from learning.services.embeddings import _shard_file_write, cached_document_ids
from learning.services.projects import artifact_root, base_model_for
from learning.services.reembedding import existing_documents, reembeddings_waiting

EXPORT_ROWS = 50_000
"""Documents per Parquet file of a pool export: memory stays flat, Spark reads the files in parallel."""
IMPORT_SHARD_ROWS = 65_536
"""Documents per imported shard file (about 100 MB at 384 dimensions): few shards, each written whole."""
READ_ROWS = 16_384
EXAMPLES = 5


@dataclass
class PoolExport:
    """What `pool_export` wrote."""

    path: Path
    documents: int = 0
    files: int = 0
    body_id: str = ""
    run_id: int | None = None


@dataclass
class EmbeddingsImport:
    """What `embeddings_import` stored, and what it left for a re-embedding that waits for it."""

    body_id: str
    dimension: int
    rows: int = 0
    documents: int = 0
    shards: int = 0
    waiting: dict[int, int] = field(default_factory=dict)
    """Run id -> documents its re-embedding still lacks, for every run waiting for this body."""
    deleted: list[int] = field(default_factory=list)
    """Ids of documents deleted since the export: their vectors were left out, everything else stored."""


def pool_export(
    *, project: Project, out_dir: str | Path, reembedding: bool = False, rows_per_file: int = EXPORT_ROWS
) -> PoolExport:
    """Write the project's documents as Parquet files (`id`: Docket's document id, `external_id`, `text`) under
    `out_dir/documents/`, `rows_per_file` at a time.

    With `reembedding`: only the documents the running fine-tune's re-embedding still lacks, and its new body
    under `out_dir/body/` (with `body.json`: body id, project, run, dimension), which the Spark job loads.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} already exists and is not empty; choose a new directory.")
    result = PoolExport(path=out_dir)
    if reembedding:
        waiting = reembeddings_waiting(project.pk)
        if not waiting:
            raise NoReembeddingWaiting(
                f"No fine-tune of {project.name!r} waits for its re-embedding now: a run waits when it has more "
                "documents to embed than DOCKET_REEMBED_ON_SPARK_ABOVE (docs/scale.md)."
            )
        plan, meta = waiting[0]
        ids = _not_cached(project.pk, meta["body_id"], np.load(plan / "ids.npy"))
        shutil.copytree(plan / "body", out_dir / "body")
        identity = {key: meta[key] for key in ("body_id", "project_id", "run_id", "dimension") if key in meta}
        (out_dir / "body" / BODY_FILE).write_text(json.dumps({**identity, "documents": len(ids)}, indent=2) + "\n")
        result.body_id, result.run_id = meta["body_id"], meta["run_id"]
        chunks = (ids[start : start + rows_per_file] for start in range(0, len(ids), rows_per_file))
        for chunk in chunks:
            rows = Document.objects.filter(project=project, pk__in=chunk.tolist()).order_by("pk")
            _part_write(out_dir, result, list(rows.values_list("pk", "external_id", "text")))
    else:
        last = 0
        while True:
            rows = Document.objects.filter(project=project, pk__gt=last).order_by("pk")[:rows_per_file]
            batch = list(rows.values_list("pk", "external_id", "text"))
            if not batch:
                break
            _part_write(out_dir, result, batch)
            last = batch[-1][0]
    (out_dir / "documents").mkdir(parents=True, exist_ok=True)
    return result


def _part_write(out_dir: Path, result: PoolExport, rows: list[tuple[int, str, str]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not rows:
        return
    ids, external_ids, texts = zip(*rows, strict=True)
    table = pa.table(
        {
            "id": pa.array(ids, type=pa.int64()),
            "external_id": pa.array(external_ids, type=pa.string()),
            "text": pa.array(texts, type=pa.string()),
        }
    )
    directory = out_dir / "documents"
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, directory / f"part-{result.files:05d}.parquet")
    result.files += 1
    result.documents += len(rows)


def embeddings_import(
    *,
    project: Project,
    body_id: str,
    path: str | Path,
    actor: AbstractBaseUser | None = None,
    shard_rows: int = IMPORT_SHARD_ROWS,
) -> EmbeddingsImport:
    """Store the vectors of an embedded Parquet file or directory (`id`, `body_id`, `vector`) in the project's
    embedding cache under `body_id`.

    Refused, before anything is stored, unless the body is one a re-embedding of the project waits for (or a
    body of one of its models, or its base body), every row is under that body with that body's dimension, and
    no id is a document of another project. Ids of no document (deleted since the export) are left out and
    reported in `deleted`.
    """
    import pyarrow.dataset as ds

    dimension = _body_dimension(project, body_id)
    dataset = ds.dataset(str(path), format="parquet")
    missing = [name for name in ("id", "body_id", "vector") if name not in dataset.schema.names]
    if missing:
        raise EmbeddingsRejected(
            f"The file has no column {', '.join(missing)}: it is not the output of learning/ml/spark_embedding.py."
        )
    result = EmbeddingsImport(body_id=body_id, dimension=dimension)
    ids = _check_rows(dataset, body_id, dimension, result)
    deleted = _check_documents(project, ids)
    result.deleted = deleted.tolist()
    shards = _shards_write(project, body_id, dataset, dimension, shard_rows, leave_out=deleted)
    try:
        with transaction.atomic():
            EmbeddingShard.objects.bulk_create(shards)
            result.shards, result.documents = len(shards), len(ids) - len(deleted)
            result.waiting = {
                int(meta["run_id"]): len(
                    existing_documents(_not_cached(project.pk, body_id, np.load(plan / "ids.npy")))
                )
                for plan, meta in reembeddings_waiting(project.pk)
                if meta["body_id"] == body_id
            }
            audit_record(
                action="import.embeddings",
                actor=actor,
                project=project,
                after={
                    "body_id": body_id,
                    "rows": result.rows,
                    "documents": result.documents,
                    "shards": len(shards),
                    "deleted_left_out": len(deleted),
                },
            )
    except BaseException:
        _unlink(shards)
        raise
    return result


def _check_rows(dataset, body_id: str, dimension: int, result: EmbeddingsImport) -> np.ndarray:
    """Every row's id, body and vector width (a first pass, before anything is written); returns the unique ids."""
    import pyarrow.compute as pc

    ids, bodies, widths = [], set(), set()
    for batch in dataset.to_batches(columns=["id", "body_id", "vector"], batch_size=READ_ROWS):
        if batch.column("id").null_count or batch.column("vector").null_count:
            raise EmbeddingsRejected("Some rows have no id or no vector; nothing was imported.")
        bodies.update(pc.unique(batch.column("body_id")).to_pylist())
        widths.update(pc.unique(pc.list_value_length(batch.column("vector"))).to_pylist())
        ids.append(np.asarray(batch.column("id").to_numpy(zero_copy_only=False), dtype=np.int64))
        result.rows += batch.num_rows
    if bodies - {body_id}:
        others = ", ".join(sorted(str(body) for body in bodies - {body_id}))
        raise EmbeddingsRejected(
            f"The file holds embeddings under body {others}, not {body_id}: embed the pool again with the body "
            f"that waits (manage.py export_pool --reembedding); nothing was imported."
        )
    if widths - {dimension}:
        raise EmbeddingsRejected(
            f"The file's vectors have {', '.join(str(w) for w in sorted(widths))} dimensions, but body {body_id} "
            f"makes {dimension}; nothing was imported."
        )
    return np.unique(np.concatenate(ids)) if ids else np.empty(0, dtype=np.int64)


def _check_documents(project: Project, ids: np.ndarray) -> np.ndarray:
    """Refuse ids of another project's documents, saying which (with any of no document beside them); returns
    the ids of no document at all: documents deleted since the export, whose vectors are left out."""
    own = np.fromiter(
        Document.objects.filter(project=project).order_by("pk").values_list("pk", flat=True).iterator(), np.int64
    )
    strangers = np.setdiff1d(ids, own, assume_unique=True)
    if not len(strangers):
        return strangers
    elsewhere: list[int] = []
    for start in range(0, len(strangers), 10_000):
        chunk = strangers[start : start + 10_000].tolist()
        elsewhere += Document.objects.filter(pk__in=chunk).values_list("pk", flat=True)
    nowhere = np.setdiff1d(strangers, np.asarray(elsewhere, dtype=np.int64))
    if not elsewhere:
        return nowhere
    examples = ", ".join(str(pk) for pk in sorted(elsewhere)[:EXAMPLES])
    reasons = [f"{len(elsewhere):,} are documents of another project (e.g. {examples})"]
    if len(nowhere):
        examples = ", ".join(str(pk) for pk in nowhere[:EXAMPLES])
        reasons.append(f"{len(nowhere):,} are no document of Docket, deleted since the export? (e.g. {examples})")
    raise EmbeddingsRejected(
        f"{len(strangers):,} of {len(ids):,} ids are not documents of {project.name!r}: {'; '.join(reasons)}. "
        "Nothing was imported."
    )


def _shards_write(
    project: Project, body_id: str, dataset, dimension: int, shard_rows: int, leave_out: np.ndarray
) -> list[EmbeddingShard]:
    """Write the shard files (their rows unsaved) without the ids in `leave_out`; on any error, remove those
    already written."""
    shards: list[EmbeddingShard] = []
    held_ids: list[np.ndarray] = []
    held_vectors: list[np.ndarray] = []
    held = 0

    def flush() -> None:
        nonlocal held
        if held:
            ids, vectors = np.concatenate(held_ids), np.concatenate(held_vectors)
            shards.append(_shard_file_write(project.pk, body_id, ids, vectors))
            held_ids.clear()
            held_vectors.clear()
            held = 0

    try:
        for batch in dataset.to_batches(columns=["id", "vector"], batch_size=READ_ROWS):
            values = batch.column("vector").flatten().to_numpy(zero_copy_only=False)
            vectors = np.asarray(values, dtype=np.float32).reshape(batch.num_rows, dimension)
            if not np.isfinite(vectors).all():
                raise EmbeddingsRejected("Some vectors hold values that are not numbers; nothing was imported.")
            ids = np.asarray(batch.column("id").to_numpy(zero_copy_only=False), dtype=np.int64)
            if len(leave_out):
                kept = ~np.isin(ids, leave_out)
                ids, vectors = ids[kept], vectors[kept]
            held_ids.append(ids)
            held_vectors.append(vectors)
            held += len(ids)
            if held >= shard_rows:
                flush()
        flush()
    except BaseException:
        _unlink(shards)
        raise
    return shards


def _unlink(shards: list[EmbeddingShard]) -> None:
    for shard in shards:
        (artifact_root() / shard.path).unlink(missing_ok=True)


def _body_dimension(project: Project, body_id: str) -> int:
    """The dimension of a body embeddings may be imported under; refuses a body the project has no use for."""
    for plan, meta in reembeddings_waiting(project.pk):
        if meta["body_id"] == body_id:
            return int(meta.get("dimension") or _loaded_dimension(plan / "body"))
    stored = EmbeddingShard.objects.filter(project=project, body_id=body_id).values_list("dimension", flat=True)
    version = (
        ModelVersion.objects.filter(project=project, body_id=body_id, pruned_at__isnull=True)
        .exclude(artifact_path="")
        .order_by("-number")
        .first()
    )
    base = base_model_for(project) or default_base_model()
    if version is not None or body_id == base_body_id(base):
        return int(stored.first() or _loaded_dimension(version.artifact_dir if version else base))
    waiting = [meta["body_id"] for _, meta in reembeddings_waiting(project.pk)]
    raise EmbeddingsRejected(
        f"No re-embedding of {project.name!r} waits for body {body_id}, and none of its models has it: "
        + (f"the body that waits is {', '.join(waiting)}." if waiting else "no re-embedding waits now.")
        + " Nothing was imported."
    )


def _loaded_dimension(path: str | Path) -> int:
    from sentence_transformers import SentenceTransformer

    return embedding_dimension(SentenceTransformer(str(path), device="cpu"))


def _not_cached(project_id: int, body_id: str, ids: np.ndarray) -> np.ndarray:
    return np.setdiff1d(ids, cached_document_ids(project_id=project_id, body_id=body_id))
