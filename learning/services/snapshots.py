"""What the model learns from: the final labels read once at a run's start, split into training and evaluation,
the label-event clock that retraining counts, and the labels' own words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from annotation.models import Adjudication, AnnotationRevision, Document, Label, Project, Taxonomy
from annotation.selectors import final_labels_for
from learning.ml.classifier import MIN_LABELLED_DOCUMENTS
from learning.ml.label_descriptions import LabelText
from learning.models import EvaluationReservation


@dataclass
class LabelSnapshot:
    """The labels a run trains and evaluates on, read once at its start."""

    label_keys: list[str]
    labels: list[dict[str, Any]]
    taxonomy_version: int
    multi_label: bool
    train_ids: np.ndarray
    train_targets: list[Any]
    eval_ids: np.ndarray
    eval_targets: list[Any]
    label_events: int

    def examples_per_label(self) -> dict[str, int]:
        """How many training documents carry each label, every label of the taxonomy included (0 if none)."""
        counts = dict.fromkeys(self.label_keys, 0)
        for target in self.train_targets:
            for key in target if self.multi_label else [target]:
                counts[key] += 1
        return counts


def label_event_count(project: Project) -> int:
    """Label events so far, the retraining clock: every stored or changed answer (one revision each) and
    every adjudication (which changes a disputed document's final label without touching any answer)."""
    return (
        AnnotationRevision.objects.filter(annotation__document__project=project).count()
        + Adjudication.objects.filter(document__project=project).count()
    )


def label_snapshot(project: Project) -> LabelSnapshot:
    """Final labels of the labeled documents, split into training and evaluation by the reservation."""
    labels = list(
        Label.objects.filter(taxonomy__project=project, deprecated=False)
        .order_by("order", "id")
        .values("id", "key", "name")
    )
    keys = [label["key"] for label in labels]
    known = set(keys)
    taxonomy_version = Taxonomy.objects.filter(project=project).values_list("version", flat=True).first() or 0
    events = label_event_count(project)
    labeled = Document.objects.filter(project=project, status=Document.Status.LABELED).values_list("pk", flat=True)
    by_document = final_labels_for(labeled)
    reserved = set(EvaluationReservation.objects.filter(project=project).values_list("document_id", flat=True))
    train_ids, train_targets, eval_ids, eval_targets = [], [], [], []
    for document_id in sorted(by_document):
        # Adjudicated, gold, unanimous or single-reviewer labels; disputed documents wait for a decision.
        chosen = [key for key in by_document[document_id].labels if key in known]
        if not chosen:
            continue
        target: Any = chosen if project.multi_label else chosen[0]
        if document_id in reserved:
            eval_ids.append(document_id)
            eval_targets.append(target)
        else:
            train_ids.append(document_id)
            train_targets.append(target)
    return LabelSnapshot(
        label_keys=keys,
        labels=labels,
        taxonomy_version=taxonomy_version,
        multi_label=project.multi_label,
        train_ids=np.asarray(train_ids, dtype=np.int64),
        train_targets=train_targets,
        eval_ids=np.asarray(eval_ids, dtype=np.int64),
        eval_targets=eval_targets,
        label_events=events,
    )


def training_refusal(snapshot: LabelSnapshot) -> str | None:
    """Why a model cannot be trained on these labels yet, in words for the models page; None when it can."""
    if len(snapshot.label_keys) < 2:
        return "The taxonomy has fewer than two labels in use; add labels before training a model."
    n = len(snapshot.train_ids)
    held = len(snapshot.eval_ids)
    if n < MIN_LABELLED_DOCUMENTS:
        return (
            f"Training needs at least {MIN_LABELLED_DOCUMENTS} labeled documents outside the evaluation set; "
            f"there are {n} so far ({held} more are reserved for evaluation). Label more documents."
        )
    names = {label["key"]: label["name"] for label in snapshot.labels}
    if snapshot.multi_label:
        counts: dict[str, int] = {}
        for target in snapshot.train_targets:
            for key in target:
                counts[key] = counts.get(key, 0) + 1
        if not any(0 < c < n for c in counts.values()):
            return (
                f"All {n} labeled documents carry the same labels; label documents whose labels differ "
                "before training a model."
            )
    else:
        present = set(snapshot.train_targets)
        if len(present) < 2:
            only = names.get(next(iter(present)), next(iter(present)))
            return (
                f"All {n} labeled documents carry the same label, “{only}”; label at least one document "
                "with another label before training a model."
            )
    return None


def label_texts(label_ids: Sequence[int]) -> list[LabelText]:
    """Each label's own words (name, description, guideline), in the order of `label_ids`."""
    rows = {
        row["pk"]: row
        for row in Label.objects.filter(pk__in=list(label_ids)).values("pk", "name", "description", "guideline")
    }
    return [
        LabelText(name=rows[pk]["name"], description=rows[pk]["description"], guideline=rows[pk]["guideline"])
        for pk in label_ids
    ]
