"""Explore's word index off the write path: documents are found by their words from the moment they are committed,
before and after the worker stores their search vectors, whoever wrote them."""

import io
import json
import threading
import time

import pytest
from django.db import connection

from annotation.models import Document, DocumentSearchPending, DocumentSearchVector
from annotation.services import imports
from annotation.services.imports import ImportOptions, import_batch_create, import_batch_run
from annotation.services.search_index import search_vectors_fill
from config.celery import BEAT_SCHEDULE
from explore.search import ExploreQuery, search
from tests.api.conftest import build_side, client_with, personal_key
from tests.factories import DocumentFactory, MembershipFactory, UserFactory, project_with_labels


@pytest.fixture
def lead(project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="lead")
    return user


def found(project, user, words: str) -> list[int]:
    return [row.document.pk for row in search(project, ExploreQuery(words=words), user=user, sees_answers=True).rows]


def run_import(project, *rows: dict):
    content = "".join(json.dumps(row) + "\n" for row in rows).encode()
    batch = import_batch_create(project=project, file_name="tickets.jsonl", options=ImportOptions())
    return import_batch_run(batch=batch, stream=io.BytesIO(content))


def indexed(document) -> bool:
    return DocumentSearchVector.objects.filter(document_id=document.pk).exists()


def pending(document) -> bool:
    return DocumentSearchPending.objects.filter(document_id=document.pk).exists()


@pytest.mark.django_db
def test_an_imported_document_is_found_before_and_after_the_worker_stores_its_vector(project, lead):
    run_import(project, {"id": "t1", "text": "The patient asks us to delete her health records."}, {"text": "Other."})
    document = Document.objects.get(external_id="t1")
    assert pending(document) and not indexed(document)
    assert found(project, lead, "deleting health") == [document.pk]

    assert search_vectors_fill() == 2
    assert indexed(document) and not pending(document)
    assert found(project, lead, "deleting health") == [document.pk]
    assert found(project, lead, '"health records"') == [document.pk]


@pytest.mark.django_db
def test_a_document_written_through_the_orm_is_pending_and_found(project, lead):
    document = DocumentFactory(project=project, text="Biometric templates stay on the device.")
    assert pending(document)
    assert found(project, lead, "biometr*") == [document.pk]
    search_vectors_fill()
    assert found(project, lead, "biometr*") == [document.pk]


@pytest.mark.django_db
def test_a_document_created_through_the_api_is_found_before_the_worker_runs():
    home = build_side("Home project")
    client = client_with(personal_key(home.admin, [home.project]))
    response = client.post(
        f"/api/v1/projects/{home.project.pk}/documents",
        {"documents": [{"text": "Voice recordings are kept for a week."}]},
        format="json",
    )
    assert response.status_code == 201, response.content
    created = response.json()["results"][0]["id"]
    assert found(home.project, home.admin, "recording") == [created]


@pytest.mark.django_db
def test_a_pending_document_of_another_project_is_not_found(project, lead):
    DocumentFactory(project=project_with_labels(), text="Location history shared abroad.")
    assert found(project, lead, "location") == []
    search_vectors_fill()
    assert found(project, lead, "location") == []


@pytest.mark.django_db
def test_a_changed_text_is_searched_by_its_new_words(project, lead):
    document = DocumentFactory(project=project, text="Cookies are kept for a year.")
    search_vectors_fill()
    Document.objects.filter(pk=document.pk).update(text="Payment card data is encrypted.")
    assert pending(document) and not indexed(document)
    assert found(project, lead, "cookies") == []
    assert found(project, lead, "payment") == [document.pk]
    search_vectors_fill()
    assert found(project, lead, "cookies") == []
    assert found(project, lead, "payment") == [document.pk]


@pytest.mark.django_db
def test_deleting_a_document_removes_its_vector_and_its_pending_row(project):
    stored, waiting = DocumentFactory.create_batch(2, project=project)
    search_vectors_fill()
    Document.objects.filter(pk=waiting.pk).update(text="A new text, pending again.")
    assert indexed(stored) and pending(waiting)
    stored.delete()
    waiting.delete()
    assert not DocumentSearchVector.objects.exists() and not DocumentSearchPending.objects.exists()


