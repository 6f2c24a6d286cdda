"""Server time of the insights dashboard on a project with 100,000 documents and 50,000 annotations.

    .venv/bin/python benchmarks/dashboard.py [--documents 100000] [--annotations 50000] [--runs 30] [--keep-db]

Uses its own PostgreSQL database, docket_bench_dashboard (dropped and recreated unless --keep-db finds the
data already there). The project has 10 labels, 20 import batches, `product` and `region` metadata, 8
reviewers whose answers spread over 60 days with time on screen, 10% of the labeled documents overlapped
(two reviewers each, about one in five disagreeing, half of those adjudicated) and three model versions.

Measures GET /projects/<id>/quality/ through Django's test client in this process (queries, template, SVG:
everything but the network) for every kind of reader (see `measure`): with the figures current, the first
reader after a change, the readers while the recomputation is pending, the first reader ever; and the
recomputation itself, which a worker runs (here, this process runs the task's body between rounds). Prints
a table of p50/p95 (and, with --json FILE, writes the figures there).
"""

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

from bench_setup import configure_django, recreate_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HOST = "127.0.0.1"
LABELS = [
    "first_party",
    "third_party",
    "user_choice",
    "user_access",
    "data_retention",
    "data_security",
    "policy_change",
    "do_not_track",
    "international",
    "other",
]
PRODUCTS = ["Mail", "Maps", "Pay", "Shop", "Cloud", "Ads"]
REGIONS = ["EU", "US", "UK", "APAC"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=f"postgres://postgres@{HOST}:5432/docket_bench_dashboard")
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--annotations", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=30, help="requests with current figures")
    parser.add_argument("--rounds", type=int, default=10, help="changes, each followed by readers and a recompute")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args()


