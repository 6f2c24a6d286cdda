"""Search by words over a million documents: Explore's full-text search (GIN index) against a substring scan.

    nice -n 10 .venv/bin/python benchmarks/search_words.py --documents 1000000 [--keep-db]

Builds its own database (docket_bench_search, dropped and recreated unless --keep-db), one project of synthetic
privacy-office tickets and clauses (a few hundred templates filled from a 6,000-word vocabulary with a Zipf-like
spread, so some words are in most documents and most words in few), loaded with COPY; then times the GIN index
build. Then, in this process, it times `explore.search.search` (first page of 25, the capped count and the
highlights, exactly what the Explore page asks) for each kind of query, and, as the baseline in the same run,
the same words as case-insensitive substring filters on the unindexed text (what a plain `icontains` search,
and Explore on SQLite, does). Prints a Markdown table and writes JSON.
"""

import argparse
import hashlib
import io
import json
import os
import platform
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench_setup import ROOT, configure_django, recreate_database

sys.path.insert(0, str(ROOT))

SUBJECTS = ["customer", "employee", "patient", "user", "applicant", "subscriber", "visitor", "contractor"]
ACTIONS = [
    "asks us to delete",
    "wants a copy of",
    "objects to the processing of",
    "reports a breach of",
    "asks who received",
    "complains about the sharing of",
    "requests correction of",
    "withdraws consent for",
]
DATA = [
    "health records",
    "location history",
    "biometric templates",
    "payment card data",
    "browsing history",
    "email address",
    "voice recordings",
    "device identifiers",
    "purchase history",
    "right to erasure request",
]
TAILS = [
    "held by the {w} team since {y}",
    "shared with the {w} vendor without notice",
    "collected through the {w} form",
    "kept in the {w} archive for {y} years",
    "sent to a {w} partner abroad",
]


def vocabulary(size: int, rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnoprstuvw"
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(4, 9))))
    return sorted(words)


def zipf_word(words: list[str], rng: random.Random) -> str:
    return words[min(int(rng.paretovariate(1.1)) - 1, len(words) - 1)]


def text_for(n: int, words: list[str], rng: random.Random) -> str:
    extra = " ".join(zipf_word(words, rng) for _ in range(rng.randint(8, 30)))
    tail = rng.choice(TAILS).format(w=zipf_word(words, rng), y=rng.randint(2, 12))
    return (
        f"Ticket {n}: a {rng.choice(SUBJECTS)} {rng.choice(ACTIONS)} their {rng.choice(DATA)} {tail}. Notes: {extra}."
    )


QUERIES = [
    ("common word", "history"),
    ("two words", "delete health"),
    ("rare word", None),  # a word from the vocabulary's long tail, picked at run time
    ("phrase", '"right to erasure"'),
    ("prefix", "biometr*"),
    ("word + metadata filter", "consent"),
]


def load(args, project_id: int) -> dict:
    from django.db import connection

    from annotation.models import Document, DocumentSearchPending, DocumentSearchVector
    from annotation.services.search_index import search_vectors_fill

    rng = random.Random(7)
    words = vocabulary(6_000, rng)
    table = Document._meta.db_table
    vectors = DocumentSearchVector._meta.db_table
    with connection.cursor() as cursor:
        # Loaded without the index, then indexed once: the build time is a figure of its own.
        cursor.execute("DROP INDEX IF EXISTS document_search_vector_idx")
    started = time.perf_counter()
    chunk = 100_000
    for start in range(0, args.documents, chunk):
        buffer = io.StringIO()
        for n in range(start, min(start + chunk, args.documents)):
            text = text_for(n, words, rng)
            source = "tickets" if n % 3 else "policies"
            digest = hashlib.sha256(text.encode()).hexdigest()
            row = [
                str(project_id),
                f"t-{n}",
                text,
                json.dumps({"source": source}),
                digest,
                "queued",
                "",
                str(rng.random()),
            ]
            buffer.write("\t".join(value.replace("\\", "\\\\").replace("\t", " ") for value in row) + "\tnow\n")
        buffer.seek(0)
        with connection.cursor() as cursor:
            cursor.copy_expert(
                f"COPY {table} (project_id, external_id, text, metadata, content_hash, status, rereview_reason, "
                "random_key, created_at) FROM STDIN",
                buffer,
            )
        print(f"  {min(start + chunk, args.documents):,} documents", flush=True)
    load_seconds = time.perf_counter() - started
    # What the worker does after an import: the vectors of every pending document, in its batches.
    started = time.perf_counter()
    search_vectors_fill()
    fill_seconds = time.perf_counter() - started
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE INDEX document_search_vector_idx ON {vectors} USING gin (vector)")
        for analyzed in (table, vectors, DocumentSearchPending._meta.db_table):
            cursor.execute(f"ANALYZE {analyzed}")
    index_seconds = time.perf_counter() - started
    return {
        "load_seconds": round(load_seconds, 1),
        "vector_fill_seconds": round(fill_seconds, 1),
        "index_build_seconds": round(index_seconds, 1),
    }


