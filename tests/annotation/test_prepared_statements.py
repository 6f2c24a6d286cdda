"""Statements prepared on the server (annotation.statements.execute): PostgreSQL parses each once per connection,
every value means what it meant written into the SQL, and neither a refusal nor a lost statement breaks a request."""

import logging

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from annotation import statements
from annotation.services.labeling import annotation_submit
from annotation.services.queue import next_document_for
from tests.factories import DocumentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")


def run(sql, params):
    with connection.cursor() as cursor:
        statements.execute(cursor, sql, params)
        return cursor.fetchall()


def prepared_on_connection() -> dict[str, str]:
    """Each statement prepared on this connection: its name and the text it was prepared as."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, statement FROM pg_prepared_statements WHERE name LIKE 'docket\\_%%'")
        rows = cursor.fetchall()
    # `statement` is everything sent with the PREPARE (a savepoint, the check of its parameters' types).
    texts = {}
    for name, text in rows:
        text = text.split(f"PREPARE {name} AS ", 1)[1]
        texts[name] = text.split("; RELEASE SAVEPOINT")[0].split("; SELECT parameter_types")[0]
    return texts


def test_a_statement_is_prepared_once_per_connection_then_only_executed():
    sql = "SELECT id + %s FROM annotation_project WHERE id > %s ORDER BY id LIMIT 1"
    with CaptureQueriesContext(connection) as queries:
        assert run(sql, [1, -1]) == run("SELECT id + 1 FROM annotation_project ORDER BY id LIMIT 1", [])
        run(sql, [2, 0])
        run(sql, [3, 0])
    executed = [query["sql"] for query in queries.captured_queries]
    assert all(text.startswith("EXECUTE docket_") for text in (executed[0], executed[2], executed[3])), executed
    texts = prepared_on_connection().values()
    assert "SELECT id + $1 FROM annotation_project WHERE id > $2 ORDER BY id LIMIT 1" in texts, texts


def test_the_queue_and_a_first_answer_run_prepared(project, reviewer, caplog):
    DocumentFactory.create_batch(3, project=project)
    with caplog.at_level(logging.INFO, logger="annotation.statements"):
        offer = next_document_for(reviewer=reviewer, project=project)
        next_document_for(reviewer=reviewer, project=project, after_document_id=offer.document.pk)
        result = annotation_submit(reviewer=reviewer, document=offer.document, label_keys=["first_party"])
    assert result.created and not result.lease_lost
    assert "runs unprepared" not in caplog.text
    texts = list(prepared_on_connection().values())
    for start in ("WITH resumed AS", "WITH r0c0 AS", "WITH held AS"):  # renew and resume, the claim, the answer
        assert any(text.startswith(start) for text in texts), (start, texts)


def test_a_parameter_postgresql_would_read_as_text_is_not_prepared(caplog):
    # Without a context, PostgreSQL infers text for a parameter: the int would come back as a string.
    with caplog.at_level(logging.INFO, logger="annotation.statements"):
        assert run("SELECT %s AS n", [41]) == [(41,)]
        assert run("SELECT %s AS n", [42]) == [(42,)]
    assert "runs unprepared" in caplog.text
    assert "SELECT $1 AS n" not in prepared_on_connection().values()


def test_a_value_that_was_none_when_the_statement_was_prepared_is_checked_when_it_comes(caplog):
    # Prepared with None (any type holds it), the parameter was inferred as text: 43 must not come back as "43".
    with caplog.at_level(logging.INFO, logger="annotation.statements"):
        assert run("SELECT %s AS m", [None]) == [(None,)]
        assert run("SELECT %s AS m", [43]) == [(43,)]
        assert run("SELECT %s AS m", [44]) == [(44,)]
    assert "runs unprepared" in caplog.text


def test_a_float_is_not_rounded_into_an_integer_parameter():
    # `$1 + id` would make $1 a bigint and round 0.5; the literal 0.5 makes the sum numeric.
    project_id = DocumentFactory().project_id
    assert run("SELECT %s + id FROM annotation_project WHERE id = %s", [0.5, project_id]) == [(project_id + 0.5,)]


def test_a_statement_postgresql_cannot_prepare_leaves_the_transaction_usable(project):
    with transaction.atomic():
        assert run("SELECT count(*) FROM annotation_project WHERE %s IS NULL", [None]) == [(1,)]
        assert run("SELECT count(*) FROM annotation_project WHERE id = %s", [project.pk]) == [(1,)]


def test_constants_of_a_compiled_shape_are_written_into_the_statement():
    def build(*, project_id, rate):
        return "SELECT id FROM annotation_project WHERE id > %s AND %s::float8 < 1", [project_id, rate]

    for project_id in (0, 1):
        sql, params = statements.prepared("test.constants", build, project_id=project_id, rate=0.25)
        run(sql, params)
    texts = [text for text in prepared_on_connection().values() if "::float8 < 1" in text]
    assert texts == ["SELECT id FROM annotation_project WHERE id > $1 AND 0.25::float8 < 1"], texts


def test_a_statement_prepared_in_a_transaction_that_rolled_back_runs_again(project):
    sql = "SELECT name FROM annotation_project WHERE id = %s"
    with pytest.raises(RuntimeError), transaction.atomic():
        run(sql, [project.pk])
        raise RuntimeError("the request failed after the statement ran")
    assert run(sql, [project.pk]) == [(project.name,)]


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_prepares_its_statements_again(project):
    sql = "SELECT name FROM annotation_project WHERE id = %s"
    run(sql, [project.pk])
    connection.close()
    assert run(sql, [project.pk]) == [(project.name,)]


@pytest.mark.django_db(transaction=True)
def test_a_statement_deallocated_behind_its_back_is_prepared_again(project):
    sql = "SELECT name FROM annotation_project WHERE id = %s"
    run(sql, [project.pk])
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    assert run(sql, [project.pk]) == [(project.name,)]


def test_beyond_the_limit_the_statement_used_longest_ago_is_deallocated(monkeypatch, project):
    monkeypatch.setattr(statements, "MAX_PREPARED_PER_CONNECTION", 2)
    for column in ("id", "name", "id", "created_at"):
        run(f"SELECT {column} FROM annotation_project WHERE id = %s", [project.pk])
    texts = prepared_on_connection().values()
    kept = [c for c in ("id", "name", "created_at") if f"SELECT {c} FROM annotation_project WHERE id = $1" in texts]
    assert kept == ["id", "created_at"], texts


def test_switched_off_nothing_is_prepared(settings, project):
    settings.DOCKET_PREPARED_STATEMENTS = False
    with CaptureQueriesContext(connection) as queries:
        assert run("SELECT name FROM annotation_project WHERE id = %s", [project.pk]) == [(project.name,)]
    assert not queries.captured_queries[0]["sql"].startswith("EXECUTE")
