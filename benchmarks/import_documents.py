"""Import throughput: 100,000 documents into PostgreSQL through Docket's importer, against raw COPY.

    .venv/bin/python benchmarks/import_documents.py [--rows 100000]

Uses its own database (docket_bench, or $BENCH_IMPORT_DB; dropped and recreated). The baseline, measured in the
same run, is PostgreSQL's COPY of the same texts into a bare table: the floor any importer pays to get rows on disk.
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench_setup import backend_cpu, recreate_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = os.environ.get("BENCH_IMPORT_DB", "docket_bench")  # a name with "bench" in it
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
os.environ.setdefault("DOCKET_DEVELOPMENT", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The import asks a worker for its search vectors and queue layout: on a broker of the benchmark's own.
os.environ["CELERY_BROKER_URL"] = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")


def write_rows(path: Path, rows: int) -> None:
    products = ["Mail", "Pay", "Tandem", "Atlas", "Beacon", "Harbor"]
    with open(path, "w", encoding="utf-8") as out:
        for i in range(rows):
            text = (
                f"Clause {i}: Northwind {products[i % 6]} keeps usage logs for {i % 365} days and shares "
                f"aggregated statistics with processor {i % 97} under contract {i}."
            )
            out.write(json.dumps({"id": f"bench-{i}", "text": text, "product": products[i % 6]}) + "\n")


def copy_baseline(path: Path) -> float:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE copy_baseline (external_id text, text text, metadata jsonb)")
        with tempfile.TemporaryFile("w+", encoding="utf-8") as tsv:
            for line in open(path, encoding="utf-8"):
                row = json.loads(line)
                meta = json.dumps({"product": row["product"]})
                tsv.write(f"{row['id']}\t{row['text']}\t{meta}\n")
            tsv.seek(0)
            start = time.perf_counter()
            cursor.copy_expert("COPY copy_baseline FROM STDIN", tsv)
            elapsed = time.perf_counter() - start
        cursor.execute("DROP TABLE copy_baseline")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--profile", metavar="PATH", help="write a cProfile of the import (pstats) to PATH")
    args = parser.parse_args()
    recreate_database(DB_NAME)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    # A finished import asks the learning loop to lay out the queue, which imports learning.tasks (and with it
    # scikit-learn) once per process. Web and worker processes have it loaded already; load it here too, so
    # the figure below is the import's own memory.
    import learning.tasks  # noqa: F401
    from annotation.services.imports import documents_import
    from annotation.services.projects import project_create

    project = project_create(name="Import benchmark", labels=[{"key": "first_party"}])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        write_rows(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        backend_start = backend_cpu()[1]
        cpu_start, start = time.process_time(), time.perf_counter()
        batch = documents_import(project=project, path=path)
        docket_s = time.perf_counter() - start
        # This process's CPU (every thread): what the import costs a machine whose cores other work shares.
        cpu_s = time.process_time() - cpu_start
        backend_s = backend_cpu()[1] - backend_start
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        copy_s = copy_baseline(path)
    assert batch.created_count == args.rows, batch.created_count
    # Explore's search vectors are stored by a worker once the import has committed (the import itself only
    # marks its documents pending): timed here, in this process, as the work that follows the import.
    from annotation.services.search_index import search_vectors_fill

    start = time.perf_counter()
    filled = search_vectors_fill()
    fill_s = time.perf_counter() - start
    print(f"rows                 {args.rows:,} ({size_mb:.1f} MB JSONL)")
    print(f"docket import        {docket_s:.1f} s   {args.rows / docket_s:,.0f} docs/s")
    print(f"import process CPU   {cpu_s:.2f} s   {cpu_s / args.rows * 1e6:.1f} us per document")
    print(f"PostgreSQL CPU       {backend_s:.2f} s   (its server process for the import's connection)")
    print(f"COPY baseline        {copy_s:.1f} s   {args.rows / copy_s:,.0f} rows/s")
    print(f"search vectors       {fill_s:.1f} s   {filled:,} stored by the worker's task after the import")
    print(f"ratio (docket/COPY)  {docket_s / copy_s:.1f}x the time of raw COPY")
    grew = rss_peak - rss_before
    print(f"peak RSS             {rss_peak:.0f} MB (before import {rss_before:.0f} MB, +{grew:.0f} MB)")
    print(f"load average         {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
