"""The model side's tables: model versions and the runs that train them, the evaluation reservation, the
embedding cache index, and per-document scores that order the review queue and feed suggestions."""

import json
import math
from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import Q

DESCRIPTIONS_VERSION = 0
"""QueuePriority.model_version of suggestions made from the labels' own words before the first model (whose
number is 1)."""


class LabelProbabilitiesField(models.Field):
    """A row of probabilities as a list of floats: `real[]` on PostgreSQL (4 bytes a label, and written by binary
    COPY without parsing), a JSON list on SQLite. Which label each entry belongs to is not in the row: see
    PriorityLabelKeys."""

    description = "probabilities in a label order kept elsewhere"

    def db_type(self, connection) -> str:
        return "real[]" if connection.vendor == "postgresql" else "text"

    def from_db_value(self, value, expression, connection):
        if value is None or isinstance(value, list):
            return value
        return _from_json(value)

    def to_python(self, value):
        if value is None or isinstance(value, list):
            return value
        if isinstance(value, str):
            return _from_json(value)
        return [float(v) for v in value]

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None
        values = [float(v) for v in value]
        if connection.vendor == "postgresql":
            return values
        # JSON has no NaN: null stands for it, which SQLite's JSON functions skip as PostgreSQL's readers skip NaN.
        return json.dumps([None if math.isnan(v) else v for v in values])


def _from_json(text: str) -> list[float]:
    return [math.nan if v is None else float(v) for v in json.loads(text)]


def probabilities_by_label(label_keys: list[str] | None, values: list[float] | None) -> dict[str, float]:
    """Label key -> probability of a stored row, given the keys its version wrote it in (PriorityLabelKeys).

    Rounded to 4 decimals, as they were always stored and exported. NaN marks a label the row was not scored
    for (added after the cold start that wrote it): left out, as the row never had it.
    """
    if not label_keys or not values:
        return {}
    return {key: round(float(p), 4) for key, p in zip(label_keys, values, strict=False) if not math.isnan(p)}


class QueuePriorityManager(models.Manager):
    def create(self, **kwargs):
        """As Manager.create; `probabilities` may also be given as label key -> probability (with a
        model_version), whose keys are then recorded for the version (PriorityLabelKeys.record)."""
        probabilities = kwargs.get("probabilities")
        if isinstance(probabilities, dict):
            project_id = kwargs["project"].pk if "project" in kwargs else kwargs["project_id"]
            keys = PriorityLabelKeys.record(project_id, kwargs["model_version"], list(probabilities))
            kwargs["probabilities"] = [float(probabilities.get(key, math.nan)) for key in keys]
        return super().create(**kwargs)


