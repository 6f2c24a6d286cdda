"""The labeling domain: projects and people, taxonomies, documents and imports, leases, annotations, audit."""

import os
import random
import uuid

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


def new_random_key() -> float:
    return random.random()


# Longest free texts a person may write. The columns are TEXT (no limit in PostgreSQL); these keep a pasted
# file or a YAML expansion from being stored as a label's description. Checked by full_clean(), which every
# service calls, so pages, imports and the API refuse the same lengths.
DESCRIPTION_MAX_CHARS = 10_000
GUIDELINE_MAX_CHARS = 50_000


def _check_lengths(instance: models.Model, limits: dict[str, int]) -> None:
    errors = {
        field: f"At most {limit:,} characters; this has {len(getattr(instance, field) or ''):,}."
        for field, limit in limits.items()
        if len(getattr(instance, field) or "") > limit
    }
    if errors:
        raise ValidationError(errors)


class Project(models.Model):
    class QueryStrategy(models.TextChoices):
        LEAST_CONFIDENT = "least_confident", "Least confident"
        MARGIN = "margin", "Margin"
        ENTROPY = "entropy", "Entropy"
        BATCH = "batch", "Ranked batch (modAL)"
        DIVERSE = "diverse", "Diverse uncertainty"
        DIVERSE_RARE_UNCERTAINTY = (
            "diverse_rare_uncertainty",
            "Diverse uncertainty, favouring the least-labelled labels (best on OPP-115)",
        )
        RARE_MARGIN = "rare_margin", "Margin, favouring rare labels"
        RANDOM = "random", "Random (baseline)"

    class PromotionPolicy(models.TextChoices):
        NOT_WORSE = "not_worse", "Promote when not worse on the evaluation set"
        ALWAYS = "always", "Always promote a ready model"
        MANUAL = "manual", "Only an admin promotes"

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    multi_label = models.BooleanField(default=False, help_text="Whether a document may carry several labels at once.")
    # Kept by webhooks.services as hooks come and go: labeling reads it with the project it already has, so an
    # answer in a project nobody listens to costs no query.
    webhook_events = models.JSONField(default=list, blank=True, help_text="Events some active webhook receives.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    # Review queue
    lease_ttl_seconds = models.PositiveIntegerField(
        default=600,
        validators=[MinValueValidator(30), MaxValueValidator(24 * 3600)],
        help_text="How long a reviewer holds a document before it returns to the queue.",
    )

    # Learning loop
    # Chosen under policy-grouped cross-validation on unseen policies at the live cadence (docs/benchmarks.md):
    # diverse_rare_uncertainty and diverse both beat margin and random; the first won by a pre-set rule, within noise.
    query_strategy = models.CharField(
        max_length=32, choices=QueryStrategy.choices, default=QueryStrategy.DIVERSE_RARE_UNCERTAINTY
    )
    fast_retrain_every = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1)],
        help_text="Refit the classification head after this many new labels.",
    )
    slow_retrain_every = models.PositiveIntegerField(
        default=200,
        validators=[MinValueValidator(1)],
        help_text="Fine-tune the sentence-embedding body after this many new labels.",
    )
    base_model = models.CharField(
        max_length=500,
        blank=True,
        help_text="Local SentenceTransformer directory; empty uses the packaged all-MiniLM-L6-v2.",
    )
    eval_fraction = models.FloatField(
        default=0.15,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Share of randomly chosen queue documents reserved for evaluating models.",
    )
    promotion_policy = models.CharField(
        max_length=16, choices=PromotionPolicy.choices, default=PromotionPolicy.NOT_WORSE
    )

    # Review quality
    overlap_rate = models.FloatField(
        default=0.10,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of documents that go to more than one reviewer, to measure agreement.",
    )
    overlap_reviewers = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(2), MaxValueValidator(5)],
        help_text="How many reviewers each overlapped document gets.",
    )
    # Explore
    reviewers_bulk_label = models.BooleanField(
        default=False,
        help_text="Let reviewers label many documents at once from Explore (admins and lead reviewers always may).",
    )
    gold_rate = models.FloatField(
        default=0.05,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Share of each reviewer's queue drawn from gold documents (known answers).",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(lease_ttl_seconds__gte=30), name="project_lease_ttl_min"),
            models.CheckConstraint(
                condition=Q(eval_fraction__gte=0) & Q(eval_fraction__lte=0.5),
                name="project_eval_fraction_range",
            ),
            models.CheckConstraint(
                condition=Q(overlap_rate__gte=0) & Q(overlap_rate__lte=1), name="project_overlap_rate_range"
            ),
            models.CheckConstraint(
                condition=Q(overlap_reviewers__gte=2) & Q(overlap_reviewers__lte=5),
                name="project_overlap_reviewers_range",
            ),
            models.CheckConstraint(
                condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=0.5), name="project_gold_rate_range"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        _check_lengths(self, {"description": DESCRIPTION_MAX_CHARS})


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", "Project admin"
        LEAD = "lead", "Lead reviewer"
        REVIEWER = "reviewer", "Reviewer"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.REVIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_unique_user"),
            models.CheckConstraint(condition=Q(role__in=["admin", "lead", "reviewer"]), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class Invitation(models.Model):
    """An account that a project admin's invitation created (by email or a new username).

    It is what lets that admin, and only that admin, hand the account a set-password link while the account has
    never signed in and belongs to no other project (permissions.may_set_credentials). Accounts that existed
    before their invitation have no row here: their credentials are never a project admin's to touch.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="invitation")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} invited to {self.project}"


class Taxonomy(models.Model):
    """A project's label set. `version` increases with every saved change, so models know what they saw."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="taxonomy")
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "taxonomies"

    def __str__(self) -> str:
        return f"{self.project} taxonomy v{self.version}"


class Label(models.Model):
    taxonomy = models.ForeignKey(Taxonomy, on_delete=models.CASCADE, related_name="labels")
    key = models.SlugField(max_length=64, help_text="Stable identifier used in imports, exports and the API.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    guideline = models.TextField(blank=True, help_text="Markdown shown to reviewers beside the label.")
    color = models.CharField(max_length=7, default="#4f6d7a")
    shortcut = models.CharField(max_length=1, blank=True)
    order = models.PositiveIntegerField(default=0)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    deprecated = models.BooleanField(default=False, help_text="Hidden for new labeling; kept in history.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["taxonomy", "key"], name="label_unique_key"),
            models.UniqueConstraint(
                fields=["taxonomy", "shortcut"], condition=~Q(shortcut=""), name="label_unique_shortcut"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        _check_lengths(self, {"description": DESCRIPTION_MAX_CHARS, "guideline": GUIDELINE_MAX_CHARS})


class TaxonomyVersion(models.Model):
    """A saved state of a taxonomy: the labels after one operation, who did it and what it was.

    `operation` and `details` say how labels moved (e.g. merge: {"sources": [...], "target": "c"}), so the
    labels a model was trained on can be mapped to today's labels.
    """

    taxonomy = models.ForeignKey(Taxonomy, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    operation = models.CharField(max_length=32)
    details = models.JSONField(default=dict, blank=True)
    labels = models.JSONField(default=list, help_text="Every label of this version, deprecated ones included.")
    multi_label = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["taxonomy", "version"]
        constraints = [
            models.UniqueConstraint(fields=["taxonomy", "version"], name="taxonomy_version_unique"),
            models.CheckConstraint(condition=Q(version__gte=1), name="taxonomy_version_positive"),
        ]

    def __str__(self) -> str:
        return f"v{self.version} {self.operation}"


class ImportBatch(models.Model):
    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        JSONL = "jsonl", "JSON Lines"
        TXT = "txt", "Plain text (one document per line)"
        LABEL_STUDIO = "label-studio", "Label Studio JSON tasks"
        DOCCANO = "doccano", "doccano JSONL (text classification)"
        PRODIGY = "prodigy", "Prodigy JSONL (textcat)"
        PARQUET = "parquet", "Hugging Face Parquet"
        HF_DATASET = "hf-dataset", "Hugging Face dataset directory (save_to_disk, zipped)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed: nothing imported"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_batches")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    file_name = models.CharField(max_length=255)
    stored_path = models.CharField(max_length=500, blank=True, help_text="Uploaded file awaiting a worker.")
    format = models.CharField(max_length=16, choices=Format.choices)
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    rows_seen = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    duplicate_count = models.PositiveIntegerField(default=0)
    rejected_count = models.PositiveIntegerField(default=0)
    annotation_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why the whole file was refused, when it was.")
    # Written every few seconds while it runs; a running import silent for long lost its process.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "import batches"

    def __str__(self) -> str:
        return f"{self.file_name} ({self.get_status_display()})"

    @property
    def rerunnable(self) -> bool:
        """A failed upload whose file is still in storage can be run again (services.imports.import_batch_rerun)."""
        return self.status == self.Status.FAILED and bool(self.stored_path) and os.path.exists(self.stored_path)


class ImportRowError(models.Model):
    batch = models.ForeignKey(ImportBatch, on_delete=models.CASCADE, related_name="row_errors")
    line = models.PositiveIntegerField()
    reason = models.TextField()

    class Meta:
        ordering = ["batch", "line"]

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class Document(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Waiting for review"
        LABELED = "labeled", "Labeled"
        FLAGGED = "flagged", "Held for legal review"
        CLOSED = "closed", "Closed by legal review"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="documents")
    external_id = models.CharField(max_length=255, blank=True)
    text = models.TextField()
    metadata = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    rereview_reason = models.CharField(
        max_length=255, blank=True, help_text="Why a labeled document went back to the queue."
    )
    import_batch = models.ForeignKey(
        ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="documents"
    )
    # A fixed random order for the queue while the learning side has written no priorities.
    random_key = models.FloatField(default=new_random_key)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "content_hash"], name="document_unique_content"),
            models.UniqueConstraint(
                fields=["project", "external_id"], condition=~Q(external_id=""), name="document_unique_external_id"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "labeled", "flagged", "closed"]), name="document_status_valid"
            ),
        ]
        # The queue's unscored route reads it in order (random_key, id) under LIMIT 1: with `id` in the index the
        # first free entry ends the scan, without it PostgreSQL sorts a batch of (at least 32) rows per get-next.
        indexes = [models.Index(fields=["project", "status", "random_key", "id"], name="document_queue_order_idx")]

    def __str__(self) -> str:
        return self.external_id or f"document {self.pk}"


class DocumentSearchVector(models.Model):
    """Explore's word index: a document's text as PostgreSQL's tsvector, GIN-indexed (document_search_vector_idx).

    Kept out of the document's own row so that an import does not compute and index 100,000 vectors inside its
    insert: a worker fills it afterwards (services/search_index.py). On PostgreSQL the keys cascade from the
    document (migration 0018), so Django leaves them alone; on SQLite (no text search) the table stays empty.
    """

    document = models.OneToOneField(
        Document, on_delete=models.DO_NOTHING, db_constraint=False, primary_key=True, related_name="+"
    )
    # Not indexed: the GIN index finds the matches and the project is checked on them (a b-tree on the project
    # tempted PostgreSQL to read all of a large project's vectors instead).
    project = models.ForeignKey(
        Project, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    vector = SearchVectorField()


class DocumentSearchPending(models.Model):
    """A document whose search vector is not computed yet. A PostgreSQL trigger adds one for every document
    inserted (or whose text changes), whoever writes it; the worker removes it when it stores the vector."""

    document = models.OneToOneField(
        Document, on_delete=models.DO_NOTHING, db_constraint=False, primary_key=True, related_name="+"
    )


class Lease(models.Model):
    """A reviewer's hold on a document. One row per document at most: the database forbids two holders."""

    document = models.OneToOneField(Document, on_delete=models.CASCADE, primary_key=True, related_name="lease")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="leases")
    acquired_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["project", "reviewer", "expires_at"], name="lease_reviewer_idx")]

    def __str__(self) -> str:
        return f"{self.document} held by {self.reviewer} until {self.expires_at:%H:%M:%S}"


