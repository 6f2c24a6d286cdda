"""Explore's search on PostgreSQL: words (phrases, prefixes) through the GIN index, highlights, filters, paging."""

import pytest
from django.db import connection

from annotation.models import Adjudication, Document, GoldAnswer, ImportBatch, Label
from explore.search import (
    ExploreQuery,
    filtered_documents,
    highlighted,
    parse_words,
    search,
)
from learning.models import QueuePriority
from tests.factories import AnnotationFactory, DocumentFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead(project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="lead")
    return user


def _ids(page):
    return [row.document.pk for row in page.rows]


def _search(project, user, sees_answers=True, **query):
    return search(project, ExploreQuery(**query), user=user, sees_answers=sees_answers)


def test_words_match_stemmed_forms_and_every_word_must_occur(project, lead):
    deleting = DocumentFactory(project=project, text="Tickets about deleting health records on request.")
    DocumentFactory(project=project, text="We delete cookies after a year.")
    DocumentFactory(project=project, text="Health data is kept for ten years.")
    assert _ids(_search(project, lead, words="delete health")) == [deleting.pk]


def test_a_quoted_phrase_needs_its_words_in_order(project, lead):
    phrase = DocumentFactory(project=project, text="You have a right to erasure of your data.")
    DocumentFactory(project=project, text="Erasure is a right you have.")
    assert _ids(_search(project, lead, words='"right to erasure"')) == [phrase.pk]


def test_a_prefix_finds_every_word_that_starts_with_it(project, lead):
    a = DocumentFactory(project=project, text="Biometric templates are stored.")
    b = DocumentFactory(project=project, text="Biometrics never leave the device.")
    DocumentFactory(project=project, text="Location is shared.")
    assert sorted(_ids(_search(project, lead, words="biometr*"))) == sorted([a.pk, b.pk])


def test_operators_typed_in_the_search_box_are_only_words(project, lead):
    DocumentFactory(project=project, text="Anything at all.")
    page = _search(project, lead, words="a & | ! ( ) :* <-> 'quote")
    assert page.rows == [] or all(row.document.project_id == project.pk for row in page.rows)


def test_the_word_search_filters_on_the_indexed_expression(project, lead):
    """The filter's expression must be the GIN index's own, or PostgreSQL reads every document instead."""
    DocumentFactory.create_batch(3, project=project)
    documents = filtered_documents(project, ExploreQuery(words="health"), sees_answers=True, user=lead)
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            sql, params = documents.query.sql_with_params()
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("SET enable_seqscan = on")
    assert "document_search_vector_idx" in plan


def test_highlights_mark_matches_and_escape_the_document_text(project, lead):
    DocumentFactory(project=project, text='Health & safety: <img src=x onerror="alert(1)"> 5 < 6 <b>health</b>.')
    row = _search(project, lead, words="health").rows[0]
    assert "<mark>Health</mark>" in row.snippet
    assert "&amp;" in row.snippet and "5 &lt; 6" in row.snippet
    assert "<img" not in row.snippet and "<b>" not in row.snippet


def test_highlighted_never_lets_unbalanced_markers_open_html():
    assert highlighted("\ue001<i>x\ue000y") == "&lt;i&gt;x<mark>y</mark>"


def test_parse_words_reads_phrases_prefixes_and_words():
    kinds = [(t.kind, t.text) for t in parse_words('"right to erasure" delet* health')]
    assert kinds == [("phrase", "right to erasure"), ("prefix", "delet"), ("word", "health")]


def test_filters_metadata_import_and_labeled(project, lead):
    batch = ImportBatch.objects.create(project=project, file_name="tickets.csv", format="csv")
    wanted = DocumentFactory(project=project, metadata={"source": "tickets"}, import_batch=batch)
    DocumentFactory(project=project, metadata={"source": "policies"}, import_batch=batch)
    labeled = DocumentFactory(project=project, metadata={"source": "tickets"})
    AnnotationFactory(document=labeled, reviewer=lead, label_list=[Label.objects.get(key="first_party")])
    assert _ids(_search(project, lead, metadata_key="source", metadata_value="tickets", import_batch=batch.pk)) == [
        wanted.pk
    ]
    assert _ids(_search(project, lead, metadata_key="source", metadata_value="tickets", labeled=True)) == [labeled.pk]
    assert _ids(_search(project, lead, metadata_key="source", metadata_value="tickets", labeled=False)) == [wanted.pk]


