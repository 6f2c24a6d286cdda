"""What the rest of Docket may read from the learning side: queue order, suggestions, the active model, runs."""

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F, JSONField, OuterRef, QuerySet, Subquery
from django.db.models.expressions import RawSQL

from annotation.models import Document, Taxonomy
from learning.models import (
    DESCRIPTIONS_VERSION,
    ModelVersion,
    PriorityLabelKeys,
    QueuePriority,
    TrainingRun,
    probabilities_by_label,
)

logger = logging.getLogger(__name__)


def order_by_priority(documents: QuerySet) -> QuerySet:
    """Most informative first, as scored by the active model; documents with no score follow in random order."""
    return documents.order_by(F("queue_priority__score").desc(nulls_last=True), "random_key", "id")


def predictions_for(document_ids: Iterable[int]) -> dict[int, dict]:
    """The active model's probabilities per document id, for exports and suggestions.

    Each carries `taxonomy_version`, the taxonomy the scoring model was trained on, and
    `current_taxonomy_version`, the project's now: when they differ, keys may have been merged or split since
    and the reader maps them to today's labels (annotation.services.taxonomy.current_labels). Both come in the
    same query.
    """
    trained_on = ModelVersion.objects.filter(project=OuterRef("project"), number=OuterRef("model_version"))
    rows = (
        QueuePriority.objects.filter(document_id__in=list(document_ids), model_version__isnull=False)
        .annotate(
            trained_on=Subquery(trained_on.values("taxonomy_version")[:1]),
            current=Subquery(Taxonomy.objects.filter(project=OuterRef("project")).values("version")[:1]),
            label_keys=_label_keys_of("model_version"),
        )
        .values("document_id", "model_version", "probabilities", "trained_on", "current", "label_keys")
    )
    return {
        row["document_id"]: {
            "model_version": row["model_version"],
            "taxonomy_version": row["trained_on"],
            "current_taxonomy_version": row["current"],
            "probabilities": probabilities_by_label(row["label_keys"], row["probabilities"]),
        }
        for row in rows
    }


def _label_keys_of(version_column: str, project=None) -> Subquery:
    """The label keys a row's probabilities are in (PriorityLabelKeys of its project, or of `project` when the
    caller knows it, and of its model version), as a column of the same query."""
    project = OuterRef("project") if project is None else project
    keys = PriorityLabelKeys.objects.filter(project=project, model_version=OuterRef(version_column))
    return Subquery(keys.values("label_keys")[:1], output_field=JSONField())


# The names of `review_prediction_columns`, for a caller that reads a row of them.
REVIEW_PREDICTION_COLUMNS = (
    "review_active",
    "review_stored_version",
    "review_stored_probabilities",
    "review_stored_label_keys",
    "review_trained_on",
    "review_taxonomy_now",
)


def review_prediction_columns(project) -> dict[str, Any]:
    """What `prediction_for_review` reads, as annotations of a Document queryset, so that the labeling page can
    read them in the same query as the rest of the document it serves: the serving version's number, the
    stored scores with the version that wrote them, the taxonomy version that model was trained on and the
    project's now (to map an outdated model's labels to today's: annotation.services.taxonomy.current_labels)."""
    trained_on = ModelVersion.objects.filter(project=project, number=OuterRef("queue_priority__model_version"))
    return {
        "review_active": Subquery(
            ModelVersion.objects.filter(project=project, status=ModelVersion.Status.ACTIVE).values("number")[:1]
        ),
        "review_stored_version": F("queue_priority__model_version"),
        "review_stored_probabilities": F("queue_priority__probabilities"),
        "review_stored_label_keys": _label_keys_of("queue_priority__model_version", project),
        "review_trained_on": Subquery(trained_on.values("taxonomy_version")[:1]),
        "review_taxonomy_now": Subquery(Taxonomy.objects.filter(project=project).values("version")[:1]),
    }


