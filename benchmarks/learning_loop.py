"""The learning loop's wall times: fast loop on 10,000 and 100,000 queued documents, slow loop at 100 and 400
labels, and pool-embedding throughput of the chunked cache path against plain SentenceTransformer.encode.

    nice .venv/bin/python benchmarks/learning_loop.py [--write var/bench/learning-loop.md]
    nice -n 10 .venv/bin/python benchmarks/learning_loop.py --fast-only --queued 100000,1000000

Beside each fast-loop round the same number of priorities is rewritten by raw COPY into a bare table (no
index, no constraint, no JSON built in Python): PostgreSQL's own floor for writing them, measured alternately
with the rounds so that a neighbour's load hits both alike.

Uses its own database (docket_bench_learning, dropped and recreated) and a temporary ARTIFACT_DIR, and calls
the services a Celery worker calls (`training_on_labels_changed`, then `training_run_execute`) in this
process, so the broker hop (milliseconds) is not in the figures. Labelled texts are OPP-115 segments with
exactly one category (../shared/datasets/opp115, research use only, read at run time and never stored);
queued pool texts are OPP-115 segments cycled with a distinguishing suffix. The pools' embeddings are seeded
into the cache as random unit vectors (the labelled documents' are really encoded): encoding 100,000 texts
takes ~25 minutes on two idle cores, and far longer on shared ones. Real encoding throughput is measured
separately, through the same cache path, against plain SentenceTransformer.encode on the same texts;
`--encode-up-to 10000` really encodes pools up to that size when the machine is quiet enough.
"""