def test_filter_by_predicted_label_and_probability_range(project, lead):
    sure, unsure, other = DocumentFactory.create_batch(3, project=project)
    for document, p in ((sure, 0.92), (unsure, 0.55), (other, 0.1)):
        QueuePriority.objects.create(
            document=document,
            project=project,
            score=0,
            model_version=1,
            probabilities={"first_party": p, "third_party": 1 - p},
        )
    assert _ids(_search(project, lead, predicted_label="first_party")) == [unsure.pk, sure.pk]  # newest first
    assert _ids(_search(project, lead, predicted_label="first_party", probability_min=0.5, probability_max=0.6)) == [
        unsure.pk
    ]


def test_filter_by_final_label_follows_the_final_label_rule(project, lead, reviewer):
    first, third = Label.objects.get(key="first_party"), Label.objects.get(key="third_party")
    unanimous, disputed, adjudicated, gold = DocumentFactory.create_batch(4, project=project)
    AnnotationFactory(document=unanimous, reviewer=lead, label_list=[first])
    AnnotationFactory(document=unanimous, reviewer=reviewer, label_list=[first])
    AnnotationFactory(document=disputed, reviewer=lead, label_list=[first])
    AnnotationFactory(document=disputed, reviewer=reviewer, label_list=[third])
    AnnotationFactory(document=adjudicated, reviewer=lead, label_list=[third])
    Adjudication.objects.create(document=adjudicated, project=project, label_keys=["first_party"])
    AnnotationFactory(document=gold, reviewer=lead, label_list=[first])
    GoldAnswer.objects.create(document=gold, project=project, label_keys=["third_party"])
    assert sorted(_ids(_search(project, lead, final_label="first_party"))) == sorted([unanimous.pk, adjudicated.pk])


def test_filters_by_reviewer_gold_and_flagged(project, lead, reviewer):
    mine, gold, held = DocumentFactory.create_batch(3, project=project)
    AnnotationFactory(document=mine, reviewer=reviewer, label_list=[Label.objects.get(key="first_party")])
    GoldAnswer.objects.create(document=gold, project=project, label_keys=["first_party"])
    Document.objects.filter(pk=held.pk).update(status=Document.Status.FLAGGED)
    assert _ids(_search(project, lead, reviewer=reviewer.username)) == [mine.pk]
    assert _ids(_search(project, lead, gold=True)) == [gold.pk]
    assert _ids(_search(project, lead, flagged=True)) == [held.pk]


def test_a_blind_reviewer_sees_only_their_own_answers_and_no_answer_filters(project, lead, reviewer):
    document = DocumentFactory(project=project, text="Health data goes to insurers.")
    AnnotationFactory(document=document, reviewer=lead, label_list=[Label.objects.get(key="first_party")])
    GoldAnswer.objects.create(document=document, project=project, label_keys=["first_party"])
    page = _search(project, reviewer, sees_answers=False, words="health", gold=False, reviewer="nobody")
    assert _ids(page) == [document.pk]  # the answer filters are ignored for them
    assert page.rows[0].labels == [] and not page.rows[0].gold
    assert _ids(_search(project, reviewer, sees_answers=False, labeled=True)) == []  # labeled by *them*


def test_pages_follow_on_by_the_last_id_without_repeats(project, lead):
    documents = [DocumentFactory(project=project, text=f"consent record {n}") for n in range(7)]
    seen, after = [], None
    while True:
        page = search(project, ExploreQuery(words="consent"), user=lead, sees_answers=True, after=after, page_size=3)
        seen += _ids(page)
        assert page.count == 7
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == sorted((d.pk for d in documents), reverse=True)


def test_each_result_carries_the_model_suggestion(project, lead):
    document = DocumentFactory(project=project)
    QueuePriority.objects.create(
        document=document, project=project, score=0, model_version=2, probabilities={"third_party": 0.8}
    )
    row = _search(project, lead).rows[0]
    assert row.suggestion[0][0] == "third_party" and row.suggestion[0][2] == pytest.approx(0.8)


def test_a_probability_range_without_a_label_is_the_models_confidence_in_its_likeliest(project, lead):
    unsure, sure = DocumentFactory.create_batch(2, project=project)
    for document, p in ((unsure, 0.45), (sure, 0.9)):
        QueuePriority.objects.create(
            document=document,
            project=project,
            score=0,
            model_version=1,
            probabilities={"first_party": p, "third_party": (1 - p) / 2, "data_security": (1 - p) / 2},
        )
    assert _ids(_search(project, lead, probability_min=0.3, probability_max=0.6)) == [unsure.pk]