def seed(args: argparse.Namespace) -> tuple[int, int]:
    """The benchmark project (created once); returns (project id, admin user id)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction

    from annotation.models import (
        Adjudication,
        Annotation,
        AnnotationLabel,
        Document,
        ImportBatch,
        Label,
        Membership,
        Project,
        Taxonomy,
    )
    from learning.models import ModelVersion

    call_command("migrate", verbosity=0)
    User = get_user_model()
    project = Project.objects.filter(name="Dashboard benchmark").first()
    if project is not None and Annotation.objects.filter(document__project=project).count() >= args.annotations:
        return project.pk, User.objects.get(username="bench-admin").pk
    rng = random.Random(0)
    started = time.perf_counter()
    with transaction.atomic():
        project = Project.objects.create(name="Dashboard benchmark", overlap_rate=0.1)
        taxonomy = Taxonomy.objects.create(project=project)
        labels = Label.objects.bulk_create(
            [Label(taxonomy=taxonomy, key=k, name=k.replace("_", " ").title(), order=i) for i, k in enumerate(LABELS)]
        )
        admin = User.objects.create_user("bench-admin", password="bench-password")
        Membership.objects.create(project=project, user=admin, role="admin")
        reviewers = [User.objects.create_user(f"reviewer{i}", password="x") for i in range(8)]
        Membership.objects.bulk_create([Membership(project=project, user=u) for u in reviewers])
        batches = ImportBatch.objects.bulk_create(
            [
                ImportBatch(project=project, file_name=f"export-{i:02d}.csv", format="csv", status="completed")
                for i in range(20)
            ]
        )
        documents = Document.objects.bulk_create(
            [
                Document(
                    project=project,
                    text=f"Clause {i}: we share data with partner {i % 977} for purpose {i % 13}.",
                    content_hash=f"{i:064d}",
                    external_id=f"doc-{i}",
                    metadata={"product": PRODUCTS[i % len(PRODUCTS)], "region": REGIONS[(i // 7) % len(REGIONS)]},
                    import_batch=batches[i * len(batches) // args.documents],
                    random_key=rng.random(),
                )
                for i in range(args.documents)
            ],
            batch_size=5000,
        )
        # About 10% of the labeled documents get two reviewers; the rest one.
        rows, label_of, overlapped, labeled = [], [], [], []
        for document in documents:
            if len(rows) >= args.annotations:
                break
            labeled.append(document)
            true = rng.randrange(len(labels)) if rng.random() < 0.5 else rng.randrange(3)
            first, second = rng.sample(reviewers, 2)
            rows.append(Annotation(document=document, reviewer=first, seconds_spent=rng.lognormvariate(3, 0.6)))
            label_of.append(true)
            if rng.random() < 0.1 and len(rows) < args.annotations:
                other = true if rng.random() < 0.8 else rng.randrange(len(labels))
                rows.append(Annotation(document=document, reviewer=second, seconds_spent=rng.lognormvariate(3, 0.6)))
                label_of.append(other)
                overlapped.append((document, true, other))
        Annotation.objects.bulk_create(rows, batch_size=5000)
        AnnotationLabel.objects.bulk_create(
            [AnnotationLabel(annotation=a, label=labels[k]) for a, k in zip(rows, label_of, strict=True)],
            batch_size=5000,
        )
        # Spread the answers over 60 days (auto_now_add stamped them all now).
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Annotation._meta.db_table} a SET created_at = now() - (interval '60 days' * "
                "(1 - (a.document_id - %s)::float / %s)), updated_at = now() - (interval '60 days' * "
                "(1 - (a.document_id - %s)::float / %s)) WHERE a.id >= %s",
                [documents[0].pk, len(labeled), documents[0].pk, len(labeled), rows[0].pk],
            )
        Document.objects.filter(pk__in=[d.pk for d in labeled]).update(status="labeled")
        disputed = [(d, a) for d, a, b in overlapped if a != b]
        Adjudication.objects.bulk_create(
            [
                Adjudication(document=d, project=project, label_keys=[LABELS[a]], decided_by=admin)
                for d, a in disputed[: len(disputed) // 2]
            ]
        )
        for number in (1, 2, 3):
            matrix = [[0] * len(LABELS) for _ in LABELS]
            for i in range(len(LABELS)):
                for j in range(len(LABELS)):
                    matrix[i][j] = rng.randrange(40, 90) if i == j else rng.randrange(0, 8)
            ModelVersion.objects.create(
                project=project,
                number=number,
                status="active" if number == 3 else "retired",
                kind="fast",
                taxonomy_version=1,
                label_keys=LABELS,
                artifact_path=f"bench/v{number}",
                train_label_count=number * 5000,
                eval_label_count=800,
                metrics={
                    "macro_f1": 0.55 + 0.05 * number,
                    "micro_f1": 0.6 + 0.05 * number,
                    "confusion": {"labels": LABELS, "matrix": matrix},
                },
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"seeded {args.documents:,} documents and {len(rows):,} annotations in {time.perf_counter() - started:.0f} s")
    return project.pk, admin.pk


def measure(project_id: int, admin_id: int, runs: int, rounds: int) -> dict:
    """Server time of every kind of reader, and of the worker's recomputation, on the seeded project.

    - current: the figures stored and current (every reader until the next change);
    - first reader after a change: one audit event written (as every label, decision or import writes), then
      one request, which finds the stored figures outdated, shows them and asks a worker;
    - readers while the recompute is pending: the requests after it, before the worker has stored new figures;
    - first reader ever: nothing stored for the project (the page that says the figures are being computed);
    - recompute: `dashboard_refresh`, the worker task's body; before this work, the first reader after a change
      waited for exactly this inside the request.
    """
    from celery import current_app
    from django.contrib.auth import get_user_model
    from django.test import Client

    from annotation.models import Project
    from annotation.services.audit import audit_record
    from quality import dashboard
    from quality.dashboard import dashboard_refresh
    from quality.models import DashboardFigures

    # Readers take the large project's path at any size, so a small --annotations measures the recomputation
    # a reader would wait for under the inline limit (the "recompute" row).
    dashboard.DASHBOARD_INLINE_ANSWERS = 0

    project = Project.objects.get(pk=project_id)
    admin = get_user_model().objects.get(pk=admin_id)
    client = Client()
    client.force_login(admin)
    url = f"/projects/{project_id}/quality/?field=region"

    def get(marker: str = "") -> float:
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.status_code
        assert marker.encode() in response.content, marker
        return elapsed

    def recompute() -> float:
        started = time.perf_counter()
        assert dashboard_refresh(project_id=project_id, field="region") is not None
        return (time.perf_counter() - started) * 1000

    timings: dict[str, list[float]] = {"current": [], "first_after_change": [], "pending": [], "first_ever": []}
    timings["recompute"] = []
    DashboardFigures.objects.filter(project=project).delete()
    get('id="dashboard-computing"')  # warm the connection and the template loader
    for _ in range(max(rounds // 2, 2)):
        DashboardFigures.objects.filter(project=project).delete()
        timings["first_ever"].append(get('id="dashboard-computing"'))
    timings["recompute"].append(recompute())
    for _ in range(runs):
        timings["current"].append(get('id="chart-labels"'))
    for _ in range(rounds):
        audit_record(action="benchmark.change", actor=admin, project=project, target=project)
        timings["first_after_change"].append(get('id="stale"'))
        for _ in range(max(runs // rounds, 3)):
            timings["pending"].append(get('id="stale"'))
        timings["recompute"].append(recompute())
    current_app.control.purge()  # the recomputations the readers asked for: no worker serves this broker here
    return timings


def summary(timings: list[float]) -> dict:
    ordered = sorted(timings)
    return {
        "runs": len(timings),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "max_ms": round(ordered[-1], 1),
    }


def main() -> None:
    args = parse_args()
    if not args.keep_db:
        recreate_database(args.database_url)
    configure_django(args.database_url)
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["*"]
    project_id, admin_id = seed(args)
    timings = measure(project_id, admin_id, args.runs, args.rounds)
    result = {
        "documents": args.documents,
        "annotations": args.annotations,
        **{name: summary(values) for name, values in timings.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} cores shared, python {platform.python_version()}",
        "cache": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1],
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }
    rows = [
        ("figures current (every reader until the next change)", "current"),
        ("first reader after a change (stored figures, marked updating; asks a worker)", "first_after_change"),
        ("readers while the recomputation is pending", "pending"),
        ("first reader ever (nothing stored: the page that reloads itself)", "first_ever"),
        ("recomputation in the worker (before: in the first reader's request)", "recompute"),
    ]
    print("| request | runs | p50 | p95 | max |\n| --- | ---: | ---: | ---: | ---: |")
    for title, name in rows:
        r = result[name]
        print(f"| {title} | {r['runs']} | {r['p50_ms']:.1f} ms | {r['p95_ms']:.1f} ms | {r['max_ms']:.1f} ms |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
