"""Imports: every row stored or reported with its reason; a refused file stores nothing."""

import io
import json
import tracemalloc

import pytest
from django.core.management import CommandError, call_command

from annotation.exceptions import ImportRejected
from annotation.models import Annotation, Document, ImportBatch
from annotation.services.imports import ImportOptions, documents_import, import_batch_create, import_batch_run
from tests.factories import DocumentFactory, project_with_labels

pytestmark = pytest.mark.django_db


def run_import(project, content: bytes | str, name: str, **options) -> ImportBatch:
    data = content.encode("utf-8") if isinstance(content, str) else content
    batch = import_batch_create(project=project, file_name=name, options=ImportOptions(**options))
    return import_batch_run(batch=batch, stream=io.BytesIO(data))


def errors_of(batch: ImportBatch) -> list[tuple[int, str]]:
    return list(batch.row_errors.order_by("line").values_list("line", "reason"))


def jsonl(*rows) -> str:
    return "".join((json.dumps(r) if not isinstance(r, str) else r) + "\n" for r in rows)


def test_jsonl_rows_become_documents_with_metadata_and_labels(project):
    batch = run_import(
        project,
        jsonl(
            {"id": "a1", "text": "We collect your email address.", "labels": ["first_party"], "product": "Mail"},
            {"id": "a2", "text": "We encrypt data at rest.", "region": "EU"},
        ),
        "docs.jsonl",
    )
    assert (batch.status, batch.created_count, batch.annotation_count) == ("completed", 2, 1)
    first = Document.objects.get(project=project, external_id="a1")
    assert first.metadata == {"product": "Mail"}
    assert first.status == Document.Status.LABELED
    assert [label.key for label in Annotation.objects.get(document=first).labels.all()] == ["first_party"]
    assert Document.objects.get(external_id="a2").status == Document.Status.QUEUED


def test_csv_with_custom_columns_and_pipe_separated_labels(db):
    project = project_with_labels(multi_label=True)
    csv_text = 'ref,body,cats\nr1,"Shared with partners, for ads.",third_party|first_party\nr2,Plain row,\n'
    batch = run_import(project, csv_text, "x.csv", text_field="body", id_field="ref", label_field="cats")
    assert (batch.created_count, batch.annotation_count, batch.rejected_count) == (2, 1, 0)
    annotation = Annotation.objects.get(document__external_id="r1")
    assert sorted(annotation.labels.values_list("key", flat=True)) == ["first_party", "third_party"]


def test_plain_text_is_one_document_per_line_and_blank_lines_are_ignored(project):
    batch = run_import(project, "First clause.\n\nSecond clause.\r\n", "notes.txt")
    assert batch.created_count == 2
    assert set(Document.objects.values_list("text", flat=True)) == {"First clause.", "Second clause."}


def test_utf8_with_bom_is_read_and_the_bom_is_not_part_of_the_first_field(project):
    batch = run_import(project, "\ufefftext\nDonnées hébergées à São Paulo €\n".encode(), "bom.csv")
    assert batch.created_count == 1
    assert Document.objects.get().text == "Données hébergées à São Paulo €"


def test_file_that_is_not_utf8_is_refused_with_its_line_and_nothing_is_stored(project):
    content = b"text\nfine row\n" + "caf\xe9 latin-1 row\n".encode("latin-1")
    with pytest.raises(ImportRejected, match=r"not UTF-8 text .*byte 0xe9 on line 3"):
        run_import(project, content, "latin.csv")
    assert Document.objects.count() == 0
    batch = ImportBatch.objects.get()
    assert batch.status == ImportBatch.Status.FAILED and "UTF-8" in batch.error


