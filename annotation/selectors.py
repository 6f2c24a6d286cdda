"""Reads that several callers need: project progress, final labels, exports."""

from collections.abc import Iterable

from django.db.models import Count, Q

from annotation.models import Annotation, AnnotationLabel, Document, Label, Project


def project_progress(project: Project) -> dict[str, int]:
    counts = Document.objects.filter(project=project).aggregate(
        total=Count("id"),
        labeled=Count("id", filter=Q(status=Document.Status.LABELED)),
        queued=Count("id", filter=Q(status=Document.Status.QUEUED)),
        flagged=Count("id", filter=Q(status=Document.Status.FLAGGED)),
    )
    return counts


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


def final_labels(annotations: list[dict]) -> list[str]:
    """The document's labels from its annotations (dicts with `labels` and `updated_at`).

    Unanimous annotations give their shared labels; otherwise the most recently changed one wins until
    adjudication exists. An unlabeled document has no labels.
    """
    if not annotations:
        return []
    label_sets = {tuple(a["labels"]) for a in annotations}
    if len(label_sets) == 1:
        return list(next(iter(label_sets)))
    latest = max(annotations, key=lambda a: a["updated_at"])
    return list(latest["labels"])


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
