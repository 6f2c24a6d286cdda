"""Review quality reads: the overlapped documents' answers, agreement over them, disputes, gold accuracy.

The statistics themselves live in `quality.agreement` (plain Python); this module feeds it from the database.
"""

from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Max, Q

from annotation.models import Adjudication, Annotation, AnnotationLabel, Document, GoldAnswer, Project
from annotation.selectors import annotations_by_document, final_labels_for, latest_adjudications
from quality import agreement


@dataclass
class OverlapUnit:
    """One document that two or more reviewers answered: reviewer -> label keys (taxonomy order)."""

    document_id: int
    answers: dict[str, tuple[str, ...]]
    answered_at: datetime  # when its last answer came in
    final: tuple[str, ...] | None = None  # adjudicated or unanimous labels; None while disputed

    @property
    def disputed(self) -> bool:
        return len(set(self.answers.values())) > 1


def overlapped_units(project: Project) -> list[OverlapUnit]:
    """Every non-gold document with answers from two or more reviewers, in two queries plus adjudications."""
    overlapped = (
        Annotation.objects.filter(document__project=project, reviewer__isnull=False)
        .exclude(document__gold_answer__isnull=False)
        .values("document_id")
        .annotate(n=Count("id"), last=Max("updated_at"))
        .filter(n__gte=2)
    )
    last_by_document = {row["document_id"]: row["last"] for row in overlapped}
    if not last_by_document:
        return []
    rows = (
        AnnotationLabel.objects.filter(
            annotation__document_id__in=list(last_by_document), annotation__reviewer__isnull=False
        )
        .order_by("label__order", "label_id")
        .values_list("annotation__document_id", "annotation__reviewer__username", "label__key")
    )
    answers: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for document_id, username, key in rows:
        answers[document_id][username].append(key)
    adjudicated = latest_adjudications(last_by_document)
    units = []
    for document_id in sorted(answers):
        by_reviewer = {name: tuple(keys) for name, keys in answers[document_id].items()}
        if len(by_reviewer) < 2:
            continue
        unit = OverlapUnit(document_id, by_reviewer, last_by_document[document_id])
        if document_id in adjudicated:
            unit.final = tuple(adjudicated[document_id])
        elif not unit.disputed:
            unit.final = next(iter(by_reviewer.values()))
        units.append(unit)
    return units


@dataclass
class AgreementReport:
    n_units: int
    multi_label: bool
    observed: agreement.Estimate
    alpha: agreement.Estimate
    pairs: list[dict] = field(default_factory=list)  # {"a", "b", "kappa": Estimate}
    per_label: list[dict] = field(default_factory=list)  # {"key", "observed", "alpha", "kappa"?}
    consensus: list[dict] = field(default_factory=list)  # {"reviewer", "estimate"}
    min_units: int = agreement.MIN_UNITS


def _observed(units: list[agreement.Unit]) -> agreement.Estimate:
    # The mean of each document's share of agreeing pairs: the same figure as agreement.observed_agreement.
    return agreement.estimate(agreement.mean_statistic(agreement.pair_shares(units)))


def _alpha(units: list[agreement.Unit]) -> agreement.Estimate:
    return agreement.estimate(agreement.alpha_statistic(units), exact=lambda: agreement.krippendorff_alpha(units))


def _value(labels: tuple[str, ...], multi_label: bool) -> Hashable:
    return frozenset(labels) if multi_label else (labels[0] if labels else "")