class Skip(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="skips")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["document", "reviewer"], name="skip_unique")]


class Flag(models.Model):
    """A document sent to legal review with the reviewer's comment, and how legal review resolved it."""

    class Decision(models.TextChoices):
        REQUEUE = "requeue", "Back to the review queue"
        CLOSE = "close", "Closed: not to be labeled"

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="flags")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    comment = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision = models.CharField(max_length=16, choices=Decision.choices, blank=True)
    resolution_note = models.TextField(blank=True, help_text="What legal review decided and why.")

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # Open, or resolved with a decision: never half of each.
            models.CheckConstraint(
                condition=(Q(resolved_at__isnull=True) & Q(decision=""))
                | (Q(resolved_at__isnull=False) & Q(decision__in=["requeue", "close"])),
                name="flag_resolution_whole",
            ),
        ]
        indexes = [models.Index(fields=["document", "resolved_at"], name="flag_open_idx")]

    def __str__(self) -> str:
        return f"flag {self.pk} on {self.document_id}"


class Annotation(models.Model):
    class Source(models.TextChoices):
        REVIEWER = "reviewer", "Reviewer"
        IMPORT = "import", "Imported"
        API = "api", "API"
        BULK = "bulk", "Labeled in bulk from Explore"

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="annotations")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="annotations"
    )
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.REVIEWER)
    labels = models.ManyToManyField(Label, through="AnnotationLabel", related_name="annotations")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    seconds_spent = models.FloatField(
        null=True,
        blank=True,
        help_text="Seconds the document was on the reviewer's screen, from its first paint to the answer.",
    )
    served_at = models.DateTimeField(
        null=True, blank=True, help_text="When the labeling page was handed the document this answer is for."
    )
    model_version_shown = models.PositiveIntegerField(
        null=True, blank=True, help_text="Number of the model version whose suggestion the reviewer saw."
    )
    suggested_labels = models.JSONField(default=list, blank=True)
    suggestion_accepted = models.BooleanField(null=True, blank=True)
    # A client-chosen id that makes a retried submission store one annotation, not two.
    submission_id = models.UUIDField(null=True, blank=True, unique=True, default=None)
    # The bulk labeling that gave this answer (source "bulk"), so training can weigh it and quality can compare
    # it with later individual review; None for an answer given one document at a time.
    bulk_batch = models.ForeignKey(
        "BulkBatch", null=True, blank=True, on_delete=models.SET_NULL, related_name="annotations"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["document", "reviewer"], condition=Q(reviewer__isnull=False), name="annotation_one_per_reviewer"
            ),
            models.UniqueConstraint(
                fields=["document"], condition=Q(reviewer__isnull=True), name="annotation_one_unattributed"
            ),
        ]
        indexes = [models.Index(fields=["reviewer", "created_at"], name="annotation_reviewer_idx")]

    def __str__(self) -> str:
        return f"annotation {self.pk} on {self.document_id}"