def test_each_bad_row_is_reported_with_line_and_reason_and_good_rows_are_kept(project, settings):
    settings.DOCKET_MAX_TEXT_CHARS = 50
    batch = run_import(
        project,
        jsonl(
            {"text": "good one"},
            '{"text": "broken',
            {"id": "x"},
            {"text": "   "},
            {"text": "y" * 51},
            {"text": "labelled wrong", "labels": ["no_such_label"]},
            {"text": "two labels", "labels": ["first_party", "third_party"]},
            "[1, 2]",
            {"text": 42},
            {"text": "good two"},
        ),
        "mixed.jsonl",
    )
    assert batch.created_count == 2
    assert batch.rejected_count == 8
    reasons = dict(errors_of(batch))
    assert reasons[2].startswith("bad JSON")
    assert reasons[3] == "missing text"
    assert reasons[4] == "missing text"
    assert reasons[5] == "text is 51 characters, over the limit of 50"
    assert reasons[6].startswith("unknown label 'no_such_label' (project labels: data_security, first_party")
    assert reasons[7] == "2 labels on a single-label project"
    assert reasons[8] == "each line must be a JSON object, found list"
    assert reasons[9] == "text must be a string, not int"


def test_duplicates_in_the_file_and_in_the_project_are_skipped_and_counted(project):
    DocumentFactory(project=project, text="Already here.", external_id="old")
    batch = run_import(project, "text\nAlready here.\nNew one.\n  New one.  \n", "dups.csv")
    assert (batch.created_count, batch.duplicate_count, batch.rejected_count) == (1, 2, 0)


def test_same_id_with_different_text_is_rejected_not_overwritten(project):
    DocumentFactory(project=project, text="Original.", external_id="d1")
    batch = run_import(
        project,
        jsonl({"id": "d1", "text": "Changed."}, {"id": "n", "text": "A"}, {"id": "n", "text": "B"}),
        "ids.jsonl",
    )
    assert batch.created_count == 1
    assert errors_of(batch) == [
        (1, "id 'd1' already exists in this project with a different text"),
        (3, "id 'n' appears earlier in this file with a different text"),
    ]
    assert Document.objects.get(external_id="d1").text == "Original."


def test_csv_row_with_too_many_cells_is_rejected(project):
    batch = run_import(project, "id,text\n1,ok\n2,too,many\n", "cells.csv")
    assert batch.created_count == 1
    assert errors_of(batch) == [(3, "the row has more cells than the header's 2 columns")]


def test_csv_without_the_text_column_is_refused_and_names_the_columns(project):
    with pytest.raises(ImportRejected, match=r"no 'text' column \(columns: id, body\)"):
        run_import(project, "id,body\n1,hello\n", "nocol.csv")
    assert Document.objects.count() == 0


def test_empty_file_is_refused(project):
    with pytest.raises(ImportRejected, match="empty"):
        run_import(project, b"", "empty.csv")
    with pytest.raises(ImportRejected, match="no documents"):
        run_import(project, b"\n\n", "empty.jsonl")


def test_file_where_no_row_parses_imports_nothing_but_keeps_the_first_problems(project):
    with pytest.raises(ImportRejected, match=r"None of the 3 rows could be imported \(first problem: line 1: bad JSON"):
        run_import(project, "a,b\nc,d\ne,f\n", "actually-csv.jsonl")
    batch = ImportBatch.objects.get()
    assert batch.status == ImportBatch.Status.FAILED
    assert [line for line, _ in errors_of(batch)] == [1, 2, 3]
    assert Document.objects.count() == 0


def test_unknown_extension_is_refused_with_the_accepted_formats(project):
    with pytest.raises(ImportRejected, match=r"Cannot tell the format of .policy.docx.*\(\.csv, \.jsonl, \.txt\)"):
        import_batch_create(project=project, file_name="policy.docx", options=ImportOptions())


