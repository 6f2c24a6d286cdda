"""Predict over HTTP against in-process SetFit: what the API adds, at batches of 1, 16 and 64.

    .venv/bin/python benchmarks/api_predict.py [--repeats 30] [--batches 1 16 64] [--write var/bench/api.md] [--sqlite]
        [--threads 4] [--fresh-connections]

BENCH_CACHE_URL (e.g. redis://127.0.0.1:6379/14) gives the server that shared cache, as deployed (throttle
counts, invalid-key counts); without it the server keeps them in its own memory.

Uses its own database (PostgreSQL docket_bench_api, dropped and recreated; or, with --sqlite, a temporary
SQLite file as `make run` uses) and a temporary artifact directory. It trains a small model on the demo
documents (frozen all-MiniLM-L6-v2 body, fitted head), makes it the project's active version, starts gunicorn
(one worker of 4 threads, the deployed kind; --threads 1: a sync worker) and calls
POST /api/v1/projects/{id}/predict with one httpx client, which keeps the connection when the server does.
The baseline, measured in the same run on the same texts, is `Classifier.predict_proba` called in this
process: the floor any server pays for the model itself. The transport floor, timed in the same loop, is
GET /healthz (a view that does nothing) through the same client, connection, gunicorn and middleware: what
any endpoint pays. It also prints where the added time went. --fresh-connections sends `Connection: close`,
so every call connects again, as a client that keeps no connection.
"""

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_setup import recreate_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = os.environ.get("BENCH_API_DB", "docket_bench_api")
ARTIFACTS = Path(tempfile.mkdtemp(prefix="docket-bench-api-"))
SQLITE = "--sqlite" in sys.argv
DATABASE_URL = f"sqlite:///{ARTIFACTS / 'bench.sqlite3'}" if SQLITE else f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
os.environ.update(
    {
        "DATABASE_URL": DATABASE_URL,
        "DOCKET_DEVELOPMENT": "1",
        "DOCKET_ARTIFACT_DIR": str(ARTIFACTS),
        "DOCKET_API_RATE": "1000000/min",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # What config/wsgi.py gives the web workers, here for both sides: the in-process model runs the same threads.
        "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", "10000"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
)
CACHE_URL = os.environ.get("BENCH_CACHE_URL", "")
if CACHE_URL:
    os.environ["DOCKET_CACHE_URL"] = CACHE_URL
BATCHES = (1, 16, 64)


def demo_rows() -> list[dict]:
    with open(ROOT / "annotation" / "demo" / "documents.jsonl", encoding="utf-8") as rows:
        return [json.loads(line) for line in rows]


def set_up(rows: list[dict]) -> tuple[int, str, Path]:
    """A project with the demo labels, an admin's predict key, and an active model trained on the demo."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from annotation.models import Label, Project, Taxonomy
    from api.services import api_key_create
    from learning.ml.classifier import Classifier, TrainingArgs
    from learning.models import ModelVersion

    labelled = [row for row in rows if len(row.get("labels", [])) == 1]
    keys = sorted({row["labels"][0] for row in labelled})
    admin = get_user_model().objects.create_superuser("bench", "bench@example.org", "bench-password-1")
    project = Project.objects.create(name="Benchmark", created_by=admin)
    taxonomy = Taxonomy.objects.create(project=project)
    Label.objects.bulk_create([Label(taxonomy=taxonomy, key=k, name=k, order=i) for i, k in enumerate(keys)])
    classifier = Classifier.create(keys, args=TrainingArgs(max_steps=0))
    started = time.perf_counter()
    classifier.fit([r["text"] for r in labelled], [r["labels"][0] for r in labelled], fine_tune=False)
    print(f"trained on {len(labelled)} demo documents in {time.perf_counter() - started:.1f} s", flush=True)
    path = classifier.save(ARTIFACTS / "models" / "bench-v1")
    ModelVersion.objects.create(
        project=project,
        number=1,
        status="active",
        kind="fast",
        taxonomy_version=taxonomy.version,
        label_keys=keys,
        artifact_path=str(path.relative_to(ARTIFACTS)),
    )
    token = api_key_create(actor=admin, projects=[project], name="bench", scopes=["predict"]).token
    return project.pk, token, path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, threads: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            # As deploy/docket-web.service: gthread, which keeps a client's connection open between requests
            # (--keep-alive, 2 s); 1 thread is gunicorn's sync worker, which closes it after every answer.
            "--threads",
            str(threads),
            "--timeout",
            "300",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=dict(os.environ),
    )


def timed_alternately(*calls, repeats: int) -> tuple[list[float], ...]:
    """Time the calls in turn, so a neighbour's load on this shared machine hits every side alike."""
    times: tuple[list[float], ...] = tuple([] for _ in calls)
    for _ in range(repeats):
        for call, seconds in zip(calls, times, strict=True):
            started = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - started)
    return times