def prediction_for_review(project, document, row: dict | None = None) -> dict | None:
    """The serving model's probabilities for the document a reviewer is about to see.

    Normally the queue's stored scores. Between a promotion (or rollback) and the end of the rescore it sets
    off, those still carry the previous version; the document is then scored on the spot by the model now
    serving (loaded once per process), so the labeling page shows the new model at once rather than after
    the rescore. Should that model not load, the stored scores are shown, with their own version number.
    `row`: the document's `review_prediction_columns`, when the caller read them already.
    """
    if row is None:
        columns = review_prediction_columns(project)
        row = Document.objects.filter(pk=document.pk).annotate(**columns).values(*columns).first()
    active = row["review_active"] if row else None
    stored = None
    if row and row["review_stored_version"] is not None:
        stored = {
            "model_version": row["review_stored_version"],
            "taxonomy_version": row["review_trained_on"],
            "current_taxonomy_version": row["review_taxonomy_now"],
            "probabilities": probabilities_by_label(
                row["review_stored_label_keys"], row["review_stored_probabilities"]
            ),
            "from_label_descriptions": row["review_stored_version"] == DESCRIPTIONS_VERSION,
        }
    if active is None or (stored is not None and stored["model_version"] == active):
        return stored
    from learning import serving  # loads torch; only this path needs it

    try:
        served = serving.served_model(project)
        probabilities = served.predict_proba([document.text])[0]
    except Exception:  # a missing or unreadable model must not stop labeling: the stored scores serve
        logger.exception("Could not score document %s with model v%s for review", document.pk, active)
        return stored
    return {
        "model_version": served.number,
        "taxonomy_version": served.taxonomy_version,
        "current_taxonomy_version": row["review_taxonomy_now"] if row else None,
        "probabilities": {key: float(p) for key, p in zip(served.label_keys, probabilities, strict=True)},
        "from_label_descriptions": False,
    }


def active_model_version(project) -> ModelVersion | None:
    """The version serving the project now; load it with `SetFitModel.from_pretrained(str(v.artifact_dir))`."""
    return ModelVersion.objects.filter(project=project, status=ModelVersion.Status.ACTIVE).first()


def serving_columns() -> dict[str, Subquery]:
    """Annotations for a Project queryset: `active_model_number`, the active version's number (None before the
    first), so a prediction reads it with the project instead of asking once more (learning/serving.py)."""
    active = ModelVersion.objects.filter(project=OuterRef("pk"), status=ModelVersion.Status.ACTIVE)
    return {"active_model_number": Subquery(active.values("number")[:1])}


def active_model(project) -> ModelVersion | None:
    """The serving version, which has `number` and `score` (evaluation macro-F1): what the labeling page shows."""
    return active_model_version(project)


def model_version_by_number(project, number: int) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, number=number).first()


def rollback_candidates(project, active: ModelVersion) -> QuerySet[ModelVersion]:
    """Versions a rollback from `active` may go back to, newest first: retired, older, files still there."""
    return ModelVersion.objects.filter(
        project=project, status=ModelVersion.Status.RETIRED, number__lt=active.number, pruned_at__isnull=True
    ).order_by("-number")


def model_versions(project) -> QuerySet[ModelVersion]:
    """Every version of the project, newest first."""
    return ModelVersion.objects.filter(project=project).order_by("-number")


def training_runs(project, *, limit: int = 20) -> list[TrainingRun]:
    """The project's latest runs, newest first."""
    return list(
        TrainingRun.objects.filter(project=project)
        .select_related("model_version", "requested_by")
        .order_by("-created_at", "-id")[:limit]
    )


def current_training_run(project) -> TrainingRun | None:
    """The run training now, else the one waiting, else the latest finished one (None before any run)."""
    runs = TrainingRun.objects.filter(project=project).select_related("model_version")
    for status in (TrainingRun.Status.RUNNING, TrainingRun.Status.QUEUED):
        run = runs.filter(status=status).first()
        if run is not None:
            return run
    return runs.order_by("-created_at", "-id").first()