def mark_pending(project_id: int, count: int) -> None:
    """The state right after an import of `count` documents, before the worker ran: the newest `count` documents
    pending, without vectors."""
    from django.db import connection

    from annotation.models import Document, DocumentSearchPending, DocumentSearchVector

    newest = f"SELECT id FROM {Document._meta.db_table} WHERE project_id = %s ORDER BY id DESC LIMIT %s"
    pending = DocumentSearchPending._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {DocumentSearchVector._meta.db_table} WHERE document_id IN ({newest})", [project_id, count]
        )
        cursor.execute(f"INSERT INTO {pending} (document_id) {newest} ON CONFLICT DO NOTHING", [project_id, count])
        cursor.execute(f"ANALYZE {pending}")


def other_project_pending(project_id: int, count: int):
    """Another project in the middle of its own import: `count` documents (copies of this project's newest
    texts) inserted and pending, their vectors not stored yet. Returns that project, to delete afterwards."""
    from django.db import connection

    from annotation.models import Document, Project

    other = Project.objects.create(name="Search benchmark, another project importing")
    table = Document._meta.db_table
    columns = "external_id, text, metadata, content_hash, status, rereview_reason, random_key, created_at"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (project_id, {columns}) SELECT %s, {columns} FROM {table} "
            "WHERE project_id = %s ORDER BY id DESC LIMIT %s",
            [other.pk, project_id, count],
        )
        cursor.execute("ANALYZE")
    return other


