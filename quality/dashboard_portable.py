"""The dashboard's aggregates for databases other than PostgreSQL: the embedded SQLite of `make run`.

`quality.dashboard` answers its four PostgreSQL-only questions (GROUPING SETS, JSONB keys,
percentile_cont) with one SQL statement each; here the same answers come from plain ORM reads counted in
Python. That is fine for a single-machine trial and far too slow for 100,000 documents, which is what
PostgreSQL is for. A test runs both on the same data and compares them.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

from django.db.models import Min

from annotation.models import Annotation, AnnotationLabel, Document, Project


def _utc_day(moment: datetime) -> date:
    # PostgreSQL truncates in the connection's time zone, which Django sets to UTC.
    return moment.astimezone(UTC).date()


def label_counts(project: Project, field: str) -> dict[str, list[tuple]]:
    """Answers per label: overall, by import batch, by week (its Monday) and by one metadata field."""
    overall: Counter = Counter()
    batches: Counter = Counter()
    weeks: Counter = Counter()
    values: Counter = Counter()
    rows = AnnotationLabel.objects.filter(annotation__document__project=project).values_list(
        "annotation__document__import_batch_id",
        "annotation__created_at",
        "annotation__document__metadata",
        "label__key",
    )
    for batch, created_at, metadata, key in rows.iterator(chunk_size=5000):
        day = _utc_day(created_at)
        overall[key] += 1
        batches[(batch, key)] += 1
        weeks[(day - timedelta(days=day.weekday()), key)] += 1
        if field:
            value = metadata.get(field) if isinstance(metadata, dict) else None
            values[("(none)" if value is None else _as_text(value), key)] += 1
    return {
        "labels": list(overall.items()),
        "batches": [(b, k, n) for (b, k), n in batches.items()],
        "weeks": [(w, k, n) for (w, k), n in weeks.items()],
        "field": [(v, k, n) for (v, k), n in values.items()],
    }


def _as_text(value) -> str:
    """A metadata value as PostgreSQL's ->> gives it: strings bare, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def metadata_fields(project: Project, sample: int) -> list[str]:
    keys: set[str] = set()
    newest = Document.objects.filter(project=project).order_by("-id").values_list("metadata", flat=True)
    for metadata in newest[:sample]:
        if isinstance(metadata, dict):
            keys.update(metadata)
    return sorted(keys)


def labeled_per_day(project: Project, *, reviewers_only: bool = False) -> list[tuple[date, int]]:
    annotations = Annotation.objects.filter(document__project=project)
    if reviewers_only:
        annotations = annotations.filter(reviewer__isnull=False).exclude(source=Annotation.Source.IMPORT)
    firsts = annotations.values("document_id").annotate(first=Min("created_at")).values_list("first", flat=True)
    per_day = Counter(_utc_day(first) for first in firsts)
    return sorted(per_day.items())


def reviewer_times(project: Project) -> list[tuple[str, int, float | None, float | None]]:
    seconds: dict[str, list[float]] = defaultdict(list)
    answers: Counter = Counter()
    rows = Annotation.objects.filter(document__project=project, reviewer__isnull=False).values_list(
        "reviewer__username", "seconds_spent"
    )
    for name, spent in rows.iterator(chunk_size=5000):
        answers[name] += 1
        if spent is not None:
            seconds[name].append(spent)
    table = [
        (
            name,
            n,
            statistics.median(seconds[name]) if seconds[name] else None,
            sum(seconds[name]) if seconds[name] else None,
        )
        for name, n in answers.items()
    ]
    return sorted(table, key=lambda row: (-row[1], row[0]))