def training_run_status(run: TrainingRun | None) -> dict[str, Any] | None:
    """A run as the models page polls it: phase, progress, error, and the version it produced."""
    if run is None:
        return None
    percent = round(100 * run.progress_done / run.progress_total) if run.progress_total else None
    return {
        "id": run.pk,
        "kind": run.kind,
        "kind_display": run.get_kind_display(),
        "trigger": run.trigger,
        "status": run.status,
        "status_display": run.get_status_display(),
        "phase": run.phase,
        "done": run.progress_done,
        "total": run.progress_total,
        "percent": percent,
        "error": run.error,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "finished": run.is_finished,
        "model_version": run.model_version.number if run.model_version_id else None,
    }


def learning_curve(project) -> list[dict[str, Any]]:
    """Evaluation macro-F1 against training labels, one point per evaluated version, oldest first."""
    rows = (
        ModelVersion.objects.filter(project=project, macro_f1__isnull=False)
        .exclude(status__in=[ModelVersion.Status.TRAINING, ModelVersion.Status.FAILED])
        .order_by("number")
        .values("number", "kind", "status", "train_label_count", "eval_label_count", "macro_f1", "micro_f1")
    )
    return list(rows)


def training_run_by_id(project, run_id: int) -> TrainingRun | None:
    """One run of the project (another project's run id is simply not found)."""
    return TrainingRun.objects.filter(project=project, pk=run_id).select_related("model_version").first()


def project_files(project_id: int) -> list[Path]:
    """Every directory and file the learning side keeps for a project (models, embedding caches, the stored
    label-error ranking): what goes when the project is deleted. Each holds nothing of another project."""
    root = Path(settings.ARTIFACT_DIR)
    return [
        root / "models" / str(project_id),
        root / "embeddings" / str(project_id),
        root / "quality" / f"project-{project_id}-label-errors.json",
    ]


def with_predicted_probability(
    project, documents: QuerySet, *, label_key: str | None, low: float, high: float
) -> QuerySet:
    """The documents whose stored probability of `label_key` (or, without one, of their likeliest label) lies
    within [low, high]; documents without a model's scores are left out.

    A label's place in a row depends on the version that wrote it (PriorityLabelKeys): the label's place in
    each of the project's few versions is found once and joined to the rows (a hash join on an analyzed
    table), not looked up row by row.
    """
    table = connection.ops.quote_name(QueuePriority._meta.db_table)
    keys_table = connection.ops.quote_name(PriorityLabelKeys._meta.db_table)
    postgresql = connection.vendor == "postgresql"
    if label_key is None:
        if postgresql:
            likeliest = "(SELECT max(p) FROM unnest(q.probabilities) p WHERE p <> 'NaN')"
        else:
            likeliest = "(SELECT max(value) FROM json_each(q.probabilities))"
        sql = (
            f"SELECT q.document_id FROM {table} q WHERE q.project_id = %s AND q.model_version IS NOT NULL "
            f"AND {likeliest} BETWEEN %s AND %s"
        )
        params = [project.pk, low, high]
    else:
        if postgresql:
            places = (
                f"SELECT k.model_version, o.i FROM {keys_table} k "
                "CROSS JOIN LATERAL jsonb_array_elements_text(k.label_keys) WITH ORDINALITY o(key, i) "
                "WHERE k.project_id = %s AND o.key = %s"
            )
            probability = "q.probabilities[place.i]"
        else:
            places = (
                f"SELECT k.model_version, CAST(o.key AS INTEGER) AS i FROM {keys_table} k, json_each(k.label_keys) o "
                "WHERE k.project_id = %s AND o.value = %s"
            )
            probability = "json_extract(q.probabilities, '$[' || place.i || ']')"
        sql = (
            f"SELECT q.document_id FROM {table} q JOIN ({places}) place ON place.model_version = q.model_version "
            f"WHERE q.project_id = %s AND {probability} BETWEEN %s AND %s"
        )
        params = [project.pk, label_key, project.pk, low, high]
    return documents.filter(pk__in=RawSQL(sql, params))