def test_import_command_prints_counts_and_errors(project, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text(jsonl({"text": "ok"}, {"nope": 1}))
    call_command("import_documents", str(project.pk), str(path), "--no-progress")
    out = capsys.readouterr().out
    assert "1 documents imported, 0 duplicates skipped, 1 rows rejected" in out
    assert "line 2: missing text" in out


def test_import_command_fails_clearly_on_a_refused_file(project, tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(b"text\n\xff\xfe\n")
    with pytest.raises(CommandError, match="not UTF-8"):
        call_command("import_documents", project.name, str(path), "--no-progress")


def test_hundred_thousand_rows_import_with_bounded_memory(project, tmp_path):
    """Correctness and flat memory at scale; the speed is measured in benchmarks/import_documents.py."""
    path = tmp_path / "big.jsonl"
    with open(path, "w") as out:
        for i in range(100_000):
            out.write(
                json.dumps({"id": f"r{i}", "text": f"Clause {i}: we keep logs for {i % 90} days.", "n": i}) + "\n"
            )
        out.write(json.dumps({"id": "dup", "text": "Clause 7: we keep logs for 7 days."}) + "\n")
    tracemalloc.start()
    batch = documents_import(project=project, path=path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (batch.created_count, batch.duplicate_count, batch.rejected_count) == (100_000, 1, 0)
    assert Document.objects.filter(project=project).count() == 100_000
    assert Document.objects.get(project=project, external_id="r99999").metadata == {"n": 99999}
    # The file is ~6 MB and its documents would take far more as objects; a stream stays well below.
    assert peak < 60 * 1024 * 1024, f"peak traced memory {peak / 1e6:.1f} MB"


def test_a_completed_import_asks_the_learning_loop_to_place_the_new_documents(
    project, django_capture_on_commit_callbacks, monkeypatch
):
    from learning import tasks

    asked = []
    monkeypatch.setattr(tasks.rescore_pool, "delay", asked.append)
    with django_capture_on_commit_callbacks(execute=True):
        run_import(project, "text\nA new clause.\n", "one.csv")
    assert asked == [project.pk]


def test_texts_and_metadata_arrive_unchanged_whatever_characters_they_hold(project):
    texts = [
        'He said "no", then left.',
        "Tabs\tand\nnew lines\r\nand a backslash \\ and \\N.",
        "Ünïcödé, emoji 🙂 and a comma, here",
        "   leading and trailing spaces   ",
    ]
    metadata = {"nested": {"list": [1, "two", None], "quote": '"'}, "naïve": "\\N"}
    rows = [{"id": f"c{i}", "text": text, **metadata} for i, text in enumerate(texts)]
    batch = run_import(project, jsonl(*rows), "chars.jsonl")
    assert batch.created_count == len(texts)
    for i, text in enumerate(texts):
        document = Document.objects.get(project=project, external_id=f"c{i}")
        assert (document.text, document.metadata) == (text, metadata)
    assert Document.objects.get(project=project, text=texts[0]).external_id == "c0"


def test_ids_and_metadata_with_backslashes_tabs_and_line_breaks_arrive_unchanged(project):
    # Chunks reach PostgreSQL in COPY's text format, where these characters would otherwise end a field or a row.
    rows = [
        {"id": "back\\slash", "text": "Carriage\ronly.", "note": "tab\there\r\nand \\."},
        {"id": "tab\tin id", "text": "Ends with a backslash \\", "note": "\\N"},
    ]
    batch = run_import(project, jsonl(*rows), "escapes.jsonl")
    assert batch.created_count == 2
    for row in rows:
        document = Document.objects.get(project=project, external_id=row["id"])
        assert (document.text, document.metadata) == (row["text"], {"note": row["note"]})


def test_outcomes_across_chunks_match_row_by_row_and_ids_follow_the_file(project, settings):
    settings.DOCKET_IMPORT_CHUNK = 3
    DocumentFactory(project=project, text="Known text.", external_id="known-text")
    DocumentFactory(project=project, text="Something else.", external_id="taken")
    rows = [
        {"id": "r0", "text": "First."},
        {"id": "r1", "text": "Known text."},  # a duplicate of a stored document
        {"id": "taken", "text": "Another text."},  # an id stored with another text
        {"id": "r3", "text": "Labeled.", "labels": ["first_party"]},
        {"id": "r4", "text": "First."},  # a duplicate of an earlier row, in another chunk
        {"text": "No id, labeled.", "labels": ["third_party"]},
        {"id": "r6", "text": "Last."},
    ]
    batch = run_import(project, jsonl(*rows), "chunks.jsonl")
    assert (batch.created_count, batch.duplicate_count, batch.rejected_count, batch.annotation_count) == (4, 2, 1, 2)
    assert errors_of(batch) == [(3, "id 'taken' already exists in this project with a different text")]
    created = list(Document.objects.filter(import_batch=batch).order_by("pk").values_list("text", "status"))
    assert created == [
        ("First.", "queued"),
        ("Labeled.", "labeled"),
        ("No id, labeled.", "labeled"),
        ("Last.", "queued"),
    ]
    labeled = Annotation.objects.filter(document__import_batch=batch).order_by("document_id")
    assert [list(a.labels.values_list("key", flat=True)) for a in labeled] == [["first_party"], ["third_party"]]
    assert all(a.revisions.count() == 1 for a in labeled)
    assert len(set(Document.objects.filter(import_batch=batch).values_list("random_key", flat=True))) == 4


def test_each_chunk_is_stored_with_one_statement(project, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.DOCKET_IMPORT_CHUNK = 100

    def queries_to_import(rows: int, start: int) -> int:
        content = jsonl(*({"id": f"q{i}", "text": f"Clause {i}."} for i in range(start, start + rows)))
        with CaptureQueriesContext(connection) as captured:
            assert run_import(project, content, "chunked.jsonl").created_count == rows
        return len(captured)

    # Ten more chunks cost twenty more round trips: each chunk's rows arrive by one COPY, and one statement sorts
    # them into duplicates, refused ids and new documents (it took two lookups and an insert).
    assert queries_to_import(2_000, 0) - queries_to_import(1_000, 10_000) == 20


def test_a_refused_file_shows_its_lowest_lines_first_even_when_a_later_chunk_found_them(project, settings):
    # A chunk's refused ids are known only once it is written, after rows of the next chunk were read.
    settings.DOCKET_IMPORT_CHUNK = 2
    DocumentFactory(project=project, text="Stored.", external_id="taken")
    content = jsonl({"id": "taken", "text": "Another text."}, '{"text": "broken', '{"text": "broken too')
    with pytest.raises(ImportRejected, match=r"first problem: line 1: id 'taken' already exists"):
        run_import(project, content, "refused.jsonl")
    assert errors_of(ImportBatch.objects.get(file_name="refused.jsonl"))[0][0] == 1


def test_a_file_refused_while_a_chunk_is_being_written_stores_nothing(project, settings):
    settings.DOCKET_IMPORT_CHUNK = 100
    content = jsonl(*({"id": f"w{i}", "text": f"Clause {i}."} for i in range(350))).encode() + b"\xff\n"
    with pytest.raises(ImportRejected, match="line 351"):
        run_import(project, content, "late-bad-byte.jsonl")
    assert ImportBatch.objects.get(file_name="late-bad-byte.jsonl").status == ImportBatch.Status.FAILED
    assert not Document.objects.filter(project=project).exists()


def test_a_database_error_writing_a_later_chunk_stores_nothing(project, settings, monkeypatch):
    from django.db import DataError

    from annotation.services import imports

    settings.DOCKET_IMPORT_CHUNK = 100
    write = imports._Builder._run_staged
    written = []

    def fails_on_the_third_chunk(self, *args):
        written.append(1)
        if len(written) == 3:
            raise DataError("simulated outage")
        return write(self, *args)

    monkeypatch.setattr(imports._Builder, "_run_staged", fails_on_the_third_chunk)
    with pytest.raises(DataError):
        run_import(project, jsonl(*({"text": f"Clause {i}."} for i in range(450))), "outage.jsonl")
    batch = ImportBatch.objects.get(file_name="outage.jsonl")
    assert batch.status == ImportBatch.Status.FAILED and "DataError" in batch.error
    assert not Document.objects.filter(project=project).exists()


def test_two_imports_in_one_transaction_store_only_their_own_rows():
    # Each import runs in a transaction of its own in Docket; a caller's atomic block (or a test) may hold two.
    # The staging tables live until the outer commit, and the second import must not store the first one's rows.
    first, second = project_with_labels(name="First"), project_with_labels(name="Second")
    run_import(first, "".join(json.dumps({"text": f"First file, clause {i}."}) + "\n" for i in range(3)), "a.jsonl")
    batch = run_import(second, json.dumps({"text": "Second file, its only clause."}) + "\n", "b.jsonl")

    assert (batch.status, batch.created_count) == (ImportBatch.Status.COMPLETED, 1)
    assert list(Document.objects.filter(project=second).values_list("text", flat=True)) == [
        "Second file, its only clause."
    ]
