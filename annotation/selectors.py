"""Reads that several callers need: project progress, final labels, exports, the review queue's pages."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from annotation import statements
from annotation.models import Adjudication, Annotation, AnnotationLabel, Document, GoldAnswer, Label, Project
from learning import selectors as learning_selectors

_PROGRESS = {
    "total": Count("id"),
    "labeled": Count("id", filter=Q(status=Document.Status.LABELED)),
    "queued": Count("id", filter=Q(status=Document.Status.QUEUED)),
    "flagged": Count("id", filter=Q(status=Document.Status.FLAGGED)),
}


def project_progress(project: Project) -> dict[str, int]:
    return Document.objects.filter(project=project).aggregate(**_PROGRESS)


def projects_progress(projects: Iterable[Project]) -> dict[int, dict[str, int]]:
    """`project_progress` of many projects in one grouped query (a project without documents counts zeros)."""
    ids = [p.pk for p in projects]
    progress = {pk: dict.fromkeys(_PROGRESS, 0) for pk in ids}
    grouped = Document.objects.filter(project__in=ids).values("project").annotate(**_PROGRESS).order_by()
    for row in grouped:
        progress[row.pop("project")] = row
    return progress


def labels_for(project: Project, *, include_deprecated: bool = True) -> list[Label]:
    labels = Label.objects.filter(taxonomy__project=project)
    if not include_deprecated:
        labels = labels.filter(deprecated=False)
    return list(labels.order_by("order", "id"))


def annotation_label_keys(annotation_ids: Iterable[int]) -> dict[int, list[str]]:
    """Label keys per annotation, in taxonomy order, in one query."""
    keys: dict[int, list[str]] = {}
    rows = (
        AnnotationLabel.objects.filter(annotation_id__in=list(annotation_ids))
        .order_by("label__order", "label_id")
        .values_list("annotation_id", "label__key")
    )
    for annotation_id, key in rows:
        keys.setdefault(annotation_id, []).append(key)
    return keys


@dataclass(frozen=True)
class FinalLabel:
    """A document's labels and the rule that chose them: adjudicated, gold, unanimous, single, disputed."""

    labels: list[str]
    basis: str


def final_label(
    annotations: list[dict], *, adjudicated: list[str] | None = None, gold: list[str] | None = None
) -> FinalLabel:
    """The rule that picks a document's labels (docs/quality.md), first match wins:

    1. adjudicated: the newest adjudication's labels;
    2. gold: the answer an admin marked as known;
    3. unanimous: every annotation gives the same labels;
    4. single: only one annotation exists;
    5. disputed: annotations disagree and nobody has adjudicated yet: no labels, so neither training nor
       evaluation uses the document until an admin decides.
    An unlabeled document has no labels ("none").
    """
    if adjudicated is not None:
        return FinalLabel(list(adjudicated), "adjudicated")
    if gold is not None:
        return FinalLabel(list(gold), "gold")
    if not annotations:
        return FinalLabel([], "none")
    label_sets = {tuple(sorted(a["labels"])) for a in annotations}
    if len(label_sets) == 1:
        return FinalLabel(list(annotations[0]["labels"]), "unanimous" if len(annotations) > 1 else "single")
    return FinalLabel([], "disputed")


def final_labels(annotations: list[dict]) -> list[str]:
    """The document's labels from its annotations alone (dicts with `labels`); see `final_label`."""
    return final_label(annotations).labels


def latest_adjudications(document_ids: Iterable[int]) -> dict[int, list[str]]:
    """The newest decision's label keys per adjudicated document.

    Picked in Python rather than with DISTINCT ON, which SQLite (the embedded `make run` database) lacks;
    a document has few decisions, so this reads little.
    """
    adjudicated: dict[int, list[str]] = {}
    for document_id, label_keys in (
        Adjudication.objects.filter(document_id__in=list(document_ids))
        .order_by("document_id", "-created_at", "-id")
        .values_list("document_id", "label_keys")
    ):
        adjudicated.setdefault(document_id, label_keys)
    return adjudicated


def own_label_keys_for(document_ids: Iterable[int], reviewer: AbstractBaseUser) -> dict[int, list[str]]:
    """The reviewer's own answer per document (empty where they gave none): all a blind reviewer may read."""
    mine = dict(
        Annotation.objects.filter(document_id__in=list(document_ids), reviewer=reviewer).values_list(
            "document_id", "id"
        )
    )
    keys = annotation_label_keys(mine.values())
    return {document_id: keys.get(annotation_id, []) for document_id, annotation_id in mine.items()}


def final_labels_for(document_ids: Iterable[int]) -> dict[int, FinalLabel]:
    """Each document's final label with adjudications and gold answers taken into account, in four queries."""
    document_ids = list(document_ids)
    by_document = annotations_by_document(document_ids)
    adjudicated = latest_adjudications(document_ids)
    gold = dict(GoldAnswer.objects.filter(document_id__in=document_ids).values_list("document_id", "label_keys"))
    return {
        document_id: final_label(
            by_document.get(document_id, []), adjudicated=adjudicated.get(document_id), gold=gold.get(document_id)
        )
        for document_id in document_ids
    }


