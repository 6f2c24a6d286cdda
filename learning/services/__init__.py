"""Train, score the pool, promote, roll back: the Django glue around learning/ml, one module per concern.

Two speeds share one path, `training_run_execute`. A fast run refits the classification head on cached
embeddings of the active model's body; a slow run fine-tunes a fresh body from the base model (capped steps)
and re-embeds the pool in resumable chunks. Both end the same way: evaluate on the reserved evaluation set,
save in SetFit's format, and, when the project's promotion policy agrees, switch the active model and rescore
the whole queue in one transaction. The model that served before keeps serving until that commit.

projects (files, base model), embeddings (the cache), reembedding (a fine-tune's re-embedding shared with
other workers), embedding_imports (the pool out to Spark and its vectors back), evaluation (the reserved set),
snapshots (the labels a run learns from), classifiers (held by this process), pool (queue scores),
scored_corpus (scores made elsewhere, back into the queue), runs (asking, claiming, ending), training (the
work), registry (switching the serving model), bundles (a version exported to score outside Docket),
neighbours (nearest documents by meaning, for Explore). Each imports only the ones before it; callers import
from here.
"""

from learning.services.bundles import bundle_name, bundle_version, model_bundle_export, model_bundle_zip
from learning.services.classifiers import _held_classifier
from learning.services.embedding_imports import embeddings_import, pool_export
from learning.services.embeddings import (
    _shard_write,
    cached_embeddings,
    cached_embeddings_only,
    embedding_shards_compact,
    embeddings_for,
)
from learning.services.evaluation import evaluation_reserve, interleaved_scores
from learning.services.pool import (
    PoolScores,
    learner_order,
    pool_needs_scoring,
    pool_rescore,
    queued_pool,
)
from learning.services.projects import artifact_root, base_model_for, project_files_remove, project_may_vanish
from learning.services.reembedding import shards_help
from learning.services.registry import model_version_promote, model_version_rollback
from learning.services.runs import (
    _enqueue,
    _Progress,
    _run_claim,
    _run_end,
    fine_tune_checkpoint,
    max_attempts,
    pool_rescore_request,
    stale_after,
    training_due,
    training_on_labels_changed,
    training_request_now,
    training_run_request,
    training_runs_fail_stale,
    training_runs_rekick,
)
from learning.services.scored_corpus import queue_order_from_stored_scores, scored_corpus_import
from learning.services.snapshots import LabelSnapshot, label_event_count, label_snapshot, label_texts, training_refusal
from learning.services.training import (
    fine_tune_max_steps,
    promotion_decision,
    training_run_execute,
)

# The underscored names are the steps that tests and fault drills drive one at a time.
__all__ = [
    "_enqueue",
    "_held_classifier",
    "_Progress",
    "_run_claim",
    "_run_end",
    "_shard_write",
    "artifact_root",
    "base_model_for",
    "bundle_name",
    "bundle_version",
    "cached_embeddings",
    "cached_embeddings_only",
    "embedding_shards_compact",
    "embeddings_import",
    "embeddings_for",
    "evaluation_reserve",
    "fine_tune_checkpoint",
    "fine_tune_max_steps",
    "interleaved_scores",
    "label_event_count",
    "label_snapshot",
    "label_texts",
    "LabelSnapshot",
    "learner_order",
    "max_attempts",
    "model_bundle_export",
    "model_bundle_zip",
    "model_version_promote",
    "model_version_rollback",
    "pool_needs_scoring",
    "pool_rescore",
    "pool_rescore_request",
    "pool_export",
    "PoolScores",
    "project_files_remove",
    "project_may_vanish",
    "promotion_decision",
    "queue_order_from_stored_scores",
    "queued_pool",
    "scored_corpus_import",
    "shards_help",
    "stale_after",
    "training_due",
    "training_on_labels_changed",
    "training_refusal",
    "training_request_now",
    "training_run_execute",
    "training_run_request",
    "training_runs_fail_stale",
    "training_runs_rekick",
]