class QueuePriority(models.Model):
    """The latest score of one pool document under a project's active model (higher is asked sooner).

    Every rescore rewrites the whole pool's rows at once (learning.services.pool._priorities_copy), so the
    database checks neither foreign key: a check per row cost more than the COPY of the rows itself. Django
    still deletes a document's row with the document and a project's rows with the project; every reader
    reaches a row through its document. A document deleted while a rescore writes may leave a row behind, which
    no reader reaches and which goes with its project.
    """

    document = models.OneToOneField(
        "annotation.Document",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="queue_priority",
        db_constraint=False,
    )
    # No index of its own: the (project, -score) index below serves every lookup by project, and one index less
    # is that much less to update when the whole pool is rescored.
    project = models.ForeignKey(
        "annotation.Project", on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    score = models.FloatField()
    # Number of the model version that produced the score and probabilities: DESCRIPTIONS_VERSION (0) before any
    # model, when the labels' own words suggest; None for an evaluation document, which reviewers label without
    # a suggestion, and for a pool scored before any label had a description to compare with.
    model_version = models.PositiveIntegerField(null=True, blank=True)
    # Probabilities under that model in the order of the label keys it wrote them in (PriorityLabelKeys of
    # the project and model_version): the keys are not repeated in every row, which made a row 440 bytes with
    # twelve labels instead of about 130. Read them as label key -> probability with `probabilities_by_label`
    # (learning.selectors does). Empty for a row without model_version.
    probabilities = LabelProbabilitiesField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = QueuePriorityManager()

    class Meta:
        indexes = [models.Index(fields=["project", "-score"], name="queue_priority_order_idx")]

    def label_probabilities(self) -> dict[str, float]:
        """Label key -> probability (a query for the keys of its version; readers of many rows join them)."""
        if self.model_version is None:
            return {}
        keys = PriorityLabelKeys.objects.filter(project_id=self.project_id, model_version=self.model_version)
        return probabilities_by_label(keys.values_list("label_keys", flat=True).first(), self.probabilities)


class QueueExit(models.Model):
    """A document that left the queue (labeled, flagged, closed) since its project's priorities were last written.

    Written by the database (a row trigger on the document's status, learning migration 0010), whoever changes
    the status, and read and emptied by the next rescore (learning.services.pool._priorities_copy), which lowers
    those documents' priority scores to -Infinity: their rows keep the prediction they were shown with, but the
    queue's scored route, walking the priority index from the top and skipping documents no longer queued,
    stops walking past every labeled document (118 ms a claim with 20,000 labeled). A table of its own rather
    than an update of the priority row, so that a submission never waits for a rescore writing that row.
    """

    document_id = models.BigIntegerField()
    project_id = models.BigIntegerField(db_index=True)


class PriorityLabelKeys(models.Model):
    """The label keys, in order, of the probabilities a model version wrote into a project's queue priorities.

    For a model (number 1 and up) they are its outputs' keys and never change; for the labels' own words
    (DESCRIPTIONS_VERSION) they are the labels of the latest cold start, which keeps the older keys' places
    (learning.services.pool._label_keys_record) so that rows it did not rewrite still read right.
    """

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="+")
    model_version = models.PositiveIntegerField()
    label_keys = models.JSONField(default=list)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "model_version"], name="priority_label_keys_unique")]

    def __str__(self) -> str:
        return f"label keys of model v{self.model_version} in project {self.project_id}"

    @classmethod
    def record(cls, project_id: int, model_version: int, label_keys: list[str]) -> list[str]:
        """Record that rows of this version are written in `label_keys`; returns the keys to write them in.

        A version's keys are recorded once. Should a later write of the same version number bring other keys
        (the labels' own words, DESCRIPTIONS_VERSION, after labels were added or retired), the recorded keys
        keep their places and new ones are appended, so rows written before and not rewritten (documents
        labeled since) still read right; a recorded key the new rows lack is written as NaN, which readers
        leave out. Call it in the transaction that writes the rows.
        """
        record, created = cls.objects.get_or_create(
            project_id=project_id, model_version=model_version, defaults={"label_keys": list(label_keys)}
        )
        recorded = list(record.label_keys)
        merged = recorded + [key for key in label_keys if key not in recorded]
        if merged != recorded:
            record.label_keys = merged
            record.save(update_fields=["label_keys"])
        return merged


class LearningState(models.Model):
    """One row per project: how far the evaluation reservation has looked, and the lock that serialises
    model switches, run claims and evaluation top-ups for the project."""

    project = models.OneToOneField(
        "annotation.Project", on_delete=models.CASCADE, primary_key=True, related_name="learning_state"
    )
    # Every document with an id up to this one has had its chance of joining the evaluation set.
    reserved_through_document_id = models.BigIntegerField(default=0)
    cold_start_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"learning state of project {self.project_id}"


class EvaluationReservation(models.Model):
    """A document set aside, at random, to evaluate models: never trained on, never chosen by the learner."""

    document = models.OneToOneField(
        "annotation.Document", on_delete=models.CASCADE, primary_key=True, related_name="evaluation_reservation"
    )
    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project"], name="evaluation_reservation_idx")]