def time_queries(project, rare: str, repeats: int, baseline_repeats: int) -> list[dict]:
    """Each query's Explore timings (first page, capped count, highlights) and its plan, and the substring scan
    of the same words as the baseline."""
    from django.db import connection, reset_queries

    from annotation.models import Document
    from explore.search import COUNT_LIMIT, ExploreQuery, filtered_documents, parse_words, search

    rows = []
    for kind, words in QUERIES:
        words = words or rare
        query = ExploreQuery(words=words)
        if kind.endswith("metadata filter"):
            query.metadata_key, query.metadata_value = "source", "policies"
        timings = []
        for _ in range(repeats):
            reset_queries()
            started = time.perf_counter()
            page = search(project, query, user=None, sees_answers=True)
            timings.append(time.perf_counter() - started)
        baseline = []
        for _ in range(baseline_repeats):
            documents = Document.objects.filter(project=project)
            for term in parse_words(words):
                documents = documents.filter(text__icontains=term.text)
            started = time.perf_counter()
            list(documents.order_by("-pk")[:26])
            documents[: COUNT_LIMIT + 1].count()
            baseline.append(time.perf_counter() - started)
        first_page = filtered_documents(project, query, sees_answers=True, user=None).order_by("-pk")[:26]
        sql, params = first_page.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN " + sql, params)
            plan = [line for (line,) in cursor.fetchall()]
        row = {
            "kind": kind,
            "words": words,
            "matches": f"{page.count:,}{'+' if page.count_capped else ''}",
            "p50_ms": round(percentile(timings, 50) * 1000, 1),
            "p95_ms": round(percentile(timings, 95) * 1000, 1),
            "baseline_p50_ms": round(percentile(baseline, 50) * 1000, 1) if baseline else None,
            "first_page_plan": plan,
        }
        rows.append(row)
        print({k: v for k, v in row.items() if k != "first_page_plan"}, flush=True)
        print("  " + "\n  ".join(plan), flush=True)
    return rows


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def print_while(title: str, report: dict, state: str) -> None:
    print(f"\n{title}:")
    print("| query | words | matches | Explore p50 | Explore p95 |")
    print("| --- | --- | ---: | ---: | ---: |")
    for row in report[f"queries_while_{state}"]:
        print(f"| {row['kind']} | `{row['words']}` | {row['matches']} | {row['p50_ms']} ms | {row['p95_ms']} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/docket_bench_search")
    parser.add_argument("--repeats", type=int, default=40, help="Timed runs of each Explore query.")
    parser.add_argument("--baseline-repeats", type=int, default=3, help="Timed runs of each substring scan.")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument(
        "--pending", type=int, default=0, help="Then time the queries again with this many newest documents pending."
    )
    parser.add_argument(
        "--other-pending",
        type=int,
        default=0,
        help="Then time the queries again while another project has this many documents pending.",
    )
    parser.add_argument("--pending-repeats", type=int, default=5, help="Timed runs of each query while pending.")
    parser.add_argument("--write", type=Path, default=ROOT / "var" / "bench" / "search_words.json")
    args = parser.parse_args()
    if not args.keep_db:
        recreate_database(args.database_url)
    configure_django(args.database_url)
    from django.core.management import call_command
    from django.db import connection

    from annotation.models import Document, Project
    from annotation.services.search_index import search_vectors_fill

    call_command("migrate", verbosity=0)
    project, created = Project.objects.get_or_create(name="Search benchmark")
    setup = {}
    if created or Document.objects.filter(project=project).count() != args.documents:
        Document.objects.filter(project=project).delete()
        print(f"Loading {args.documents:,} documents", flush=True)
        setup = load(args, project.pk)
    search_vectors_fill()  # a kept database left pending by an interrupted run
    rare = vocabulary(6_000, random.Random(7))[-1]  # the same words the load drew from: the rarest of them
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "documents": args.documents,
        "setup": setup,
        "queries": [],
    }
    print(json.dumps(setup), flush=True)
    report["queries"] = time_queries(project, rare, args.repeats, args.baseline_repeats)
    if args.pending:
        # Right after an import of --pending documents, before the worker stored their vectors.
        mark_pending(project.pk, args.pending)
        report["pending"] = args.pending
        report["queries_while_pending"] = time_queries(project, rare, args.pending_repeats, 0)
        search_vectors_fill()
    if args.other_pending:
        other = other_project_pending(project.pk, args.other_pending)
        report["other_pending"] = args.other_pending
        report["queries_while_other_pending"] = time_queries(project, rare, args.pending_repeats, 0)
        Document.objects.filter(project=other).delete()
        other.delete()
    connection.close()
    args.write.parent.mkdir(parents=True, exist_ok=True)
    args.write.write_text(json.dumps(report, indent=2))
    print("| query | words | matches | Explore p50 | Explore p95 | substring scan p50 (baseline) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for row in report["queries"]:
        print(
            f"| {row['kind']} | `{row['words']}` | {row['matches']} | {row['p50_ms']} ms | {row['p95_ms']} ms "
            f"| {row['baseline_p50_ms']} ms |"
        )
    if args.pending:
        print_while(f"With the newest {args.pending:,} documents pending (before the worker ran)", report, "pending")
    if args.other_pending:
        title = f"While another project has {args.other_pending:,} documents pending (its import just committed)"
        print_while(title, report, "other_pending")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