def project_agreement(project: Project, *, units: list[OverlapUnit] | None = None) -> AgreementReport:
    """Observed agreement, Krippendorff's alpha and pairwise Cohen's kappa over the project's overlapped
    documents, per label as a binary variable, and each reviewer against the final labels."""
    units = overlapped_units(project) if units is None else units
    multi = project.multi_label
    nominal = [{r: _value(labels, multi) for r, labels in u.answers.items()} for u in units]
    report = AgreementReport(
        n_units=len(units),
        multi_label=multi,
        observed=_observed(nominal),
        alpha=_alpha(nominal),
    )
    for (a, b), kappa in agreement.pairwise_kappa(nominal).items():
        report.pairs.append({"a": a, "b": b, "kappa": kappa})
    as_sets = [{r: frozenset(labels) for r, labels in u.answers.items()} for u in units]
    keys = sorted({k for u in units for labels in u.answers.values() for k in labels})
    for key in keys:
        binary = agreement.binary_units(as_sets, key)
        report.per_label.append(
            {
                "key": key,
                "observed": _observed(binary),
                "alpha": _alpha(binary),
            }
        )
    decided = [(n, u) for n, u in zip(nominal, units, strict=True) if u.final is not None]
    for reviewer, estimate in agreement.against_consensus(
        [n for n, _ in decided], [_value(u.final, multi) for _, u in decided]
    ).items():
        report.consensus.append({"reviewer": reviewer, "estimate": estimate})
    return report


def agreement_over_time(units: list[OverlapUnit], *, period: str = "week") -> list[dict]:
    """Observed agreement per week (or day) in which overlapped documents got their last answer."""
    buckets: dict[str, list[dict]] = defaultdict(list)
    for unit in units:
        stamp = unit.answered_at
        key = f"{stamp:%G-W%V}" if period == "week" else f"{stamp:%Y-%m-%d}"
        buckets[key].append({r: labels for r, labels in unit.answers.items()})
    return [
        {"period": key, "documents": len(items), "observed": agreement.observed_agreement(items)}
        for key, items in sorted(buckets.items())
    ]


# --- Adjudication ---------------------------------------------------------------------------------------------


def adjudication_queue(project: Project) -> list[OverlapUnit]:
    """Disputed documents nobody has adjudicated yet, oldest last answer first."""
    return sorted((u for u in overlapped_units(project) if u.disputed and u.final is None), key=lambda u: u.answered_at)


def adjudication_history(document: Document) -> dict:
    """Everything said about a document: each reviewer's answer with its revisions, and every decision."""
    answers = annotations_by_document([document.pk]).get(document.pk, [])
    revisions = (
        Annotation.objects.filter(document=document)
        .prefetch_related("revisions")
        .select_related("reviewer")
        .order_by("created_at", "id")
    )
    return {
        "answers": answers,
        "revisions": [
            {
                "reviewer": a.reviewer.get_username() if a.reviewer else None,
                "states": [{"labels": r.label_keys, "at": r.changed_at, "reason": r.reason} for r in a.revisions.all()],
            }
            for a in revisions
        ],
        "decisions": list(
            Adjudication.objects.filter(document=document)
            .select_related("decided_by")
            .order_by("created_at", "id")
            .values("label_keys", "answers_seen", "decided_by__username", "note", "created_at")
        ),
        "final": final_labels_for([document.pk])[document.pk],
    }


# --- Gold -----------------------------------------------------------------------------------------------------


def gold_accuracy(project: Project) -> list[dict]:
    """Each reviewer's share of gold documents answered exactly as the known answer, with the counts."""
    gold = dict(GoldAnswer.objects.filter(project=project).values_list("document_id", "label_keys"))
    if not gold:
        return []
    annotations = list(
        Annotation.objects.filter(document_id__in=list(gold), reviewer__isnull=False).values_list(
            "id", "document_id", "reviewer__username"
        )
    )
    keys: dict[int, set[str]] = defaultdict(set)
    for annotation_id, key in AnnotationLabel.objects.filter(annotation_id__in=[a[0] for a in annotations]).values_list(
        "annotation_id", "label__key"
    ):
        keys[annotation_id].add(key)
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for annotation_id, document_id, username in annotations:
        tally[username][1] += 1
        tally[username][0] += keys[annotation_id] == set(gold[document_id])
    return [
        {"reviewer": name, "correct": right, "answered": n, "accuracy": right / n}
        for name, (right, n) in sorted(tally.items())
    ]


def gold_documents(project: Project) -> list[dict]:
    return list(
        GoldAnswer.objects.filter(project=project)
        .annotate(n_answers=Count("document__annotations", filter=Q(document__annotations__reviewer__isnull=False)))
        .order_by("-created_at")
        .values("document_id", "document__external_id", "document__text", "label_keys", "n_answers")
    )
