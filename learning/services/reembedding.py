"""Re-embedding the pool under a new body, shared by every worker that is free.

After a body fine-tune every queued document needs a new embedding: on two cores about 25 minutes per 100,000
documents in one process. The run's worker writes a *plan* to the artifact store (the new body and the
document ids, cut into shards of `DOCKET_EMBED_SHARD_SIZE`), sends a group of `embed_shards` tasks to other
workers, and works on the shards itself. Whoever takes a shard holds a PostgreSQL advisory lock on it (freed by
the database when its process dies, so a lost helper's shard is simply taken again) and stores it as an
embedding shard before taking the next. Finished shards are never encoded twice: a run resumed after a crash,
or a helper arriving late, finds them cached and moves on. The run reports documents embedded so far as its
progress, and waits for shards other workers hold, never on a task result.

A pool too large for the workers is embedded on Spark instead: past `DOCKET_REEMBED_ON_SPARK_ABOVE` documents
the run writes the same plan, encodes nothing and waits (reporting progress) until the embeddings arrive through
`manage.py import_embeddings`; every shard they fill counts as finished, and the run goes on to fit its head,
evaluate and switch as usual (docs/scale.md, "Re-embedding a very large pool on Spark").
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection

from annotation.models import Document
from learning.ml.checkpoint import stop_requested
from learning.ml.classifier import Classifier, embedding_dimension
from learning.ml.exceptions import FineTuneInterrupted
from learning.models import TrainingRun
from learning.services.embeddings import SHARD_SIZE, _shard_write, cached_embeddings, embeddings_for
from learning.services.projects import artifact_root

logger = logging.getLogger(__name__)

PLANS = "plans"
WAIT_SECONDS = 1.0
SPARK_WAIT_SECONDS = 10.0
"""How often a run waiting for Spark's embeddings looks for them (each look reads the body's cache)."""
GONE_CHECK_MAX = 10_000
"""Missing documents few enough to ask the database which of them were deleted while a run waits."""

ProgressCallback = Callable[[int, int], None]


def shard_size() -> int:
    return int(getattr(settings, "DOCKET_EMBED_SHARD_SIZE", SHARD_SIZE))


def spark_above() -> int:
    """Documents to embed past which a fine-tune leaves its re-embedding to Spark (0: never)."""
    return int(getattr(settings, "DOCKET_REEMBED_ON_SPARK_ABOVE", 0))


def spark_wait_limit() -> float:
    """Seconds a run waits for Spark's embeddings before it fails (its imported shards stay cached)."""
    return float(getattr(settings, "DOCKET_REEMBED_SPARK_WAIT_HOURS", 48)) * 3600


def helpers_wanted() -> int:
    """Helper tasks a run sends (0: the run embeds alone); only on PostgreSQL, whose locks share the shards."""
    if connection.vendor != "postgresql":
        return 0
    return int(getattr(settings, "DOCKET_EMBED_HELPERS", 0))


