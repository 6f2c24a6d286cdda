"""Re-embedding a pool after a body fine-tune with 1 and with 2 Celery worker processes (concurrency 1 each).

    nice -n 10 .venv/bin/python benchmarks/reembedding.py [--documents 20000] [--workers 1 2] [--shard-size 512]
    nice -n 10 .venv/bin/python benchmarks/reembedding.py --documents 20000 --setup-only   # time the setup alone

Uses its own PostgreSQL database (docket_bench_reembed, dropped and recreated), a temporary artifact store and
the broker in BENCH_BROKER_URL (default redis://127.0.0.1:6379/13). It imports `--documents` demo texts
(each with a distinct suffix) into one project, writes a re-embedding plan for a body as a fine-tune leaves it
(learning/services/reembedding.py), starts the workers (each with a local directory of its own, all sharing the
artifact store), sends one `embed_shards` task per worker and times until every document's embedding is
stored. Each configuration starts from an empty cache; the one-worker run is the baseline of the two-worker run.
The setup (database, documents, the body loaded and planned) is timed and printed before the runs.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench_setup import configure_django, recreate_database, result_write

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = "docket_bench_reembed"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
ARTIFACTS = Path(tempfile.mkdtemp(prefix="docket-bench-reembed-"))


def start_workers(count: int, queue: str, env: dict) -> list[subprocess.Popen]:
    workers = []
    for index in range(count):
        local = ARTIFACTS.parent / f"{ARTIFACTS.name}-local-{index}"
        local.mkdir(exist_ok=True)
        command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--concurrency=1"]
        command += ["-Q", queue, "-n", f"{queue}-{index}@%h", "--without-gossip", "--without-mingle"]
        command += ["--loglevel=WARNING"]
        log = (ARTIFACTS.parent / f"{ARTIFACTS.name}-worker-{index}.log").open("w")
        worker_env = {**env, "DOCKET_VAR_DIR": str(local)}
        workers.append(subprocess.Popen(command, cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT))
    return workers


def wait_for_workers(queue: str, count: int) -> None:
    from config.celery import app

    deadline = time.monotonic() + 300
    names = [f"{queue}-{index}@{os.uname().nodename}" for index in range(count)]
    while time.monotonic() < deadline:
        answered = app.control.ping(destination=names, timeout=2.0)
        if len(answered) == count:
            return
    sys.exit(f"workers {names} did not answer within 300 s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shard-size", type=int, default=512)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--setup-only", action="store_true", help="time the setup, then stop")
    args = parser.parse_args()
    setup: dict[str, float] = {}
    clock = time.perf_counter()
    recreate_database(DB_NAME)
    environment = {"DOCKET_ARTIFACT_DIR": str(ARTIFACTS), "DOCKET_EMBED_SHARD_SIZE": str(args.shard_size)}
    configure_django(DATABASE_URL, **environment)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    setup["database_s"], clock = round(time.perf_counter() - clock, 1), time.perf_counter()

    import numpy as np

    from annotation.models import Document
    from annotation.services.imports import content_hash
    from annotation.services.projects import project_create
    from learning import tasks
    from learning.ml.classifier import Classifier
    from learning.models import EmbeddingShard
    from learning.services import reembedding

    taxonomy = json.loads((ROOT / "annotation/demo/taxonomy.json").read_text())
    project = project_create(name="Re-embedding benchmark", labels=taxonomy["labels"])
    rows = [json.loads(line) for line in (ROOT / "annotation/demo/documents.jsonl").open()]
    texts = [f"{rows[i % len(rows)]['text']} (ref {i})" for i in range(args.documents)]
    Document.objects.bulk_create(
        [Document(project=project, text=t, content_hash=content_hash(t)) for t in texts], batch_size=2000
    )
    ids = np.asarray(sorted(project.documents.values_list("pk", flat=True)), dtype=np.int64)
    setup["documents_s"], clock = round(time.perf_counter() - clock, 1), time.perf_counter()
    classifier = Classifier.create([label["key"] for label in taxonomy["labels"]])
    setup["load_body_s"] = round(time.perf_counter() - clock, 1)
    print(json.dumps({"setup": {"documents": len(ids), **setup}}), flush=True)
    if args.setup_only:
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
        return
    env = {**os.environ}
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "documents": args.documents,
        "shard_size": args.shard_size,
        "cores": os.cpu_count(),
        "load_average_start": [round(x, 1) for x in os.getloadavg()],
        "setup": setup,
        "runs": {},
    }
    for count in args.workers:
        EmbeddingShard.objects.filter(project=project).delete()
        shutil.rmtree(ARTIFACTS / "embeddings", ignore_errors=True)
        plan = reembedding.plan_write(project_id=project.pk, run_id=count, classifier=classifier, document_ids=ids)
        queue = f"bench-embed-{uuid.uuid4().hex[:8]}"
        workers = start_workers(count, queue, env)
        try:
            wait_for_workers(queue, count)
            started = time.perf_counter()
            relative = str(plan.relative_to(ARTIFACTS))
            for _ in range(count):
                tasks.embed_shards.apply_async((relative,), queue=queue)
            while True:
                stored = sum(EmbeddingShard.objects.filter(project=project).values_list("document_count", flat=True))
                if stored >= len(ids):
                    break
                time.sleep(0.5)
            seconds = time.perf_counter() - started
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=60)
            for index in range(count):
                shutil.rmtree(ARTIFACTS.parent / f"{ARTIFACTS.name}-local-{index}", ignore_errors=True)
        result["runs"][f"workers_{count}"] = {
            "seconds": round(seconds, 1),
            "documents_per_s": round(len(ids) / seconds, 1),
        }
        print(json.dumps(result["runs"]), flush=True)
    runs = result["runs"]
    if "workers_1" in runs and "workers_2" in runs:
        result["speed_up_2_over_1"] = round(runs["workers_1"]["seconds"] / runs["workers_2"]["seconds"], 2)
    result_write(result, args.write)
    shutil.rmtree(ARTIFACTS, ignore_errors=True)


if __name__ == "__main__":
    main()
