"""Import and export of 100,000 documents in each of the other tools' formats, against Docket's own JSONL.

    nice -n 10 .venv/bin/python benchmarks/interchange_formats.py [--rows 100000] [--formats prodigy parquet ...]

Uses its own database (docket_formats_bench, dropped and recreated). Builds a project of `--rows` documents,
each labeled by one of two reviewers (an answer with its times, as reviewers leave them), exports it in every
format, and imports every file into a fresh project with the same reviewers as members. For each step: wall
time, rows per second, the file's size and the process's peak memory above what it held before the step
(sampled every 50 ms). Baseline: Docket's own JSONL export and import of the same project, in the same run.
"""

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from bench_setup import configure_django, recreate_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = "docket_formats_bench"
FORMATS = ["jsonl", "label-studio", "doccano", "prodigy", "parquet", "hf-dataset"]
SUFFIX = {"jsonl": "jsonl", "label-studio": "json", "doccano": "jsonl", "prodigy": "jsonl", "parquet": "parquet"}


class PeakMemory:
    """The process's peak resident memory during a `with` block, above what it held when the block began."""

    def __init__(self):
        self.process = psutil.Process()

    def __enter__(self):
        self.before = self.process.memory_info().rss
        self.peak = self.before
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        self.start = time.perf_counter()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.05)

    def __exit__(self, *exc_info):
        self.seconds = time.perf_counter() - self.start
        self.running = False
        self.thread.join()
        self.grew_mb = (self.peak - self.before) / 1e6


def build_project(rows: int):
    """`rows` documents, every one answered by ana or ben with a label and its times, through bulk inserts."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from annotation.models import Annotation, AnnotationLabel, Document, Label, Membership
    from annotation.services.imports import content_hash
    from annotation.services.projects import project_create

    keys = ["first_party", "third_party", "data_security"]
    project = project_create(name="Formats benchmark", labels=[{"key": key} for key in keys])
    users = [get_user_model().objects.create_user(username=name) for name in ("ana", "ben")]
    for user in users:
        Membership.objects.create(project=project, user=user, role="reviewer")
    labels = {label.key: label for label in Label.objects.filter(taxonomy__project=project)}
    products = ["Mail", "Pay", "Tandem", "Atlas", "Beacon", "Harbor"]
    now = timezone.now()
    for start in range(0, rows, 5000):
        documents = []
        for i in range(start, min(start + 5000, rows)):
            text = (
                f"Clause {i}: Northwind {products[i % 6]} keeps usage logs for {i % 365} days and shares "
                f"aggregated statistics with processor {i % 97} under contract {i}."
            )
            documents.append(
                Document(
                    project=project,
                    external_id=f"bench-{i}",
                    text=text,
                    content_hash=content_hash(text),
                    metadata={"product": products[i % 6]},
                    status=Document.Status.LABELED,
                )
            )
        Document.objects.bulk_create(documents)
        annotations = Annotation.objects.bulk_create(
            Annotation(document=d, reviewer=users[d.pk % 2], source=Annotation.Source.REVIEWER) for d in documents
        )
        for annotation in annotations:
            annotation.created_at = annotation.updated_at = now
        Annotation.objects.bulk_update(annotations, ["created_at", "updated_at"])
        AnnotationLabel.objects.bulk_create(
            AnnotationLabel(annotation=a, label=labels[keys[a.document_id % 3]]) for a in annotations
        )
    return project, users


def export_to(project, fmt: str, directory: Path) -> Path:
    from annotation.services.exports import export_stream

    path = directory / f"export.{SUFFIX.get(fmt, 'zip')}"
    with open(path, "wb") as out:
        for piece in export_stream(project, fmt):
            out.write(piece if isinstance(piece, bytes) else piece.encode("utf-8"))
    return path


def import_into(path: Path, fmt: str, users, name: str):
    from annotation.models import Membership
    from annotation.services.imports import ImportOptions, documents_import
    from annotation.services.projects import project_create

    project = project_create(name=name, labels=[{"key": k} for k in ("first_party", "third_party", "data_security")])
    for user in users:
        Membership.objects.create(project=project, user=user, role="reviewer")
    return documents_import(project=project, path=path, options=ImportOptions(format=fmt))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--formats", nargs="+", choices=FORMATS, default=FORMATS, help="jsonl, the baseline, always runs"
    )
    args = parser.parse_args()
    formats = ["jsonl", *[fmt for fmt in args.formats if fmt != "jsonl"]]
    recreate_database(DB_NAME)
    configure_django(f"postgres://postgres@127.0.0.1:5432/{DB_NAME}")
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import learning.tasks  # noqa: F401  (loaded by web and worker processes; kept out of the figures)

    started = time.perf_counter()
    project, users = build_project(args.rows)
    print(f"built {args.rows:,} labeled documents in {time.perf_counter() - started:.0f} s", flush=True)
    print(
        "| format | export | export rows/s | file | export peak +MB "
        "| import | import rows/s | import peak +MB | stored | answers |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="docket-formats-bench-") as tmp:
        for fmt in formats:
            directory = Path(tmp) / fmt
            directory.mkdir()
            with PeakMemory() as exported:
                path = export_to(project, fmt, directory)
            with PeakMemory() as imported:
                batch = import_into(path, fmt, users, f"Imported {fmt}")
            assert batch.created_count == args.rows, (fmt, batch.created_count, batch.rejected_count)
            print(
                f"| {fmt} | {exported.seconds:.1f} s | {args.rows / exported.seconds:,.0f} | "
                f"{path.stat().st_size / 1e6:.1f} MB | {exported.grew_mb:.0f} | {imported.seconds:.1f} s | "
                f"{args.rows / imported.seconds:,.0f} | {imported.grew_mb:.0f} | {batch.created_count:,} | "
                f"{batch.annotation_count:,} |",
                flush=True,
            )
            path.unlink()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
