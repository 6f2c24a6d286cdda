"""Likely label errors of a project: Django glue around `learning.ml.label_errors`.

Reads the final labels and the embeddings the learning loop cached for the active model's body (or the
base body before the first model); documents without a cached embedding are left out and counted, because
encoding on a page request would take minutes.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from django.core.cache import cache
from django.db.models import Count, Max
from django.utils import timezone

from annotation.models import Adjudication, Annotation, Document, GoldAnswer, Label, Project
from annotation.selectors import final_labels_for
from learning.ml.classifier import base_body_id, default_base_model
from learning.ml.label_errors import out_of_fold_probabilities, rank_label_issues
from learning.selectors import active_model_version
from learning.services import artifact_root, base_model_for, cached_embeddings

logger = logging.getLogger(__name__)

INLINE_ANSWERS = 500
REFRESH_ASK_SECONDS = 600
MIN_DOCUMENTS = 30
"""Fewer labeled documents than this give out-of-fold heads too weak to judge anyone's labels."""


@dataclass
class LabelErrorReport:
    issues: list[dict] = field(default_factory=list)  # document_id, external_id, text, given, suggested, confidence
    labeled: int = 0
    measured: int = 0
    missing_embeddings: int = 0
    note: str = ""
    computed_at: str = ""  # ISO time the ranking was computed
    state: str = "current"  # or "stale" (an update is being computed) or "computing" (none yet)

    @property
    def computed_time(self) -> datetime | None:
        return datetime.fromisoformat(self.computed_at) if self.computed_at else None


def project_body_id(project: Project) -> str:
    version = active_model_version(project)
    if version is not None and version.body_id:
        return version.body_id
    return base_body_id(base_model_for(project) or default_base_model())


def _project_stamp(project: Project) -> str:
    """Which project, and which incarnation of it: a database restored or recreated reuses ids."""
    return f"{project.pk}:{project.created_at.timestamp() if project.created_at else 0}:"


def label_error_stamp(project: Project, limit: int) -> tuple[str, int]:
    """What a ranking was computed from (answers, decisions, gold answers and the model body), and how many
    answers there are. Any change of these makes a new stamp; a document sent back for re-review does not
    (it is filtered out on reading)."""
    stamp = Annotation.objects.filter(document__project=project).aggregate(n=Count("id"), at=Max("updated_at"))
    decided = Adjudication.objects.filter(project=project).count()
    gold = GoldAnswer.objects.filter(project=project).count()
    changed = stamp["at"].timestamp() if stamp["at"] else 0
    text = f"{_project_stamp(project)}{project_body_id(project)}:{stamp['n']}:{changed}:{decided}:{gold}:{limit}"
    return text, stamp["n"]


def _report_path(project_id: int) -> Path:
    return artifact_root() / "quality" / f"project-{project_id}-label-errors.json"


def _report_read(project: Project) -> tuple[str, LabelErrorReport] | None:
    """The stored ranking and its stamp; None when there is none, or it belongs to another project that once
    had this id."""
    try:
        stored = json.loads(_report_path(project.pk).read_text())
    except (OSError, ValueError):
        return None
    if not stored["stamp"].startswith(_project_stamp(project)):
        return None
    return stored["stamp"], LabelErrorReport(**stored["report"])


def _report_write(project_id: int, stamp: str, report: LabelErrorReport) -> None:
    """Written aside, then renamed: a reader sees the old ranking or the new one, never half of one."""
    path = _report_path(project_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    report.computed_at = timezone.now().isoformat()
    aside = path.with_suffix(f".{os.getpid()}.tmp")
    aside.write_text(json.dumps({"stamp": stamp, "report": asdict(report)}, default=float))
    os.replace(aside, path)


def label_errors_refresh(*, project_id: int, limit: int = 100) -> bool:
    """Compute and store the project's ranking unless the stored one is current (what the worker runs)."""
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return False
    stamp, _ = label_error_stamp(project, limit)
    stored = _report_read(project)
    if stored is not None and stored[0] == stamp:
        return False
    _report_write(project_id, stamp, likely_label_errors(project, limit=limit))
    return True


def likely_label_errors_cached(project: Project, *, limit: int = 100) -> LabelErrorReport:
    """The ranking for the page, never recomputed while it is current.

    Up to INLINE_ANSWERS answers the request computes a missing or outdated ranking itself (well under a
    second). Above, five head fits take tens of seconds, so a worker computes it: the page shows the last
    ranking, marked with its time ("stale"), or says one is being computed ("computing"). Documents sent back
    for re-review since leave the list at once (one query).
    """
    stamp, answers = label_error_stamp(project, limit)
    stored = _report_read(project)
    if stored is not None and stored[0] == stamp:
        report = stored[1]
    elif answers <= INLINE_ANSWERS:
        report = likely_label_errors(project, limit=limit)
        _report_write(project.pk, stamp, report)
    else:
        _request_refresh(project.pk, stamp, limit)
        report = stored[1] if stored is not None else LabelErrorReport()
        report.state = "stale" if stored is not None else "computing"
    still_labeled = set(
        Document.objects.filter(
            pk__in=[i["document_id"] for i in report.issues], status=Document.Status.LABELED
        ).values_list("pk", flat=True)
    )
    report.issues = [i for i in report.issues if i["document_id"] in still_labeled]
    return report


def _request_refresh(project_id: int, stamp: str, limit: int) -> None:
    """Ask a worker once per stamp (per web process); a broker outage leaves the last ranking on the page."""
    if not cache.add(f"quality:label-errors-asked:{stamp}", True, REFRESH_ASK_SECONDS):
        return
    try:
        from quality.tasks import refresh_label_errors  # the task runs this module: enqueue from here only

        refresh_label_errors.delay(project_id, limit)
    except Exception:
        cache.delete(f"quality:label-errors-asked:{stamp}")
        logger.exception("Could not ask a worker to rank likely label errors of project %s", project_id)


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