@pytest.mark.django_db
def test_filling_again_stores_nothing_twice(project):
    DocumentFactory.create_batch(5, project=project)
    assert search_vectors_fill(batch=2) == 5
    assert search_vectors_fill(batch=2) == 0
    assert DocumentSearchVector.objects.count() == 5 and not DocumentSearchPending.objects.exists()


@pytest.mark.django_db
def test_an_import_asks_a_worker_for_the_vectors_once_committed(
    project, monkeypatch, django_capture_on_commit_callbacks
):
    asked = []
    monkeypatch.setattr(imports, "search_vectors_request", lambda: asked.append(True))
    with django_capture_on_commit_callbacks(execute=True):
        run_import(project, {"text": "Email addresses are shared with partners."})
    assert asked == [True]


def test_a_periodic_run_catches_documents_written_without_an_import():
    assert BEAT_SCHEDULE["search-vectors-fill"]["task"] == "annotation.tasks.fill_search_vectors_task"


@pytest.mark.django_db(transaction=True)
def test_two_workers_filling_at_once_store_every_vector_once():
    project = project_with_labels()
    DocumentFactory.create_batch(40, project=project)
    counts, errors = [], []

    def fill():
        try:
            counts.append(search_vectors_fill(batch=3))
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=fill) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(counts) == 40
    assert DocumentSearchVector.objects.count() == 40 and not DocumentSearchPending.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_worker_stores_the_vectors_of_an_import_after_it_commits(celery_worker_process):
    project = project_with_labels()
    lead = UserFactory()
    MembershipFactory(project=project, user=lead, role="lead")
    run_import(project, *({"id": f"w{i}", "text": f"Clause {i}: device identifiers kept {i} days."} for i in range(30)))
    assert found(project, lead, "identifiers")  # before or after the worker: found either way
    deadline = time.monotonic() + 90
    while DocumentSearchPending.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not DocumentSearchPending.objects.exists(), celery_worker_process.log_path.read_text()[-3000:]
    assert DocumentSearchVector.objects.filter(project=project).count() == 30
    assert len(found(project, lead, "identifiers")) == 25  # a full first page


@pytest.mark.django_db
def test_a_batch_reads_only_its_own_documents_however_many_were_done_before(project):
    """Each batch looks its documents up by id: joined to the pending rows, PostgreSQL walked the documents from the
    first id for every batch, so a large backlog slowed with every batch."""
    from annotation.services.search_index import _fill_sql

    DocumentFactory.create_batch(5, project=project)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + _fill_sql(), [2, "english"])
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "Merge Join" not in plan, plan
    assert "Index Cond: (id = ANY" in plan, plan


@pytest.mark.django_db
def test_with_nothing_pending_the_word_search_reads_only_stored_vectors(project, lead):
    from explore.search import filtered_documents

    DocumentFactory.create_batch(3, project=project)
    search_vectors_fill()
    documents = filtered_documents(project, ExploreQuery(words="health"), sees_answers=True, user=lead)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = documents.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(line for (line,) in cursor.fetchall())
    # A join PostgreSQL may run from the GIN index or from the newest documents, as the words make cheaper.
    assert "annotation_documentsearchvector" in plan, plan
    assert "annotation_documentsearchpending" not in plan and "to_tsvector" not in plan, plan


def _plan_of(documents) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        sql, params = documents.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(line for (line,) in cursor.fetchall())


@pytest.mark.django_db
def test_another_projects_pending_import_leaves_this_projects_search_on_stored_vectors(project, lead):
    """While another project's import waits for its vectors, this project's searches stay the stored-vector
    semi-join; they neither compute the other project's vectors nor collect every match first."""
    from explore.search import filtered_documents

    mine = DocumentFactory(project=project, text="Health records are kept for ten years.")
    search_vectors_fill()
    other = project_with_labels()
    for n in range(3):
        DocumentFactory(project=other, text=f"Health data {n} of another project.")
    documents = filtered_documents(project, ExploreQuery(words="health"), sees_answers=True, user=lead)
    plan = _plan_of(documents)
    assert "to_tsvector" not in plan and "Append" not in plan, plan
    assert found(project, lead, "health") == [mine.pk]

    # A pending document of this project is still found by its words, and only this project's are computed.
    waiting = DocumentFactory(project=project, text="Health questionnaires from the new intake form.")
    assert sorted(found(project, lead, "health")) == sorted([mine.pk, waiting.pk])