class ModelVersion(models.Model):
    """One trained classifier of a project, numbered 1, 2, 3... with what it saw and how well it did."""

    class Status(models.TextChoices):
        TRAINING = "training", "Training"
        READY = "ready", "Ready (not serving)"
        ACTIVE = "active", "Active (serving)"
        FAILED = "failed", "Failed"
        RETIRED = "retired", "Retired"

    class Kind(models.TextChoices):
        FAST = "fast", "Head refit on cached embeddings"
        SLOW = "slow", "Body fine-tuned"

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.TRAINING)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    taxonomy_version = models.PositiveIntegerField()
    # Label keys in the order of the model's outputs.
    label_keys = models.JSONField(default=list)
    # The labels as they were when it trained: [{"id", "key", "name"}], so renames later do not rewrite history.
    labels = models.JSONField(default=list)
    training_args = models.JSONField(default=dict)
    base_model = models.CharField(max_length=500, blank=True)
    # Identifies the body weights: the embedding cache's key.
    body_id = models.CharField(max_length=64, blank=True)
    # Relative to settings.ARTIFACT_DIR, so workers that mount it at different places agree.
    artifact_path = models.CharField(max_length=500, blank=True)
    # learning.ml.metrics.evaluate() on the evaluation set, plus the comparison that decided promotion.
    metrics = models.JSONField(default=dict, blank=True)
    macro_f1 = models.FloatField(null=True, blank=True)
    micro_f1 = models.FloatField(null=True, blank=True)
    train_label_count = models.PositiveIntegerField(default=0)
    # Label key -> how many of those training documents carry it: the strategies that favour the least-labelled
    # labels order the queue by it. Empty for versions trained before it was kept (they fall back on the pool's
    # predicted prevalence).
    train_label_counts = models.JSONField(default=dict, blank=True)
    eval_label_count = models.PositiveIntegerField(default=0)
    duration_seconds = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    # When `prune_artifacts` deleted its files: the row (metrics, labels seen) stays, it can no longer serve.
    pruned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="model_version_unique_number"),
            # One serving model per project: a switch flips both rows in one transaction or not at all.
            models.UniqueConstraint(fields=["project"], condition=Q(status="active"), name="model_version_one_active"),
            models.CheckConstraint(
                condition=Q(status__in=["training", "ready", "active", "failed", "retired"]),
                name="model_version_status_valid",
            ),
            models.CheckConstraint(condition=Q(kind__in=["fast", "slow"]), name="model_version_kind_valid"),
            models.CheckConstraint(
                condition=Q(status__in=["training", "failed"]) | ~Q(artifact_path=""),
                name="model_version_usable_has_artifact",
            ),
        ]

    def __str__(self) -> str:
        return f"model v{self.number} ({self.get_status_display()})"

    @property
    def artifact_dir(self) -> Path | None:
        """Where the model lies in SetFit's format: `SetFitModel.from_pretrained(str(artifact_dir))` loads it."""
        return Path(settings.ARTIFACT_DIR) / self.artifact_path if self.artifact_path else None

    @property
    def score(self) -> float | None:
        """Macro-F1 on the evaluation set, the one number the labeling page shows."""
        return self.macro_f1


class TrainingRun(models.Model):
    """One attempt to train a model version; what the models page shows while it runs and after it fails."""

    class Trigger(models.TextChoices):
        LABELS = "labels", "New labels"
        ADMIN = "admin", "Requested by an admin"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        REFUSED = "refused", "Refused"

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="training_runs")
    kind = models.CharField(max_length=8, choices=ModelVersion.Kind.choices)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Label events (annotation revisions) counted when the run was asked for, then when it read its data:
    # the next run is due `fast_retrain_every` / `slow_retrain_every` events after this.
    label_events = models.PositiveIntegerField(default=0)
    # Cap on body fine-tuning steps for this run; None uses the default.
    max_steps = models.PositiveIntegerField(null=True, blank=True)
    phase = models.CharField(max_length=200, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why the run failed or was refused, in words an admin can act on.")
    celery_task_id = models.CharField(max_length=255, blank=True)
    # Seconds spent per phase ("fine_tune", "embed", "fit_head", "evaluate", "save", "score", "switch").
    timings = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Written every few seconds while it runs (and by every progress report); a running run whose heartbeat
    # is old lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When its task was last handed to the broker; a queued run silent for long is handed over again.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs"
    )

    class Meta:
        ordering = ["project", "-created_at", "-id"]
        constraints = [
            # Per project and kind, at most one run trains and at most one waits behind it (triggers coalesce
            # into it); a head refit and a body fine-tune of the same project may train side by side.
            models.UniqueConstraint(
                fields=["project", "kind"], condition=Q(status="running"), name="training_run_one_running_per_kind"
            ),
            models.UniqueConstraint(
                fields=["project", "kind"], condition=Q(status="queued"), name="training_run_one_queued_per_kind"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed", "refused"]),
                name="training_run_status_valid",
            ),
            models.CheckConstraint(condition=Q(kind__in=["fast", "slow"]), name="training_run_kind_valid"),
            models.CheckConstraint(
                condition=Q(progress_done__lte=models.F("progress_total")), name="training_run_progress_range"
            ),
        ]
        indexes = [models.Index(fields=["project", "status"], name="training_run_status_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} run {self.pk} ({self.get_status_display()})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED, self.Status.REFUSED)


class EmbeddingShard(models.Model):
    """One file of cached embeddings: document ids and float32 vectors under one body, in ARTIFACT_DIR.

    A body's cache for a project is the union of its shards. Shards are written whole (temporary file, then
    rename) before their row is committed, so a reader never sees half a file, and an encoder killed midway
    keeps every finished chunk.
    """

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="+")
    body_id = models.CharField(max_length=64)
    # Relative to settings.ARTIFACT_DIR.
    path = models.CharField(max_length=500, unique=True)
    document_count = models.PositiveIntegerField()
    dimension = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project", "body_id"], name="embedding_shard_body_idx")]

    def __str__(self) -> str:
        return f"{self.document_count} embeddings under {self.body_id}"
