"""Statements compiled once per shape (annotation.statements): the same SQL and parameters as a fresh compilation,
and the queue's requests compile no queryset once their shapes are known."""

import itertools
import json
from datetime import timedelta
from unittest import mock

import pytest
from django.db.models.sql.compiler import SQLCompiler
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation import selectors, statements
from annotation.services import queue
from tests.factories import DocumentFactory

pytestmark = pytest.mark.django_db


def _compiled(queryset):
    return queryset.query.get_compiler(using=queryset.db).as_sql()


def test_queue_statements_match_a_fresh_compilation():
    now = timezone.now()
    shapes = itertools.product([None, 41], [[], [41], [41, 7, 9]], [0.0, 0.2], [0.0, 0.3, 1.0], [2, 3])
    for after, tried, gold_rate, overlap_rate, overlap_reviewers in shapes:
        for project_id, reviewer_id, shift in ((5, 8, 0), (6, 12, 90)):
            values = {
                "project_id": project_id,
                "reviewer_id": reviewer_id,
                "now": now + timedelta(seconds=shift),
                "expires_at": now + timedelta(seconds=shift + 600),
                "after_document_id": after,
            }
            assert statements.prepared("queue.renew_and_resume", queue._renew_and_resume_sql, **values) == (
                queue._renew_and_resume_sql(**values)
            )
            settings = {"gold_rate": gold_rate, "overlap_rate": overlap_rate, "overlap_reviewers": overlap_reviewers}
            ids = [i + project_id for i in tried]
            prepared = statements.prepared("queue.claim_first", queue._claim_first_sql, **values, **settings, tried=ids)
            assert prepared == queue._claim_first_sql(**values, **settings, tried=ids)


def test_document_for_review_statement_matches_a_fresh_compilation(project, reviewer):
    document = DocumentFactory(project=project)
    values = {"project_id": project.pk, "reviewer_id": reviewer.pk, "document_id": document.pk, "with_label_keys": True}
    for _ in range(2):
        rows = statements.prepared_values("selectors.document_for_review", selectors._document_for_review_row, **values)
        assert rows == list(selectors._document_for_review_row(**values))
    key = ("selectors.document_for_review", "values", statements._shape_of(values))
    assert statements._shapes[key].sql == _compiled(selectors._document_for_review_row(**values))[0]


def test_a_value_written_into_the_sql_is_never_taken_from_a_stand_in():
    def build(*, limit):
        return f"SELECT 1 LIMIT {limit}", []

    assert statements.prepared("inlined", build, limit=3) == ("SELECT 1 LIMIT 3", [])
    assert statements.prepared("inlined", build, limit=4) == ("SELECT 1 LIMIT 4", [])


def test_a_value_transformed_into_a_parameter_is_never_taken_from_a_stand_in():
    def build(*, number):
        return "SELECT %s", [f"%{number}%"]

    assert statements.prepared("pattern", build, number=3) == ("SELECT %s", ["%3%"])
    assert statements.prepared("pattern", build, number=4) == ("SELECT %s", ["%4%"])


def test_lists_of_ids_of_another_length_are_another_shape():
    def build(*, ids):
        return "SELECT %s" + ", %s" * (len(ids) - 1), list(ids)

    assert statements.prepared("ids", build, ids=[1, 2]) == ("SELECT %s, %s", [1, 2])
    assert statements.prepared("ids", build, ids=[3, 4, 5]) == ("SELECT %s, %s, %s", [3, 4, 5])
    assert statements.prepared("ids", build, ids=[6, 7]) == ("SELECT %s, %s", [6, 7])


@pytest.mark.django_db(transaction=True)
def test_next_document_and_submission_compile_no_queue_queryset_once_warm(settings, project, reviewer):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
    for _ in range(4):
        DocumentFactory(project=project)
    client = Client()
    client.force_login(reviewer)
    url = reverse("annotation:queue-next", args=[project.pk])

    def ask(after=None):
        body = json.dumps({"after": after} if after else {})
        return client.post(url, data=body, content_type="application/json").json()["document"]

    shown = ask()
    upcoming = ask(shown["id"])  # every shape of the loop compiled once
    answer = {
        "labels": ["first_party"],
        "ticket": shown["ticket"],
        "submission_id": "3f1c9a52-0d7e-4d8e-9a51-1c2f0e7b6a1a",
    }
    annotate = reverse("annotation:document-annotate", args=[project.pk, shown["id"]])
    client.post(annotate, data=json.dumps(answer), content_type="application/json")
    with mock.patch.object(SQLCompiler, "as_sql", autospec=True, side_effect=SQLCompiler.as_sql) as compiled:
        assert ask(upcoming["id"])["id"] not in (shown["id"], upcoming["id"])
    # The user with its service account and the project with the reviewer's role; the queue's two statements
    # and the document as shown are not compiled again.
    assert compiled.call_count <= 2


def test_a_text_value_varies_without_a_new_compilation():
    def build(*, prefix):
        return "SELECT %s", [prefix]

    assert statements.prepared("text", build, prefix=statements.Text("abc")) == ("SELECT %s", ["abc"])
    assert statements.prepared("text", build, prefix=statements.Text("xyz")) == ("SELECT %s", ["xyz"])
    assert ("text", statements._shape_of({"prefix": statements.Text("q")})) in statements._shapes


def test_a_text_value_transformed_or_written_into_the_sql_is_never_taken_from_a_stand_in():
    def pattern(*, word):
        return "SELECT %s", [f"%{word.upper()}%"]

    def inlined(*, word):
        return f"SELECT '{word}'", []

    assert statements.prepared("text-pattern", pattern, word=statements.Text("ab")) == ("SELECT %s", ["%AB%"])
    assert statements.prepared("text-pattern", pattern, word=statements.Text("cd")) == ("SELECT %s", ["%CD%"])
    assert statements.prepared("text-inlined", inlined, word=statements.Text("ab")) == ("SELECT 'ab'", [])
    assert statements.prepared("text-inlined", inlined, word=statements.Text("cd")) == ("SELECT 'cd'", [])


def test_a_text_lookup_in_a_like_pattern_is_never_reused(project):
    from annotation.models import Document

    def build(*, word):
        return Document.objects.filter(project_id=project.pk, text__icontains=word).values("pk")

    DocumentFactory(project=project, text="We sell data.")
    for word, expected in (("SELL", 1), ("keep", 0), ("sell", 1)):
        rows = statements.prepared_values("text-icontains", build, word=statements.Text(word))
        assert len(rows) == expected


def test_rows_follow_the_order_values_names_with_several_annotations(project):
    from django.db.models import Value

    from annotation.models import Document

    def build(*, project_id):
        documents = Document.objects.filter(project_id=project_id).annotate(b=Value("b"), a=Value("a"))
        return documents.values("pk", "a", "b")

    document = DocumentFactory(project=project)
    rows = statements.prepared_values("several-annotations", build, project_id=project.pk)
    assert rows == [{"pk": document.pk, "a": "a", "b": "b"}] == list(build(project_id=project.pk))