PARTS = ("model", "app", "connect", "wait")


class Trace:
    """httpx's trace events of one request, as perf_counter times: where the client's time went."""

    def __init__(self) -> None:
        self.moments: dict[str, float] = {}

    def __call__(self, event: str, info: dict) -> None:
        self.moments[event] = time.perf_counter()

    def between(self, first: str, last: str) -> float:
        return (self.moments[last] - self.moments[first]) * 1000

    def span(self, name: str) -> float:
        """Milliseconds of `name` (0 when it did not happen: a kept-alive connection is not connected again)."""
        if f"{name}.started" not in self.moments:
            return 0.0
        return self.between(f"{name}.started", f"{name}.complete")


def worker_rss_mb(server: subprocess.Popen) -> float:
    import psutil

    children = psutil.Process(server.pid).children()
    process = children[0] if children else psutil.Process(server.pid)
    return process.memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="calls per batch size and side")
    parser.add_argument("--write", type=Path, help="also write the results table to this Markdown file")
    parser.add_argument("--sqlite", action="store_true", help="a temporary SQLite database instead of PostgreSQL")
    parser.add_argument(
        "--batches", type=int, nargs="+", default=list(BATCHES), help="batch sizes to measure (default: 1 16 64)"
    )
    parser.add_argument("--threads", type=int, default=4, help="threads of the gunicorn worker (1: a sync worker)")
    parser.add_argument(
        "--fresh-connections",
        action="store_true",
        help="a new TCP connection for every call (Connection: close), as a client that keeps none",
    )
    args = parser.parse_args()

    import logging

    import httpx
    import numpy as np

    if not args.sqlite:
        recreate_database(DB_NAME)
    rows = demo_rows()
    project_id, token, model_path = set_up(rows)
    texts = [row["text"] for row in rows]

    from learning.ml.classifier import Classifier

    logging.getLogger("httpx").setLevel(logging.WARNING)
    local = Classifier.load(model_path)
    port = free_port()
    server = start_server(port, args.threads)
    url = f"http://127.0.0.1:{port}/api/v1/projects/{project_id}/predict"
    try:
        headers = {"Authorization": f"Bearer {token}"}
        if args.fresh_connections:
            headers["Connection"] = "close"
        client = httpx.Client(headers=headers, timeout=300)
        # The transport floor: a view that does nothing (/healthz) through the same client, server and middleware.
        floor_url = f"http://127.0.0.1:{port}/healthz"
        deadline = time.monotonic() + 120
        while True:
            try:
                response = client.post(url, json={"texts": texts[:2]})
                response.raise_for_status()  # also loads the model in the worker
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        rss = worker_rss_mb(server)
        results = []
        for batch in args.batches:
            batch_texts = texts[:batch]
            # Warm both sides on this batch shape before timing.
            client.post(url, json={"texts": batch_texts}).raise_for_status()
            local.predict_proba(batch_texts)
            parts: dict[str, list[float]] = {name: [] for name in PARTS}

            def call_api(bt=batch_texts, parts=parts):
                trace = Trace()
                response = client.post(url, json={"texts": bt}, extensions={"trace": trace}).raise_for_status()
                timing = dict(entry.strip().split(";dur=") for entry in response.headers["Server-Timing"].split(","))
                parts["model"].append(float(timing["model"]))
                parts["app"].append(float(timing["app"]))
                parts["connect"].append(trace.span("connection.connect_tcp"))
                # From the first byte of the request sent to the last header of the answer read.
                parts["wait"].append(
                    trace.between("http11.send_request_headers.started", "http11.receive_response_headers.complete")
                )

            # In this order each API call follows the in-process model, as it always has here, and the floor
            # follows a prediction in the server, as the API's own work after the model does.
            api, floor, own = timed_alternately(
                call_api,
                lambda: client.get(floor_url).raise_for_status(),
                lambda bt=batch_texts: local.predict_proba(bt),
                repeats=args.repeats,
            )
            model_ms = parts["model"]
            # What the API adds around the model, from the same requests: immune to a busy neighbour.
            added = [a * 1000 - m for a, m in zip(api, model_ms, strict=True)]
            got = client.post(url, json={"texts": batch_texts}).json()["results"]
            expected = local.predict_proba(batch_texts)
            assert np.allclose([[r["probabilities"][k] for k in local.labels] for r in got], expected, atol=1e-5)
            total_ms = [a * 1000 for a in api]
            breakdown = {
                "connect": parts["connect"],
                "http_server": [w - a for w, a in zip(parts["wait"], parts["app"], strict=True)],
                "django": [a - m for a, m in zip(parts["app"], parts["model"], strict=True)],
                "client": [t - c - w for t, c, w in zip(total_ms, parts["connect"], parts["wait"], strict=True)],
            }
            api_median, own_median = statistics.median(api), statistics.median(own)
            results.append(
                {
                    "batch": batch,
                    "api_ms": api_median * 1000,
                    "api_p95_ms": float(np.percentile(api, 95)) * 1000,
                    "own_ms": own_median * 1000,
                    "api_texts_per_s": batch / api_median,
                    "own_texts_per_s": batch / own_median,
                    "ratio": api_median / own_median,
                    "added_ms": statistics.median(added),
                    "added_share": statistics.median(x / (a * 1000) for x, a in zip(added, api, strict=True)),
                    "server_model_ms": statistics.median(model_ms),
                    "floor_ms": statistics.median(floor) * 1000,
                    # What Docket's predict adds over the floor, beside the model: each call less the model's time in
                    # the server and the floor's median.
                    "added_over_floor_ms": statistics.median(added) - statistics.median(floor) * 1000,
                    **{f"{name}_ms": statistics.median(values) for name, values in breakdown.items()},
                }
            )
            print(json.dumps(results[-1]), flush=True)
        rss_after = worker_rss_mb(server)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
    report = render(results, rss, rss_after, args.repeats, sum(len(t) for t in texts[:64]) / 64)
    report += f"Load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}.\n"
    print(report)
    if args.write:
        args.write.write_text(report)