def embeddings_shared(
    *,
    project_id: int,
    run_id: int,
    classifier: Classifier,
    document_ids: np.ndarray,
    progress: ProgressCallback | None = None,
    waiting_for_spark: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Embeddings of `document_ids` under the classifier's body, in their order, encoded by as many workers as
    are free (see the module docstring); with no helpers wanted or little to encode, by this process alone.
    Past `spark_above()` documents to encode, they come from Spark: `waiting_for_spark(count)` is told so,
    and this waits for them (`shards_wait`)."""
    document_ids = np.asarray(document_ids, dtype=np.int64)
    body_id = classifier.body_id
    cached_ids, _ = cached_embeddings(project_id=project_id, body_id=body_id)
    missing = np.setdiff1d(document_ids, cached_ids)
    helpers = helpers_wanted()
    if spark_above() and len(missing) > spark_above():
        plan = plan_write(project_id=project_id, run_id=run_id, classifier=classifier, document_ids=missing)
        if waiting_for_spark is not None:
            waiting_for_spark(len(missing))
        logger.info("Run %s waits for %d embeddings under %s from Spark", run_id, len(missing), body_id)
        try:
            shards_wait(plan, progress=progress, steps=classifier.args.max_steps)
        except FineTuneInterrupted:
            raise  # the run goes back to the broker; its next attempt waits on this same plan
        except BaseException:
            shutil.rmtree(plan, ignore_errors=True)
            raise
        shutil.rmtree(plan, ignore_errors=True)
    elif helpers and len(missing) > shard_size():
        plan = plan_write(project_id=project_id, run_id=run_id, classifier=classifier, document_ids=missing)
        from celery import group

        from learning import tasks

        group(tasks.embed_shards.s(str(plan.relative_to(artifact_root()))) for _ in range(helpers)).apply_async()
        try:
            shards_embed(plan, encode=classifier.encode, progress=progress, wait=True)
        finally:
            shutil.rmtree(plan, ignore_errors=True)
    return embeddings_for(
        project_id=project_id, body_id=body_id, document_ids=document_ids, encode=classifier.encode, progress=progress
    )


def plan_write(*, project_id: int, run_id: int, classifier: Classifier, document_ids: np.ndarray) -> Path:
    """The plan of one run's re-embedding in the artifact store: the body, the ids, the shard size."""
    plan = artifact_root() / "embeddings" / str(project_id) / classifier.body_id / PLANS / f"run-{run_id}"
    if (plan / "plan.json").is_file():
        return plan  # a resumed run: the same body, and its finished shards are cached already
    staging = plan.with_name(f"{plan.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    classifier.setfit_model.model_body.save(str(staging / "body"))
    np.save(staging / "ids.npy", np.sort(np.asarray(document_ids, dtype=np.int64)))
    meta = {
        "project_id": project_id,
        "run_id": run_id,
        "body_id": classifier.body_id,
        "labels": classifier.labels,
        "multi_label": classifier.multi_label,
        "shard_size": shard_size(),
        "dimension": embedding_dimension(classifier.setfit_model.model_body),
    }
    (staging / "plan.json").write_text(json.dumps(meta))
    staging.rename(plan)
    return plan


def shards_help(*, plan_path: str) -> int:
    """What a helper task does: take free shards of the plan until none is left; returns documents encoded."""
    plan = artifact_root() / plan_path
    try:
        meta = json.loads((plan / "plan.json").read_text())
        classifier = _helper_classifier(plan, meta)
        return shards_embed(plan, encode=classifier.encode)
    except OSError:
        if (plan / "plan.json").exists():
            raise
        return 0  # the run finished (or gave up) and removed its plan before or while this helper worked


_helper_bodies: dict[str, Classifier] = {}


def _helper_classifier(plan: Path, meta: dict) -> Classifier:
    """The plan's body, loaded once per worker process (each later shard of the same body reuses it)."""
    body_id = meta["body_id"]
    held = _helper_bodies.get(body_id)
    if held is None:
        held = Classifier.create(meta["labels"], meta["multi_label"], base_model=str(plan / "body"))
        _helper_bodies.clear()
        _helper_bodies[body_id] = held
    return held


def shards_embed(
    plan: Path,
    *,
    encode: Callable[..., np.ndarray],
    progress: ProgressCallback | None = None,
    wait: bool = False,
) -> int:
    """Encode and store every shard of the plan nobody else holds; with `wait`, then wait for those others
    hold (taking over any whose holder died). Returns how many documents this process encoded."""
    meta = json.loads((plan / "plan.json").read_text())
    project_id, body_id, size = meta["project_id"], meta["body_id"], meta["shard_size"]
    ids = np.load(plan / "ids.npy")
    shards = [ids[start : start + size] for start in range(0, len(ids), size)]
    encoded = 0
    pending = set(range(len(shards)))
    while pending:
        for index in sorted(pending):
            missing = _missing(project_id, body_id, shards[index])
            if not len(missing):
                pending.discard(index)
                continue
            with _shard_lock(body_id, index) as mine:
                if not mine:
                    continue
                missing = _missing(project_id, body_id, shards[index])  # finished while we asked for the lock?
                if len(missing):
                    _encode_store(project_id, body_id, missing, encode)
                    encoded += len(missing)
                    logger.info(
                        "Embedded shard %d of %d (%d documents) under %s", index + 1, len(shards), len(missing), body_id
                    )
                pending.discard(index)
            if progress is not None:
                progress(len(ids) - _missing_count(project_id, body_id, ids), len(ids))
        if not wait:
            break
        if pending:
            if progress is not None:
                progress(len(ids) - _missing_count(project_id, body_id, ids), len(ids))
            time.sleep(WAIT_SECONDS)
    return encoded


def shards_wait(
    plan: Path, *, progress: ProgressCallback | None = None, limit: float | None = None, steps: int = 0
) -> None:
    """Wait, encoding nothing, until every document of the plan is cached (imported from Spark, or embedded by
    anyone else); raises TimeoutError after `limit` seconds (default `spark_wait_limit()`), and
    FineTuneInterrupted (its `steps` all done) when the worker is asked to stop, so the run is taken up again."""
    meta = json.loads((plan / "plan.json").read_text())
    project_id, body_id = meta["project_id"], meta["body_id"]
    ids = np.load(plan / "ids.npy")
    deadline = time.monotonic() + (spark_wait_limit() if limit is None else limit)
    while True:
        missing = len(existing_documents(_missing(project_id, body_id, ids)))
        if progress is not None:
            progress(len(ids) - missing, len(ids))
        if not missing:
            return
        if stop_requested.is_set():
            raise FineTuneInterrupted(steps, steps)
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{missing:,} of {len(ids):,} documents still have no embedding under {body_id}: import them with "
                "manage.py import_embeddings (docs/scale.md); those imported stay cached for the next run"
            )
        time.sleep(SPARK_WAIT_SECONDS)


def reembeddings_waiting(project_id: int) -> list[tuple[Path, dict]]:
    """(plan, plan.json) of every re-embedding of the project whose run is still running, newest run first."""
    plans = {}
    for meta_path in (artifact_root() / "embeddings" / str(project_id)).glob(f"*/{PLANS}/run-*/plan.json"):
        meta = json.loads(meta_path.read_text())
        if meta_path.parent.name == f"run-{meta['run_id']}":  # not a plan still being written (run-N.partial)
            plans[int(meta["run_id"])] = (meta_path.parent, meta)
    running = TrainingRun.objects.filter(
        project_id=project_id, pk__in=list(plans), status=TrainingRun.Status.RUNNING
    ).values_list("pk", flat=True)
    return [plans[pk] for pk in sorted(running, reverse=True)]


def _missing(project_id: int, body_id: str, wanted: np.ndarray) -> np.ndarray:
    cached_ids, _ = cached_embeddings(project_id=project_id, body_id=body_id)
    return wanted[~np.isin(wanted, cached_ids, assume_unique=True)]


def existing_documents(ids: np.ndarray) -> np.ndarray:
    """`ids` less documents deleted since the plan was written, which no import will bring (the run encodes
    nothing for them). Asked only of the last few missing, so a large wait does not read the whole pool."""
    if not len(ids) or len(ids) > GONE_CHECK_MAX:
        return ids
    existing = Document.objects.filter(pk__in=ids.tolist()).values_list("pk", flat=True)
    return ids[np.isin(ids, np.fromiter(existing, np.int64))]


def _missing_count(project_id: int, body_id: str, wanted: np.ndarray) -> int:
    return len(_missing(project_id, body_id, wanted))


def _encode_store(project_id: int, body_id: str, document_ids: np.ndarray, encode: Callable[..., np.ndarray]) -> None:
    texts_by_id = dict(Document.objects.filter(pk__in=document_ids.tolist()).values_list("pk", "text"))
    texts = [texts_by_id.get(int(pk), "") for pk in document_ids]
    vectors = np.asarray(encode(texts), dtype=np.float32)
    _shard_write(project_id, body_id, document_ids, vectors)


def _lock_key(body_id: str) -> int:
    return zlib.crc32(body_id.encode()) - (1 << 31)  # PostgreSQL's two-key advisory locks take int4


@contextmanager
def _shard_lock(body_id: str, index: int):
    """A session-level advisory lock on (body, shard): PostgreSQL frees it when the holder's connection ends."""
    key = _lock_key(body_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [key, index])
        mine = bool(cursor.fetchone()[0])
    try:
        yield mine
    finally:
        if mine:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [key, index])