import argparse
import atexit
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench_setup import recreate_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = os.environ.get("BENCH_LEARNING_DB", "docket_bench_learning")  # a name with "bench" in it
ARTIFACTS = Path(tempfile.mkdtemp(prefix="docket-bench-learning-"))
# Model versions and embedding shards: 1.5 GB of shards alone at 1,000,000 queued documents.
atexit.register(shutil.rmtree, ARTIFACTS, ignore_errors=True)
SEGMENTS = ROOT.parent / "shared" / "datasets" / "opp115" / "segments.jsonl"
os.environ.update(
    {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        "DOCKET_DEVELOPMENT": "1",
        "DOCKET_ARTIFACT_DIR": str(ARTIFACTS),
        # Tasks the services enqueue (follow-ups, rescoring) go nowhere: this process runs the work itself.
        "CELERY_BROKER_URL": "memory://",
        "CELERY_RESULT_BACKEND": "cache+memory://",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
)
NEW_LABELS_PER_ROUND = 10
FAST_ROUNDS = 3
SEED_LABELS = 200


def load_segments() -> tuple[list[dict], list[str]]:
    rows = [json.loads(line) for line in SEGMENTS.open(encoding="utf-8")]
    single = [row for row in rows if len(row["labels"]) == 1]
    return single, [row["text"] for row in rows]


def slug(category: str) -> str:
    from django.utils.text import slugify

    return slugify(category).replace("-", "_")[:64]


class Bench:
    """Builds projects with documents and labels in bulk, and runs the loop's services against them."""

    def __init__(self, labelled: list[dict], texts: list[str]) -> None:
        from django.contrib.auth import get_user_model

        self.labelled = labelled
        self.texts = texts
        self.keys = sorted({slug(row["labels"][0]) for row in labelled})
        self.reviewer = get_user_model().objects.create_user("bench-reviewer", password="bench-password-1")

    def project(self, name: str, **options):
        from annotation.models import Label, Project, Taxonomy

        project = Project.objects.create(name=name, promotion_policy="always", **options)
        taxonomy = Taxonomy.objects.create(project=project)
        Label.objects.bulk_create([Label(taxonomy=taxonomy, key=k, name=k, order=i) for i, k in enumerate(self.keys)])
        return project

    def add_pool(self, project, count: int, offset: int = 0) -> None:
        """Queued documents, written by COPY in chunks of 50,000, so that 1,000,000 of them take minutes."""
        import hashlib
        import io

        from django.db import connection, transaction

        from annotation.models import Document

        columns = (
            "project_id, external_id, text, metadata, content_hash, status, rereview_reason, random_key, created_at"
        )
        with transaction.atomic(), connection.cursor() as cursor:
            for start in range(offset, offset + count, 50_000):
                buffer = io.StringIO()
                for i in range(start, min(start + 50_000, offset + count)):
                    text = " ".join(f"{self.texts[i % len(self.texts)]} [pool {i}]".split())
                    digest = hashlib.sha256(text.encode()).hexdigest()
                    escaped = text.replace("\\", "\\\\")
                    buffer.write(f"{project.pk}\t\t{escaped}\t{{}}\t{digest}\tqueued\t\t{random.random()!r}\tnow\n")
                buffer.seek(0)
                cursor.copy_expert(f"COPY {Document._meta.db_table} ({columns}) FROM STDIN", buffer)

    def add_labelled(self, project, rows: list[dict]) -> None:
        """Documents labelled by a reviewer, as the labeling service stores them (annotation, label, revision)."""
        import hashlib

        from annotation.models import Document, Label

        labels = {label.key: label for label in Label.objects.filter(taxonomy__project=project)}
        documents = Document.objects.bulk_create(
            [
                Document(
                    project=project,
                    text=row["text"],
                    content_hash=hashlib.sha256(f"{row['id']}{row['text']}".encode()).hexdigest(),
                    status=Document.Status.LABELED,
                )
                for row in rows
            ]
        )
        self._annotate(documents, [slug(row["labels"][0]) for row in rows], labels)

    def label_queued(self, project, count: int) -> None:
        """`count` queued documents get a reviewer's label: the "labels in" of a fast-loop round."""
        from annotation.models import Document, Label

        labels = {label.key: label for label in Label.objects.filter(taxonomy__project=project)}
        documents = list(Document.objects.filter(project=project, status="queued").order_by("?")[:count])
        Document.objects.filter(pk__in=[d.pk for d in documents]).update(status="labeled")
        keys = [self.keys[i % len(self.keys)] for i in range(len(documents))]
        self._annotate(documents, keys, labels)

    def _annotate(self, documents, keys, labels) -> None:
        from annotation.models import Annotation, AnnotationLabel, AnnotationRevision

        annotations = Annotation.objects.bulk_create(
            [Annotation(document=document, reviewer=self.reviewer) for document in documents]
        )
        AnnotationLabel.objects.bulk_create(
            [AnnotationLabel(annotation=a, label=labels[k]) for a, k in zip(annotations, keys, strict=True)]
        )
        AnnotationRevision.objects.bulk_create(
            [
                AnnotationRevision(annotation=a, label_keys=[k], label_ids=[labels[k].pk], reason="create")
                for a, k in zip(annotations, keys, strict=True)
            ]
        )


def run_loop(project_id: int) -> dict:
    """What a worker does on `labels_changed`, then on the training task it enqueues; returns the timings."""
    from learning import services
    from learning.models import QueuePriority, TrainingRun

    started = time.perf_counter()
    run = services.training_on_labels_changed(project_id=project_id)
    if run is None:
        run = services.training_run_request(project=run_project(project_id), kind="fast", trigger="labels")
    run = services.training_run_execute(run_id=run.pk)
    elapsed = time.perf_counter() - started
    if run.status != TrainingRun.Status.SUCCEEDED:
        raise SystemExit(f"run {run.pk} ended {run.status}: {run.error}")
    version = run.model_version
    scored = QueuePriority.objects.filter(project_id=project_id, model_version=version.number).count()
    return {"seconds": elapsed, "timings": run.timings, "version": version.number, "scored": scored, "kind": run.kind}


def raw_copy_baseline(project_id: int) -> dict:
    """The project's priorities as they stand, written again by raw COPY into a bare table: seconds and rows.

    `seconds`: in the format the issue's baseline was measured in (probabilities as JSON objects with every label
    key, text COPY), a fixed yardstick of the machine's speed; `array_seconds`: as they are stored now (real[] in
    the version's label order, binary COPY), the floor of the write itself.
    """
    import io

    from django.db import connection, transaction

    from learning.models import PriorityLabelKeys, QueuePriority

    table = QueuePriority._meta.db_table
    keys = PriorityLabelKeys._meta.db_table
    as_objects = (
        "SELECT q.document_id, q.score, q.model_version, "
        "coalesce((SELECT jsonb_object_agg(u.k, round(u.p::numeric, 4)) "
        "FROM unnest(ARRAY(SELECT jsonb_array_elements_text(k.label_keys)), q.probabilities) u(k, p) "
        "WHERE u.k IS NOT NULL AND u.p IS NOT NULL), '{}') "
        f"FROM {table} q LEFT JOIN {keys} k "
        f"ON k.project_id = q.project_id AND k.model_version = q.model_version WHERE q.project_id = {int(project_id)}"
    )
    as_stored = (
        f"SELECT document_id, score, model_version, probabilities FROM {table} WHERE project_id = {int(project_id)}"
    )
    text, binary = io.StringIO(), io.BytesIO()
    with connection.cursor() as cursor:
        cursor.copy_expert(f"COPY ({as_objects}) TO STDOUT", text)
        cursor.copy_expert(f"COPY ({as_stored}) TO STDOUT WITH (FORMAT binary)", binary)
        cursor.execute("DROP TABLE IF EXISTS bench_priority_copy")
    timings = {}
    for name, buffer, columns, options in (
        ("seconds", text, "probabilities jsonb", ""),
        ("array_seconds", binary, "probabilities real[]", " WITH (FORMAT binary)"),
    ):
        buffer.seek(0)
        started = time.perf_counter()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE bench_priority_copy (document_id bigint, score double precision, model_version integer, "
                f"{columns})"
            )
            cursor.copy_expert(f"COPY bench_priority_copy FROM STDIN{options}", buffer)
            rows = cursor.rowcount
        timings[name] = time.perf_counter() - started
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE bench_priority_copy")
    return {**timings, "rows": rows}


def run_project(project_id: int):
    from annotation.models import Project

    return Project.objects.get(pk=project_id)


def fast_loop(
    bench: Bench, pool: int, *, real_embeddings: bool, rounds_count: int = FAST_ROUNDS, profile: Path | None = None
) -> dict:
    import numpy as np

    from annotation.models import Document
    from learning import services

    project = bench.project(
        f"Fast loop, {pool} documents", fast_retrain_every=NEW_LABELS_PER_ROUND, slow_retrain_every=1_000_000
    )
    started = time.perf_counter()
    bench.add_pool(project, pool)
    bench.add_labelled(project, bench.labelled[:SEED_LABELS])
    setup = time.perf_counter() - started
    base = services._held_classifier(None, project)
    ids = np.fromiter(
        Document.objects.filter(project=project).order_by("pk").values_list("pk", flat=True), dtype=np.int64
    )
    started = time.perf_counter()
    if real_embeddings:
        services.embeddings_for(project_id=project.pk, body_id=base.body_id, document_ids=ids, encode=base.encode)
        how = "encoded"
    else:
        labelled = np.fromiter(
            Document.objects.filter(project=project, status="labeled").values_list("pk", flat=True), dtype=np.int64
        )
        services.embeddings_for(project_id=project.pk, body_id=base.body_id, document_ids=labelled, encode=base.encode)
        rng = np.random.default_rng(0)
        pool_ids = np.setdiff1d(ids, labelled)
        for chunk in np.array_split(pool_ids, max(1, len(pool_ids) // 25_000)):
            vectors = rng.standard_normal((len(chunk), 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            services._shard_write(project.pk, base.body_id, chunk, vectors)
        how = "seeded (random unit vectors; labelled documents encoded)"
    embedding_seconds = time.perf_counter() - started
    print(f"pool {pool}: set up in {setup:.1f} s, embeddings {how} in {embedding_seconds:.1f} s", flush=True)
    rounds, baselines = [], []
    for round_number in range(rounds_count):
        bench.label_queued(project, NEW_LABELS_PER_ROUND)
        if profile is not None:
            import cProfile

            profiler = cProfile.Profile()
            result = profiler.runcall(run_loop, project.pk)
            profile.mkdir(parents=True, exist_ok=True)
            profiler.dump_stats(profile / f"fast-{pool}-round{round_number + 1}.prof")
        else:
            result = run_loop(project.pk)
        rounds.append(result)
        baseline = raw_copy_baseline(project.pk)
        baselines.append(baseline)
        print(
            f"  round {round_number + 1}: {result['seconds']:.2f} s {result['timings']}; raw COPY of "
            f"{baseline['rows']:,} priorities {baseline['seconds']:.2f} s as JSON objects, "
            f"{baseline['array_seconds']:.2f} s as stored (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    return {
        "pool": pool,
        "baselines": baselines,
        "setup_seconds": setup,
        "embeddings": how,
        "embedding_seconds": embedding_seconds,
        "rounds": rounds,
    }


def slow_loop(bench: Bench, labels: int, *, pool: int, steps: int) -> dict:
    from learning import services

    project = bench.project(f"Slow loop, {labels} labels", slow_retrain_every=labels)
    bench.add_pool(project, pool, offset=labels)
    bench.add_labelled(project, bench.labelled[:labels])
    run = services.training_run_request(project=project, kind="slow", trigger="admin", max_steps=steps)
    started = time.perf_counter()
    run = services.training_run_execute(run_id=run.pk)
    elapsed = time.perf_counter() - started
    if run.status != "succeeded":
        raise SystemExit(f"slow run ended {run.status}: {run.error}")
    print(f"slow loop, {labels} labels: {elapsed:.1f} s {run.timings}", flush=True)
    version = run.model_version
    return {
        "labels": labels,
        "train_labels": version.train_label_count,
        "eval_labels": version.eval_label_count,
        "pool": pool,
        "steps": steps,
        "seconds": elapsed,
        "timings": run.timings,
        "macro_f1": version.macro_f1,
    }


def throughput(bench: Bench, count: int, rounds: int) -> dict:
    """Texts per second: the cache path (DB read, chunked encode, shard writes) against plain encode."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from annotation.models import Document
    from learning import services
    from learning.ml.classifier import default_base_model

    project = bench.project("Throughput")
    bench.add_pool(project, count * rounds, offset=0)
    ids = np.fromiter(
        Document.objects.filter(project=project).order_by("pk").values_list("pk", flat=True), dtype=np.int64
    )
    texts = dict(Document.objects.filter(project=project).values_list("pk", "text"))
    base = services._held_classifier(None, project)
    plain_model = SentenceTransformer(default_base_model(), device="cpu")
    plain, cached = 0.0, 0.0
    for r in range(rounds):
        chunk = ids[r * count : (r + 1) * count]
        started = time.perf_counter()
        plain_model.encode([texts[int(i)] for i in chunk], batch_size=32, show_progress_bar=False)
        plain += time.perf_counter() - started
        started = time.perf_counter()
        services.embeddings_for(
            project_id=project.pk, body_id=f"bench-throughput-{r}", document_ids=chunk, encode=base.encode
        )
        cached += time.perf_counter() - started
    n = count * rounds
    return {"texts": n, "plain_per_second": n / plain, "cache_per_second": n / cached, "ratio": plain / cached}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({cpu}), load average at start {load} (other work slows every figure)"


def phase(timings: dict, *keys: str) -> float:
    return sum(timings.get(key, 0.0) for key in keys)


def markdown(results: dict) -> str:
    lines = [
        "# Benchmark: the learning loop",
        "",
        f"Measured {results['date']} on {results['machine']}.",
        "",
        "```",
        results["command"],
        "```",
        "",
        "The script builds its own database (`docket_bench_learning`, dropped and recreated) and a temporary",
        "ARTIFACT_DIR, and calls the services a Celery worker calls (`training_on_labels_changed`, then",
        "`training_run_execute`) in one process: the broker hop is not included. Labelled texts are OPP-115",
        "segments with one category (12 labels, single-label project); queued documents are OPP-115 segments",
        "cycled with a distinguishing suffix. Promotion policy `always`, so every run rescores the whole pool.",
        "Python imports of torch/transformers/setfit, paid once per worker process: "
        f"{results['import_seconds']:.1f} s.",
        "",
        "## Fast loop: labels in, pool rescored",
        "",
        f"Each round: {NEW_LABELS_PER_ROUND} queued documents get a reviewer's label (starting from {SEED_LABELS}",
        "labelled ones), then `labels_changed` asks for a fast run and the run refits the head on cached",
        "embeddings, evaluates, saves the version in SetFit format (body files hard-linked to the previous",
        "version's), scores every queued document and upserts all their QueuePriority rows in the switching",
        f"transaction. {results['rounds']} rounds per pool; the first round of the first pool also loads the base"
        " body. Beside each round, the same priorities are written again by raw COPY into a bare table (no index,",
        "no constraint, nothing built in Python): PostgreSQL's floor for the write, in the same minute.",
        "",
        "| queued documents | embeddings | median wall time | rounds (s) | raw COPY of the priorities (s) |"
        " loop / COPY | read labels | head fit + evaluate | save version | score pool (read cache, predict, rank) |"
        " switch + write priorities |",
        "| ---: | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in results["fast"]:
        rounds = entry["rounds"]
        median = statistics.median(r["seconds"] for r in rounds)
        copies = [b["seconds"] for b in entry["baselines"]]
        last = rounds[-1]["timings"]
        lines.append(
            f"| {entry['pool']:,} | {entry['embeddings'].split(' (')[0]} | {median:.2f} s | "
            + ", ".join(f"{r['seconds']:.2f}" for r in rounds)
            + " | "
            + ", ".join(f"{c:.2f}" for c in copies)
            + f" | {median / statistics.median(copies):.1f}x"
            + f" | {phase(last, 'read_labels'):.2f} | {phase(last, 'fit_head', 'evaluate', 'compare'):.2f} |"
            f" {phase(last, 'save'):.2f} | {phase(last, 'score_pool'):.2f} | {phase(last, 'switch'):.2f} |"
        )
    lines += [
        "",
        "Phase columns are the last round's, in seconds. Embeddings were put in the cache before the rounds: "
        + "; ".join(
            f"{e['pool']:,} documents {e['embeddings']} in {e['embedding_seconds']:.1f} s" for e in results["fast"]
        )
        + ". Random pool vectors (encoding 100,000 texts takes ~25 minutes on two idle cores) change no timing,",
        "only the model's scores; the cost of encoding is in the throughput table below.",
    ]
    if results["slow"]:
        lines += _slow_section(results)
    if results.get("throughput"):
        lines += _throughput_section(results["throughput"])
    lines += [
        "",
        "## Reading the figures",
        "",
        "- The fast loop on 100,000 queued documents is dominated by writing every QueuePriority row (COPY into",
        "  a temporary table, one `INSERT ... ON CONFLICT`, foreign keys checked at commit) and by reading the",
        "  pool's ids and cached vectors; the head fit is well under a second. Reviewers are not blocked",
        "  meanwhile: the switch holds only the project's LearningState row, and the queue reads the previous",
        "  priorities until the commit.",
        "- The slow loop costs fine-tuning steps times seconds per step, plus re-embedding every labelled and",
        "  queued document at the encoding rate. On a real 100,000-document pool the re-embedding dominates",
        "  (100,000 / texts per second), which is why it runs in shards of 2,048 with progress and resumes from",
        "  the last finished shard if its worker dies.",
        "- Encoding rates fall far below the 60-80 texts/s of two idle cores when other work shares the machine",
        "  (see the load average above); the ratio between the two paths, measured side by side, is the comparison.",
        "",
    ]
    return "\n".join(lines)


def _slow_section(results: dict) -> list[str]:
    lines = [
        "",
        "## Slow loop: body fine-tuned, pool re-embedded, switched",
        "",
        f"Body fine-tuning capped at {results['slow'][0]['steps']} steps of 16 pairs (`TrainingRun.max_steps`;"
        " the default cap is 100),",
        f"then every labelled and queued document ({results['slow'][0]['pool']:,} queued) is re-embedded with the"
        " new body in",
        "shards of 2,048, the head is fitted, the version saved and the pool rescored.",
        "",
        "| labels | training / evaluation | wall time | fine-tune | re-embed | head + evaluate | save |"
        " score + switch | macro-F1 (eval) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in results["slow"]:
        t = entry["timings"]
        lines.append(
            f"| {entry['labels']} | {entry['train_labels']} / {entry['eval_labels']} | {entry['seconds']:.1f} s |"
            f" {phase(t, 'fine_tune'):.1f} | {phase(t, 'embed'):.1f} |"
            f" {phase(t, 'fit_head', 'evaluate', 'compare'):.1f} | {phase(t, 'save'):.1f} |"
            f" {phase(t, 'score_pool', 'switch'):.1f} | {entry['macro_f1']:.3f} |"
        )
    return lines


def _throughput_section(th: dict) -> list[str]:
    return [
        "",
        "## Pool embedding throughput",
        "",
        f"{th['texts']:,} OPP-115 texts, in alternating rounds so neighbours' load hits both alike: plain",
        "`SentenceTransformer.encode(batch_size=32)` against Docket's cache path (`learning.services.embeddings_for`:",
        "texts read from PostgreSQL, encoded in chunks with progress, each chunk written as an .npz shard and",
        "indexed in EmbeddingShard).",
        "",
        "| path | texts/s |",
        "| --- | ---: |",
        f"| plain SentenceTransformer.encode | {th['plain_per_second']:.1f} |",
        f"| chunked cache path | {th['cache_per_second']:.1f} |",
        f"| ratio (cache / plain) | {th['ratio']:.2f} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--queued", "--pools", dest="pools", default="10000,100000", help="queued documents per fast-loop pool"
    )
    parser.add_argument("--rounds", type=int, default=FAST_ROUNDS, help="fast-loop rounds per pool")
    parser.add_argument("--fast-only", action="store_true", help="only the fast loop: no slow loop, no throughput")
    parser.add_argument("--slow-labels", default="100,400")
    parser.add_argument(
        "--encode-up-to",
        type=int,
        default=0,
        help="really encode pools up to this size (others are seeded with random vectors)",
    )
    parser.add_argument("--slow-steps", type=int, default=10, help="cap on body fine-tuning steps")
    parser.add_argument("--slow-pool", type=int, default=100, help="queued documents in the slow-loop projects")
    parser.add_argument("--throughput-texts", type=int, default=100, help="texts per throughput round")
    parser.add_argument("--throughput-rounds", type=int, default=2)
    parser.add_argument("--write", type=Path, help="write the markdown report here")
    parser.add_argument("--profile", type=Path, help="cProfile each fast-loop round into this folder (.prof files)")
    args = parser.parse_args()

    started = time.perf_counter()
    import setfit  # noqa: F401  (timed: what a fresh worker pays before its first training)

    import_seconds = time.perf_counter() - started
    recreate_database(DB_NAME)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    labelled, texts = load_segments()
    bench = Bench(labelled, texts)
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": "nice .venv/bin/python benchmarks/learning_loop.py " + " ".join(sys.argv[1:]),
        "import_seconds": import_seconds,
        "rounds": args.rounds,
        "fast": [],
        "slow": [],
    }
    for pool in [int(p) for p in args.pools.split(",") if p]:
        results["fast"].append(
            fast_loop(
                bench,
                pool,
                real_embeddings=pool <= args.encode_up_to,
                rounds_count=args.rounds,
                profile=args.profile,
            )
        )
    if not args.fast_only:
        for labels in [int(n) for n in args.slow_labels.split(",") if n]:
            results["slow"].append(slow_loop(bench, labels, pool=args.slow_pool, steps=args.slow_steps))
        results["throughput"] = throughput(bench, args.throughput_texts, args.throughput_rounds)
    print(json.dumps(results, indent=2, default=str))
    if args.write:
        args.write.write_text(markdown(results), encoding="utf-8")
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