def render(results: list[dict], rss: float, rss_after: float, repeats: int, mean_chars: float) -> str:
    lines = [
        "| batch | API median (ms) | API p95 (ms) | in-process median (ms) | API texts/s | in-process texts/s "
        "| API / in-process | added by the API (ms) | added share | floor: /healthz (ms) | added over the floor (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['batch']} | {r['api_ms']:.1f} | {r['api_p95_ms']:.1f} | {r['own_ms']:.1f} | "
            f"{r['api_texts_per_s']:.1f} | {r['own_texts_per_s']:.1f} | {r['ratio']:.3f} | "
            f"{r['added_ms']:.1f} | {r['added_share']:.1%} | {r['floor_ms']:.2f} | {r['added_over_floor_ms']:.2f} |"
        )
    lines += [
        "",
        "Where the added time went (medians of the same calls, ms): connect = the client's TCP connect",
        "(0 on a kept-alive connection); HTTP server = from the request's first byte sent to the answer's",
        "headers read, less the application's own time (gunicorn's parsing and writing, the loopback);",
        "Django = the application less the model (middleware, authentication, throttle, queries, serializers,",
        "JSON); client = httpx building the request and reading the answer.",
        "",
        "| batch | connect | HTTP server | Django | client | model in the server | model in-process |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['batch']} | {r['connect_ms']:.2f} | {r['http_server_ms']:.2f} | {r['django_ms']:.2f} | "
            f"{r['client_ms']:.2f} | {r['server_model_ms']:.1f} | {r['own_ms']:.1f} |"
        )
    database = "SQLite" if SQLITE else "PostgreSQL"
    cache = f"cache {CACHE_URL}" if CACHE_URL else "in-memory cache"
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {database}, {cache}"
    return (
        "\n".join(lines)
        + f"\n\nMedian of {repeats} calls per row; demo texts of {mean_chars:.0f} characters on average; {machine}.\n"
        + f"Web worker resident memory with the model loaded: {rss:.0f} MiB (after the run: {rss_after:.0f} MiB).\n"
    )


if __name__ == "__main__":
    main()