def annotations_by_document(document_ids: Iterable[int]) -> dict[int, list[dict]]:
    """Each document's annotations as plain dicts (reviewer, source, labels, times), in two queries."""
    annotations = list(
        Annotation.objects.filter(document_id__in=list(document_ids))
        .select_related("reviewer")
        .order_by("created_at", "id")
    )
    keys = annotation_label_keys(a.id for a in annotations)
    result: dict[int, list[dict]] = {}
    for a in annotations:
        result.setdefault(a.document_id, []).append(
            {
                "reviewer": a.reviewer.get_username() if a.reviewer else None,
                "source": a.source,
                "labels": keys.get(a.id, []),
                "created_at": a.created_at,
                "updated_at": a.updated_at,
            }
        )
    return result


# --- Review queue and labeling page --------------------------------------------------------------------------

# Keys the labeling page keeps for itself; a label whose shortcut is one of these is reached by mouse only.
RESERVED_KEYS = frozenset({"s", "u", "f", "?"})
# Metadata keys shown as the document's context, in this order; others are listed after them.
CONTEXT_KEYS = ("source_title", "kind", "product", "region")
# A multi-label suggestion holds the labels the model gives at least this probability.
SUGGESTION_THRESHOLD = 0.5


def review_labels(project: Project) -> list[dict]:
    """The labels a reviewer may choose now (deprecated ones hidden), in taxonomy order, as the page needs them."""
    labels = list(
        Label.objects.filter(taxonomy__project=project, deprecated=False)
        .select_related("parent")
        .order_by("order", "id")
    )
    result = []
    for label in labels:
        shortcut = label.shortcut.lower() if label.shortcut.lower() not in RESERVED_KEYS else ""
        result.append(
            {
                "key": label.key,
                "name": label.name,
                "description": label.description,
                "guideline": label.guideline,
                "color": label.color,
                "shortcut": shortcut,
                "shortcut_conflict": label.shortcut if label.shortcut and not shortcut else "",
                "parent": label.parent.name if label.parent_id else "",
                "parent_key": label.parent.key if label.parent_id else "",
            }
        )
    return result


def label_groups(labels: list[dict]) -> list[dict]:
    """Labels grouped under their parent, in taxonomy order.

    A parent that is itself a label leads its own group, and its children join that group wherever their
    own order puts them, so a hierarchy reads top-down. Labels outside any hierarchy keep their place.
    """
    parents_with_children = {label["parent_key"] for label in labels if label["parent_key"]}
    groups: list[dict] = []
    named: dict[str, dict] = {}
    for label in labels:
        group_key = label["parent_key"] or (label["key"] if label["key"] in parents_with_children else "")
        if group_key:
            if group_key not in named:
                named[group_key] = {"title": label["parent"] or label["name"], "labels": []}
                groups.append(named[group_key])
            named[group_key]["labels"].append(label)
        elif groups and not groups[-1]["title"]:
            groups[-1]["labels"].append(label)
        else:
            groups.append({"title": "", "labels": [label]})
    return groups


def suggestion_for(
    project: Project, document: Document, label_keys: list[str], *, prediction_row: dict | None = None
) -> dict | None:
    """The active model's suggestion for one document: its version, each label's probability, the pick.

    Before the first model, the suggestion comes from the labels' own words (`from_label_descriptions`).
    `prediction_row`: the document's `learning.selectors.review_prediction_columns`, when read already.
    """
    prediction = learning_selectors.prediction_for_review(project, document, row=prediction_row)
    if not prediction:
        return None
    # Imported here: the taxonomy service reads this module's RESERVED_KEYS when it loads.
    from annotation.services.taxonomy import current_labels

    raw = prediction["probabilities"] or {}
    mapped = current_labels(
        project,
        model_taxonomy_version=prediction["taxonomy_version"],
        keys=raw,
        current_version=prediction["current_taxonomy_version"],
        current_keys=label_keys,
    )
    probabilities = {
        k: float(p) for k, p in mapped.probabilities(raw, multi_label=project.multi_label).items() if k in label_keys
    }
    if not probabilities:
        return None
    best = max(probabilities, key=probabilities.get)
    if project.multi_label:
        picked = [k for k in label_keys if probabilities.get(k, 0.0) >= SUGGESTION_THRESHOLD] or [best]
    else:
        picked = [best]
    return {
        "model_version": prediction["model_version"],
        "from_label_descriptions": prediction["from_label_descriptions"],
        "probabilities": probabilities,
        "labels": picked,
    }


def _current_labels(project: Project | int) -> QuerySet[Label]:
    return Label.objects.filter(taxonomy__project=project, deprecated=False).order_by("order", "id")