class AnnotationLabel(models.Model):
    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE)
    # PROTECT: a label that annotations use can be merged or deprecated, never deleted out from under them.
    label = models.ForeignKey(Label, on_delete=models.PROTECT)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["annotation", "label"], name="annotation_label_unique")]


class AnnotationRevision(models.Model):
    """Every state an annotation has had, so edits and taxonomy changes never erase what was said."""

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="revisions")
    label_keys = models.JSONField(default=list)
    label_ids = models.JSONField(default=list)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True)
    reason = models.CharField(max_length=64)

    class Meta:
        ordering = ["annotation", "changed_at", "id"]


class GoldAnswer(models.Model):
    """A document whose right answer an admin knows: served to reviewers like any other, scored against this."""

    document = models.OneToOneField(Document, on_delete=models.CASCADE, primary_key=True, related_name="gold_answer")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    # Keys, not label rows: a taxonomy merge may delete a label, and a known answer must not block it.
    label_keys = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"gold answer for {self.document_id}: {', '.join(self.label_keys)}"


class Adjudication(models.Model):
    """A decision on a document whose reviewers disagreed. Rows are only added: the newest is the final label,
    the older ones and every reviewer's own answer stay as history."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="adjudications")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    label_keys = models.JSONField(default=list)
    # What each reviewer had answered when the decision was made: {"username": ["key", ...]}.
    answers_seen = models.JSONField(default=dict)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["document", "-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "created_at"], name="adjudication_project_idx"),
            models.Index(fields=["document", "-created_at"], name="adjudication_document_idx"),
        ]

    def __str__(self) -> str:
        return f"adjudication of {self.document_id}: {', '.join(self.label_keys)}"


class AuditEvent(models.Model):
    """Append-only record of who did what. The app only ever inserts these rows.

    Project and actor are kept as they were, ids and names alike, whatever is deleted later: the columns carry
    no foreign-key constraint (a constraint's ON DELETE would have to rewrite the row), and the app's database
    role may only INSERT and SELECT here (docs/security.md).
    """

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_label = models.CharField(max_length=200, blank=True, help_text="Who acted, kept even if the user goes.")
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    project_label = models.CharField(
        max_length=200, blank=True, help_text="The project's name at the time, kept even if the project goes."
    )
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label} {self.action}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValidationError("Audit events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Audit events cannot be deleted.")


class BulkBatch(models.Model):
    """Labels given to many documents at once from Explore: one row per apply, undone as a whole.

    Its id is in every audit event the apply and the undo write, so the log shows the batch as one.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="bulk_batches")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    label_keys = models.JSONField(default=list)
    # The search that chose the documents, as the Explore page sent it (for the record, never re-run).
    query = models.JSONField(default=dict, blank=True)
    created_count = models.PositiveIntegerField(default=0)
    changed_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "-created_at"], name="bulk_batch_project_idx")]

    def __str__(self) -> str:
        return f"bulk batch {self.pk}"


class BulkBatchItem(models.Model):
    """One document of a bulk batch and what its annotation was before, so an undo can put it back."""

    batch = models.ForeignKey(BulkBatch, on_delete=models.CASCADE, related_name="items")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="+")
    annotation = models.ForeignKey(Annotation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The revision the batch wrote: an undo leaves alone an annotation revised after it (a later own review).
    revision = models.ForeignKey(AnnotationRevision, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created = models.BooleanField(help_text="The batch created the annotation (else it changed an earlier one).")
    previous_label_ids = models.JSONField(default=list, blank=True)
    previous_source = models.CharField(max_length=16, blank=True)
    previous_status = models.CharField(max_length=16)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "document"], name="bulk_batch_item_unique")]


class QueueBoost(models.Model):
    """A document put at the front of the review queue from Explore, for one reviewer or (reviewer None) for all."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="queue_boosts")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["document", "reviewer"],
                condition=Q(reviewer__isnull=False),
                name="queue_boost_one_per_reviewer",
            ),
            models.UniqueConstraint(
                fields=["document"], condition=Q(reviewer__isnull=True), name="queue_boost_one_for_everyone"
            ),
        ]
        indexes = [models.Index(fields=["project", "created_at"], name="queue_boost_project_idx")]
