"""Likely label errors of a project: Django glue around `learning.ml.label_errors`.

Reads the final labels and the embeddings the learning loop cached for the active model's body (or the
base body before the first model); documents without a cached embedding are left out and counted, because
encoding on a page request would take minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.core.cache import cache
from django.db.models import Count, Max

from annotation.models import Adjudication, Annotation, Document, GoldAnswer, Label, Project
from annotation.selectors import final_labels_for
from learning.ml.classifier import base_body_id, default_base_model
from learning.ml.label_errors import out_of_fold_probabilities, rank_label_issues
from learning.selectors import active_model_version
from learning.services import base_model_for, cached_embeddings

CACHE_SECONDS = 24 * 3600
MIN_DOCUMENTS = 30
"""Fewer labeled documents than this give out-of-fold heads too weak to judge anyone's labels."""


@dataclass
class LabelErrorReport:
    issues: list[dict] = field(default_factory=list)  # document_id, external_id, text, given, suggested, confidence
    labeled: int = 0
    measured: int = 0
    missing_embeddings: int = 0
    note: str = ""


def project_body_id(project: Project) -> str:
    version = active_model_version(project)
    if version is not None and version.body_id:
        return version.body_id
    return base_body_id(base_model_for(project) or default_base_model())


def likely_label_errors_cached(project: Project, *, limit: int = 100) -> LabelErrorReport:
    """`likely_label_errors`, recomputed only when answers, decisions, gold answers or the model body change.

    Five head fits take seconds on a large project; a document sent back for re-review since leaves the list
    at once (one query), without a recomputation.
    """
    stamp = Annotation.objects.filter(document__project=project).aggregate(n=Count("id"), at=Max("updated_at"))
    decided = Adjudication.objects.filter(project=project).count()
    gold = GoldAnswer.objects.filter(project=project).count()
    changed = stamp["at"].timestamp() if stamp["at"] else 0
    key = (
        f"quality:label-errors:{project.pk}:{project_body_id(project)}:{stamp['n']}:{changed}:{decided}:{gold}:{limit}"
    )
    report = cache.get(key)
    if report is None:
        report = likely_label_errors(project, limit=limit)
        cache.set(key, report, CACHE_SECONDS)
    still_labeled = set(
        Document.objects.filter(
            pk__in=[i["document_id"] for i in report.issues], status=Document.Status.LABELED
        ).values_list("pk", flat=True)
    )
    report.issues = [i for i in report.issues if i["document_id"] in still_labeled]
    return report


def likely_label_errors(project: Project, *, limit: int = 100) -> LabelErrorReport:
    keys = list(
        Label.objects.filter(taxonomy__project=project, deprecated=False)
        .order_by("order", "id")
        .values_list("key", flat=True)
    )
    position = {key: j for j, key in enumerate(keys)}
    labeled = list(
        Document.objects.filter(project=project, status=Document.Status.LABELED).values_list("pk", flat=True)
    )
    finals = final_labels_for(labeled)
    chosen = {
        doc: [k for k in final.labels if k in position]
        for doc, final in finals.items()
        if final.basis in ("single", "unanimous")  # adjudicated and gold answers were checked by an admin already
    }
    chosen = {doc: ks for doc, ks in chosen.items() if ks}
    report = LabelErrorReport(labeled=len(labeled))
    ids, vectors = cached_embeddings(project_id=project.pk, body_id=project_body_id(project))
    wanted = np.asarray(sorted(chosen), dtype=np.int64)
    rows = np.searchsorted(ids, wanted) if len(ids) else np.zeros(len(wanted), dtype=np.int64)
    found = (rows < len(ids)) & (ids[np.minimum(rows, max(len(ids) - 1, 0))] == wanted) if len(ids) else rows < 0
    report.missing_embeddings = int((~found).sum())
    wanted, rows = wanted[found], rows[found]
    report.measured = len(wanted)
    if report.measured < MIN_DOCUMENTS:
        report.note = (
            f"Needs at least {MIN_DOCUMENTS} labeled documents with cached embeddings; has {report.measured}. "
            "Embeddings are cached when the model is trained or the pool is scored."
        )
        return report
    x = vectors[rows]
    if project.multi_label:
        targets = np.zeros((len(wanted), len(keys)), dtype=np.int64)
        for i, doc in enumerate(wanted):
            targets[i, [position[k] for k in chosen[int(doc)]]] = 1
    else:
        targets = np.asarray([position[chosen[int(doc)][0]] for doc in wanted], dtype=np.int64)
    probabilities = out_of_fold_probabilities(x, targets, len(keys), multi_label=project.multi_label)
    issues = rank_label_issues(targets, probabilities, multi_label=project.multi_label)[:limit]
    documents = Document.objects.in_bulk([int(wanted[i.index]) for i in issues])
    for issue in issues:
        document = documents[int(wanted[issue.index])]
        report.issues.append(
            {
                "document_id": document.pk,
                "external_id": document.external_id,
                "text": document.text,
                "given": [keys[j] for j in issue.given],
                "suggested": [keys[j] for j in issue.suggested],
                "confidence": issue.self_confidence,
            }
        )
    return report