def _document_for_review_row(
    *, project_id: int, reviewer_id: int, document_id: int, with_label_keys: bool
) -> QuerySet[Document]:
    """The one query of `document_for_review`, as a `values()` queryset."""
    project = Project(pk=project_id)
    prediction_columns = learning_selectors.review_prediction_columns(project)
    others = Annotation.objects.filter(document=OuterRef("pk")).exclude(reviewer=reviewer_id)
    columns = {
        **prediction_columns,
        "review_mine": Subquery(
            Annotation.objects.filter(document=OuterRef("pk"), reviewer=reviewer_id).order_by("id").values("id")[:1]
        ),
        # Whether the model has learned someone else's answer to this document: a gold answer, another
        # reviewer's (designed overlap) or an imported one. Its suggestion would show this reviewer that answer,
        # so it is withheld to keep gold checks and agreement blind.
        "review_known": Exists(GoldAnswer.objects.filter(document=OuterRef("pk"))) | Exists(others),
    }
    if with_label_keys:
        columns["review_label_keys"] = ArraySubquery(_current_labels(project).values("key"))
    return Document.objects.filter(pk=document_id).annotate(**columns).values(*columns).order_by("pk")[:1]


def document_for_review(document: Document, *, project: Project, reviewer: AbstractBaseUser) -> dict:
    """What the labeling page shows for a document: text, context, the reviewer's own answer, the suggestion.

    Everything it needs from the database comes in one query (the labels offered now, whether the reviewer
    answered it before, whether anyone else's answer is known, the stored scores): this runs for every
    document served. The reviewer's own labels take a second one, only when there is an earlier answer.
    """
    rows = statements.prepared_values(
        "selectors.document_for_review",
        _document_for_review_row,
        project_id=project.pk,
        reviewer_id=reviewer.pk,
        document_id=document.pk,
        with_label_keys=connection.vendor == "postgresql",
    )
    row = rows[0] if rows else {}
    prediction_columns = learning_selectors.REVIEW_PREDICTION_COLUMNS
    label_keys = row.get("review_label_keys")
    if label_keys is None:
        label_keys = list(_current_labels(project).values_list("key", flat=True))
    metadata = document.metadata if isinstance(document.metadata, dict) else {}
    context = [{"key": k, "value": str(metadata[k])} for k in CONTEXT_KEYS if metadata.get(k) not in (None, "")]
    other = [{"key": k, "value": str(v)} for k, v in metadata.items() if k not in CONTEXT_KEYS and v not in (None, "")]
    mine = row.get("review_mine")
    return {
        "id": document.pk,
        "external_id": document.external_id,
        "text": document.text,
        "status": document.status,
        "title": str(metadata.get("source_title") or document.external_id or f"Document {document.pk}"),
        "context": context,
        "metadata": other,
        "my_labels": annotation_label_keys([mine]).get(mine, []) if mine else None,
        "suggestion": None
        if row.get("review_known")
        else suggestion_for(project, document, label_keys, prediction_row={k: row.get(k) for k in prediction_columns}),
    }


def queue_state(project: Project, reviewer: AbstractBaseUser) -> str:
    """Why the queue offers this reviewer nothing: "empty" (nothing imported), "done" (nothing left to label),
    "held" (the rest is held by other reviewers right now) or "skipped" (only documents this reviewer skipped)."""
    documents = Document.objects.filter(project=project)
    if not documents.exists():
        return "empty"
    queued = documents.filter(status=Document.Status.QUEUED)
    if not queued.exists():
        return "done"
    if queued.exclude(skips__reviewer=reviewer).exists():
        return "held"
    return "skipped"


def reviewer_counts(project: Project, reviewer: AbstractBaseUser) -> dict[str, int]:
    """How many documents of the project the reviewer has labeled, today (local time) and in all."""
    start_of_day = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return Annotation.objects.filter(document__project=project, reviewer=reviewer).aggregate(
        today=Count("id", filter=Q(created_at__gte=start_of_day)), total=Count("id")
    )


def current_model(project: Project) -> dict | None:
    """The project's serving model as {"number", "score"}: score is its evaluation macro-F1, None until it has
    been evaluated. None before the first model."""
    model = learning_selectors.active_model(project)
    if model is None:
        return None
    return {"number": model.number, "score": model.score}


def my_annotations(project: Project, reviewer: AbstractBaseUser, *, query: str = "") -> QuerySet[Annotation]:
    """The reviewer's own annotations in the project, newest change first, optionally searched.

    The search matches the document's text or external id, or a label's key or name.
    """
    annotations = Annotation.objects.filter(document__project=project, reviewer=reviewer)
    query = query.strip()
    if query:
        matching_labels = AnnotationLabel.objects.filter(annotation=OuterRef("pk")).filter(
            Q(label__key__icontains=query) | Q(label__name__icontains=query)
        )
        annotations = annotations.filter(
            Q(document__text__icontains=query) | Q(document__external_id__icontains=query) | Exists(matching_labels)
        )
    return (
        annotations.select_related("document")
        .annotate(revision_count=Count("revisions"))
        .order_by("-updated_at", "-id")
    )


def recent_annotated_document_ids(project: Project, reviewer: AbstractBaseUser, *, limit: int = 20) -> list[int]:
    """The documents the reviewer labeled last, oldest first: where the page's "go back" key leads."""
    ids = list(
        Annotation.objects.filter(document__project=project, reviewer=reviewer)
        .order_by("-created_at", "-id")
        .values_list("document_id", flat=True)[:limit]
    )
    return ids[::-1]
