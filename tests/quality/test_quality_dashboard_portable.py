"""The dashboard's ORM fallback (for `make run`'s SQLite) gives what its PostgreSQL queries give.

Both run here, on PostgreSQL, over the same data: the fallback is plain ORM, so it runs anywhere.
"""

from datetime import UTC, datetime, timedelta

import pytest

from annotation.models import Annotation, ImportBatch, Label
from quality import dashboard
from quality import dashboard_portable as portable
from tests.factories import AnnotationFactory, DocumentFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db


@pytest.fixture
def varied_project():
    project = project_with_labels(multi_label=True)
    labels = list(Label.objects.filter(taxonomy__project=project).order_by("order"))
    batch = ImportBatch.objects.create(project=project, file_name="clauses.jsonl", format="jsonl")
    reviewers = [UserFactory(username=f"rev-{i}") for i in range(3)]
    metadata = [
        {"product": "Mail", "region": "EU"},
        {"product": "Pay", "region": "US", "tier": 3},
        {"product": "Mail", "flagged": True},
        {"region": None},
        {},
        {"product": "Maps", "owner": {"team": "geo"}},
    ]
    start = datetime(2026, 9, 6, 23, 30, tzinfo=UTC)  # a Sunday night: weeks and days change under it
    for i in range(30):
        document = DocumentFactory(
            project=project, metadata=metadata[i % len(metadata)], import_batch=batch if i % 3 else None
        )
        for j, reviewer in enumerate(reviewers[: 1 + i % 3]):
            annotation = AnnotationFactory(
                document=document,
                reviewer=reviewer if (i + j) % 7 else None,
                label_list=labels[(i + j) % 3 : (i + j) % 3 + 1 + i % 2],
            )
            Annotation.objects.filter(pk=annotation.pk).update(
                created_at=start + timedelta(hours=7 * i + j), seconds_spent=None if i % 5 == 0 else 3.5 * (i % 4 + j)
            )
    return project


def _sorted(rows):
    return sorted(rows, key=repr)


@pytest.mark.parametrize("field", ["product", "region", "tier", "owner", ""])
def test_label_counts_match(varied_project, field):
    expected = dashboard.label_counts(varied_project, field)
    got = portable.label_counts(varied_project, field)
    for part in ("labels", "batches", "weeks") + (("field",) if field else ()):
        assert _sorted(got[part]) == _sorted(expected[part]), part


def test_metadata_fields_match(varied_project):
    assert portable.metadata_fields(varied_project, dashboard.METADATA_SAMPLE) == dashboard.metadata_fields(
        varied_project
    )
    assert portable.metadata_fields(varied_project, dashboard.METADATA_SAMPLE) == [
        "flagged",
        "owner",
        "product",
        "region",
        "tier",
    ]


def test_labeled_per_day_and_reviewer_times_match(varied_project):
    assert portable.labeled_per_day(varied_project) == [tuple(r) for r in dashboard.labeled_per_day(varied_project)]
    expected = dashboard.reviewer_times(varied_project)
    got = portable.reviewer_times(varied_project)
    assert _sorted(got) == _sorted([tuple(r) for r in expected])


def test_the_fixture_exercises_every_breakdown(varied_project):
    counts = portable.label_counts(varied_project, "owner")
    assert {value for value, _key, _n in counts["field"]} == {'{"team": "geo"}', "(none)"}
    assert {batch is None for batch, _key, _n in counts["batches"]} == {True, False}
    assert len({week for week, _key, _n in counts["weeks"]}) >= 2
    times = portable.reviewer_times(varied_project)
    assert len(times) == 3 and all(row[2] is not None for row in times)
