"""The review queue under load: 1, 4 and 16 reviewers run the labeling page's get-next + submit loop over HTTP.

    .venv/bin/python benchmarks/load_review_queue.py [--documents 100000] [--reviewers 1,4,16] [--seconds 15]
        [--scored] [--workers 2] [--threads 4] [--preload] [--json results.json]
        [--in-process N [--profile PATH]]

Uses its own database (docket_bench_queue by default; dropped and recreated unless --keep-db) with one project of
`--documents` documents bulk-inserted, and starts gunicorn on 127.0.0.1 as docs/deploy.md runs it (2 x 4 threads).
Each simulated reviewer gets a logged-in session, opens the labeling page (for its CSRF cookie) and then, in its
own process, does exactly what the page does: POST /projects/<id>/queue/next with the document on screen as `after`
(the prefetch), then POST /projects/<id>/documents/<doc>/annotate with a fresh submission id, session cookie and
CSRF header. With --think 0 every reviewer submits the moment a document arrives: a stress test of throughput. With
--think N each one spends N seconds on a document first on average (0.5-1.5 N, each reviewer starting at its own
moment; --lockstep makes it exactly N, all together), as people do (they take several), which measures the latency
a reviewer actually waits for while 1, 4 or 16 colleagues work at the same time.

Each level is bounded by --seconds and --max-loops. The baseline, measured in the same run at the same
concurrency, is GET /accounts/login/ (a template render, no database), so figures read as ratios. Afterwards
the database is checked: no document given to two reviewers, no acknowledged answer missing.
Loopback only: the script refuses any other host.
"""

import argparse
import hashlib
import http.client
import json
import multiprocessing
import os
import platform
import queue
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

from bench_setup import backend_cpu, configure_django, cpu_seconds, recreate_database

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HOST = "127.0.0.1"
LABEL_KEYS = ["first_party", "third_party", "user_choice", "data_retention", "data_security", "other"]
CLAUSES = [
    "We share your device identifiers with analytics partner {n} to measure how the app is used.",
    "Support chat transcripts for case {n} are kept for 18 months and then deleted.",
    "Customer {n} asks for a copy of every record we hold about them.",
    "You can switch off personalised offers for account {n} under Settings > Privacy.",
    "Card numbers in batch {n} are encrypted at rest with keys held in a hardware security module.",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/docket_bench_queue")
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--reviewers", default="1,4,16", help="comma-separated concurrency levels")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each measured level")
    parser.add_argument("--baseline-seconds", type=float, default=5.0)
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--max-loops", type=int, default=20_000, help="cap on get-next + submit loops per level")
    parser.add_argument("--scored", action="store_true", help="give every document a queue priority first")
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="seconds each reviewer spends on a document before submitting (0: a stress test)",
    )
    parser.add_argument(
        "--lockstep",
        action="store_true",
        help="every reviewer reads for exactly --think seconds, all starting together (a thundering herd)",
    )
    # As docs/deploy.md runs it (deploy/docket-web.service): 2 workers of 4 threads, each loading Django itself.
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (1: sync workers)")
    parser.add_argument(
        "--preload",
        action="store_true",
        help="load Django and every view once in gunicorn's master before forking (not how docs/deploy.md runs it)",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--keep-db", action="store_true", help="reuse the database: reset the project instead")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--in-process",
        type=int,
        default=0,
        metavar="N",
        help="instead of the HTTP levels: N get-next + submit loops of one reviewer through Django's test client in "
        "this process, with each request's wall time, this process's CPU time and its SQL queries",
    )
    parser.add_argument("--profile", metavar="PATH", help="with --in-process: also profile (cProfile) into PATH.*")
    return parser.parse_args()


# --- Set-up: database, project, documents, reviewers -----------------------------------------------------------


def set_up(args: argparse.Namespace) -> tuple[int, list[tuple[str, str]]]:
    """The benchmark project with its documents and reviewers; returns its id and (username, session key) pairs."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.db import transaction

    from annotation.models import (
        Annotation,
        Document,
        Label,
        Lease,
        Membership,
        Project,
        Skip,
        Taxonomy,
    )
    from learning.models import PriorityLabelKeys, QueuePriority

    call_command("migrate", verbosity=0)
    name = "Review queue benchmark"
    project = Project.objects.filter(name=name).first()
    if project is not None and project.documents.count() == args.documents:
        Project.objects.filter(pk=project.pk).update(overlap_rate=0.0, gold_rate=0.0)
        Annotation.objects.filter(document__project=project).delete()
        Lease.objects.filter(project=project).delete()
        Skip.objects.filter(document__project=project).delete()
        Document.objects.filter(project=project).update(status=Document.Status.QUEUED)
        QueuePriority.objects.filter(project=project).delete()
    else:
        if project is not None:
            project.delete()
        with transaction.atomic():
            # Overlap and gold checks send some labeled documents to a second reviewer on purpose; they are off
            # here, so every document is answered exactly once and a second answer can only mean a duplicate.
            project = Project.objects.create(
                name=name,
                description="Created by benchmarks/load_review_queue.py",
                overlap_rate=0.0,
                gold_rate=0.0,
            )
            taxonomy = Taxonomy.objects.create(project=project)
            Label.objects.bulk_create(
                Label(taxonomy=taxonomy, key=key, name=key.replace("_", " ").title(), order=i, shortcut=str(i + 1))
                for i, key in enumerate(LABEL_KEYS)
            )
        started = time.monotonic()
        batch = []
        for n in range(args.documents):
            text = CLAUSES[n % len(CLAUSES)].format(n=n)
            batch.append(
                Document(
                    project=project,
                    external_id=f"bench-{n}",
                    text=text,
                    content_hash=hashlib.sha256(text.encode()).hexdigest(),
                    metadata={"kind": "policy_clause", "source_title": f"Bench notice {n // 50}", "region": "EU"},
                )
            )
            if len(batch) == 5_000:
                Document.objects.bulk_create(batch)
                batch = []
        Document.objects.bulk_create(batch)
        print(f"  {args.documents} documents inserted in {time.monotonic() - started:.1f} s", flush=True)
    if args.scored:
        rng = random.Random(7)
        rows = []
        keys = PriorityLabelKeys.record(project.pk, 1, list(LABEL_KEYS))
        for document_id in Document.objects.filter(project=project).values_list("id", flat=True).iterator():
            probabilities = [round(rng.random(), 3) for _ in keys]
            rows.append(
                QueuePriority(
                    document_id=document_id,
                    project=project,
                    score=rng.random(),
                    model_version=1,
                    probabilities=probabilities,
                )
            )
        QueuePriority.objects.bulk_create(rows, batch_size=5_000)
    _analyze()

    # Sessions are made here rather than through the login form: 16 logins at once spend half a minute of
    # this machine in the password hasher (1,000,000 PBKDF2 rounds each), which is not what is measured.
    reviewers = []
    for i in range(max(int(n) for n in args.reviewers.split(","))):
        user, _ = get_user_model().objects.get_or_create(username=f"bench-reviewer-{i}")
        Membership.objects.get_or_create(project=project, user=user)
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "annotation.sign_in.PeopleOnlyBackend"  # as a sign-in through the form
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        reviewers.append((user.username, session.session_key))
    return project.pk, reviewers


def _analyze() -> None:
    """Fresh planner statistics and no dead rows, as autovacuum would leave them on a server that has been up a
    while. Each --keep-db reset rewrites 100,000 documents; without the VACUUM every run on the same database
    scanned more dead rows than the one before (PostgreSQL's CPU per label grew run after run)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


# --- The server ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    """gunicorn as deploy/docket-web.service starts it (config.wsgi, workers summing their metrics in a directory
    of their own), with the benchmark's workers, threads and optional preload."""
    application = ["--pythonpath", str(ROOT / "benchmarks"), "load_review_queue:preloaded_application()", "--preload"]
    metrics = Path(tempfile.mkdtemp(prefix="docket-bench-metrics-"))
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        *(application if args.preload else ["config.wsgi:application"]),
        "--bind",
        f"{HOST}:{port}",
        "--workers",
        str(args.workers),
        "--worker-class",
        "gthread" if args.threads > 1 else "sync",
        "--threads",
        str(args.threads),
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics)})
    server.metrics_dir = metrics
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status, _, _ = Client(port).request("GET", "/accounts/login/")
            if status == 200:
                return server
        except OSError:
            time.sleep(0.3)
    server.terminate()
    sys.exit("gunicorn did not answer within 60 s")


def preloaded_application():
    """gunicorn's application with --preload: Django with its URLconf imported in the master process.

    Django imports the URLconf at a worker's first request, and with it every view module; here that
    includes the ML stack (learning.services, via the models pages and the predict API), about 10 s per
    worker on this machine. Done once before forking, the workers start warm and share those pages.
    """
    from django.core.wsgi import get_wsgi_application
    from django.urls import get_resolver

    application = get_wsgi_application()
    get_resolver().url_patterns  # noqa: B018 (imported for its side effect)
    return application


# --- A simulated reviewer ------------------------------------------------------------------------------------


class Client:
    """A browser's worth of HTTP: cookies kept, one connection per request (what gunicorn gives)."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: dict | str | None = None) -> tuple[int, bytes, float]:
        headers = {"Host": f"{HOST}:{self.port}", "Accept": "application/json"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if isinstance(body, dict):
            body = json.dumps(body)
            headers["Content-Type"] = "application/json"
        elif isinstance(body, str):
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if method == "POST" and "csrftoken" in self.cookies:
            headers["X-CSRFToken"] = self.cookies["csrftoken"]
            headers["Referer"] = f"http://{HOST}:{self.port}/"
        connection = http.client.HTTPConnection(HOST, self.port, timeout=30)
        started = time.perf_counter()
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        elapsed = time.perf_counter() - started
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return response.status, data, elapsed

    def open_page(self, session_key: str, project_id: int) -> None:
        """Arrive on the labeling page with a logged-in session, as a browser would: it sets the CSRF cookie."""
        self.cookies["sessionid"] = session_key
        status, _, _ = self.request("GET", f"/projects/{project_id}/label/")
        if status != 200 or "csrftoken" not in self.cookies:
            raise RuntimeError(f"the labeling page answered {status}")


@dataclass(frozen=True)
class Pace:
    """How long a simulated reviewer reads each document.

    People are not in step. Unless `lockstep`, each reading time is drawn from 0.5-1.5 x `mean` and each
    reviewer starts at a random moment within the first `mean` seconds, so sixteen reviewers do not all submit
    in the same millisecond every `mean` seconds (which measures a thundering herd, not a review team).
    """

    mean: float
    lockstep: bool = False

    def start_delay(self, rng: random.Random) -> float:
        return 0.0 if self.lockstep else rng.uniform(0.0, self.mean)

    def reading_time(self, rng: random.Random) -> float:
        return self.mean if self.lockstep else rng.uniform(0.5 * self.mean, 1.5 * self.mean)


def reviewer_loop(port, project_id, username, session_key, max_loops, pace, *, start_at, seconds, results) -> None:
    """Label until time or loops run out, like the page: show, prefetch the next, submit the current."""
    rng = random.Random(username)
    client = Client(port)
    client.open_page(session_key, project_id)
    next_path = f"/projects/{project_id}/queue/next"
    timings: dict[str, list[float]] = {"next": [], "annotate": []}
    offered: list[int] = []
    acknowledged: list[int] = []
    errors: list[str] = []
    tickets: dict[int, str] = {}

    def ask(after):
        status, data, elapsed = client.request("POST", next_path, {"after": after} if after else {})
        timings["next"].append(elapsed)
        if status != 200:
            errors.append(f"next {status}: {data[:120]!r}")
            return None
        document = json.loads(data)["document"]
        if document is not None:
            offered.append(document["id"])
            tickets[document["id"]] = document["ticket"]  # the page sends it back with its answer
            return document["id"]
        return None

    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.monotonic() + seconds
    time.sleep(pace.start_delay(rng))
    cpu_started = time.process_time()  # this client's own CPU: on 2 cores it is taken from the server
    current = ask(None)
    upcoming = ask(current) if current else None
    loops = 0
    while current is not None and time.monotonic() < deadline and loops < max_loops:
        time.sleep(pace.reading_time(rng))  # reading the document; the page has already prefetched the next one
        body = {
            "labels": [random.choice(LABEL_KEYS)],
            "submission_id": str(uuid.uuid4()),
            "seconds_spent": 3.0,
            "ticket": tickets.pop(current),
        }
        status, data, elapsed = client.request("POST", f"/projects/{project_id}/documents/{current}/annotate", body)
        timings["annotate"].append(elapsed)
        if status == 200:
            acknowledged.append(current)
        else:
            errors.append(f"annotate {status}: {data[:120]!r}")
        loops += 1
        current = upcoming
        upcoming = ask(current) if current else None
    results.put(
        {
            "username": username,
            "timings": timings,
            "offered": offered,
            "acknowledged": acknowledged,
            "errors": errors,
            "client_cpu": time.process_time() - cpu_started,
        }
    )


def baseline_loop(port, max_loops, pace, index, *, start_at, seconds, results) -> None:
    rng = random.Random(f"baseline-{index}")
    half = Pace(pace.mean / 2, pace.lockstep)  # two requests per document in the reviewers' loop, one here
    client = Client(port)
    timings = []
    time.sleep(max(0.0, start_at - time.time()))
    deadline = time.monotonic() + seconds
    time.sleep(half.start_delay(rng))
    while time.monotonic() < deadline and len(timings) < max_loops:
        time.sleep(half.reading_time(rng))
        status, _, elapsed = client.request("GET", "/accounts/login/")
        if status == 200:
            timings.append(elapsed)
    results.put({"timings": timings})


def run_level(target, count: int, seconds: float, build_args) -> tuple[list[dict], float]:
    """Run `count` copies of `target` in their own processes, started together; gather what each reports."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.time() + 2.0  # every process logged in and waiting before the clock starts
    processes = [
        context.Process(
            target=target, args=build_args(i), kwargs={"start_at": start_at, "seconds": seconds, "results": results}
        )
        for i in range(count)
    ]
    for process in processes:
        process.start()
    outputs = []
    deadline = time.monotonic() + seconds + 120
    while len(outputs) < count:
        try:
            outputs.append(results.get(timeout=1.0))
        except queue.Empty:
            if time.monotonic() > deadline or not any(p.is_alive() for p in processes):
                sys.exit(f"{count - len(outputs)} simulated reviewer(s) died without reporting")
    for process in processes:
        process.join(timeout=30)
    return outputs, seconds


# --- CPU accounting: the machine's 2 cores are what the stress figure divides -------------------------------


def server_processes(server: subprocess.Popen) -> set[int]:
    """gunicorn's master and its workers."""
    pids = {server.pid}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == server.pid:
                pids.add(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return pids


def database_processes() -> set[int]:
    """The PostgreSQL backends serving this benchmark's database (the web workers' connections); autovacuum's
    work on the same database is left out."""
    from django.db import connection, connections

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"  # not autovacuum, which the reset before each level sets off
        )
        pids = {row[0] for row in cursor.fetchall()}
    connections.close_all()  # the reviewers are forked from this process next
    return pids


class CpuMeter:
    """CPU used by gunicorn and by this database's PostgreSQL backends between `start()` and `stop()`.

    A backend that ends within the level loses its CPU (connections live for CONN_MAX_AGE, 60 s); one that
    starts within it counts whole. Redis (shared with other work on this machine) is not counted."""

    def __init__(self, server: subprocess.Popen):
        self.server = server

    def start(self) -> None:
        self.web = cpu_seconds(server_processes(self.server))
        self.database = cpu_seconds(database_processes())

    def stop(self) -> dict[str, float]:
        web = cpu_seconds(server_processes(self.server))
        database = cpu_seconds(database_processes())
        return {
            "web": sum(web[pid] - self.web.get(pid, 0.0) for pid in web),
            "database": sum(database[pid] - self.database.get(pid, 0.0) for pid in database),
        }


# --- Figures -------------------------------------------------------------------------------------------------


def in_process(
    project_id: int, username: str, loops: int, json_path: str | None, profile_path: str | None = None
) -> None:
    """One reviewer's loop without HTTP, gunicorn or other reviewers: what a request costs the web process.

    CPU time is this process's own (Django, the driver); wall time adds the database's work and the round trips.
    On a busy machine the CPU time and the query counts are the steadier figures. The baseline, in the same
    loop, is the login page (a template render through the same middleware, no database), as in the HTTP runs.
    Requests carry the CSRF cookie and header as the page sends them. `profile_path`: also profile the measured
    requests (cProfile), one file per kind of request, and print where their time went.
    """
    import cProfile
    import pstats

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST=HOST, enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.get(username=username))
    if client.get(f"/projects/{project_id}/label/").status_code != 200:
        raise RuntimeError("the labeling page did not open")
    csrf = {"HTTP_X_CSRFTOKEN": client.cookies["csrftoken"].value, "HTTP_REFERER": f"http://{HOST}/"}
    visitor = Client(HTTP_HOST=HOST)
    names = ("next", "annotate", "baseline")
    figures: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": [], "queries": []} for name in names}
    profiles = {name: cProfile.Profile() for name in names}
    profiling = False

    def timed(name: str, call):
        with CaptureQueriesContext(connection) as queries:
            if profiling:
                profiles[name].enable()
            wall, cpu = time.perf_counter(), time.process_time()
            response = call()
            figures[name]["wall"].append(time.perf_counter() - wall)
            figures[name]["cpu"].append(time.process_time() - cpu)
            if profiling:
                profiles[name].disable()
        figures[name]["queries"].append(len(queries))
        if response.status_code != 200:
            raise RuntimeError(f"{name} answered {response.status_code}: {response.content[:200]!r}")
        return response

    def post(url: str, body: dict):
        return lambda: client.post(url, data=json.dumps(body), content_type="application/json", **csrf)

    next_url = f"/projects/{project_id}/queue/next"
    shown = timed("next", post(next_url, {})).json()["document"]
    backend_at_start = None
    for i in range(loops + 20):  # the first 20 loops warm the code paths and connections; not counted
        upcoming = timed("next", post(next_url, {"after": shown["id"]})).json()["document"]
        body = {
            "labels": [LABEL_KEYS[i % len(LABEL_KEYS)]],
            "ticket": shown["ticket"],
            "submission_id": str(uuid.uuid4()),
        }
        timed("annotate", post(f"/projects/{project_id}/documents/{shown['id']}/annotate", body))
        timed("baseline", lambda: visitor.get("/accounts/login/"))
        shown = upcoming
        if i == 19:
            for name in figures:
                figures[name] = {"wall": [], "cpu": [], "queries": []}
            profiling = profile_path is not None
            backend_at_start = backend_cpu()
    backend_at_end = backend_cpu()
    result = {"load_average": [round(x, 2) for x in os.getloadavg()]}
    # One connection throughout (CONN_MAX_AGE): its backend's CPU over the measured loops is the database's share.
    if backend_at_start[0] == backend_at_end[0]:
        result["database_cpu_ms_per_label"] = (backend_at_end[1] - backend_at_start[1]) / loops * 1000
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, generic_plans, custom_plans, left(regexp_replace(statement, '\\s+', ' ', 'g'), 90) "
            "FROM pg_prepared_statements ORDER BY name"
        )
        result["prepared_statements"] = [list(row) for row in cursor.fetchall()]
    for name, values in figures.items():
        result[name] = {
            "wall_p50_ms": percentile(values["wall"], 50) * 1000,
            "wall_p95_ms": percentile(values["wall"], 95) * 1000,
            "cpu_p50_ms": percentile(values["cpu"], 50) * 1000,
            "queries": max(values["queries"]),
        }
    base = result["baseline"]["cpu_p50_ms"]
    for name in names:
        row = result[name]
        print(
            f"{name:9} wall p50 {row['wall_p50_ms']:6.1f} ms  p95 {row['wall_p95_ms']:6.1f} ms  "
            f"cpu p50 {row['cpu_p50_ms']:5.1f} ms ({row['cpu_p50_ms'] / base:4.1f}x baseline)  "
            f"queries {row['queries']}",
            flush=True,
        )
    if "database_cpu_ms_per_label" in result:
        print(f"PostgreSQL backend CPU per label (next + submit): {result['database_cpu_ms_per_label']:.2f} ms")
    else:
        print("PostgreSQL backend CPU per label: not measured (the connection was replaced during the loops)")
    print(f"Statements prepared on the connection: {len(result['prepared_statements'])}")
    for name, generic, custom, text in result["prepared_statements"]:
        print(f"  {name}  generic plans {generic:4}  custom plans {custom:4}  {text}")
    print(f"load average {result['load_average']}", flush=True)
    if profile_path:
        for name, profile in profiles.items():
            path = f"{profile_path}.{name}.pstats"
            profile.dump_stats(path)
            print(f"\n--- {name}: {loops} requests, by own time (full profile: {path}) ---")
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    if json_path:
        Path(json_path).write_text(json.dumps({"loops": loops, **result}, indent=2))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def main() -> None:
    args = parse_args()
    if not args.database_url.split("@")[-1].startswith(("127.0.0.1", "localhost", "[::1]")):
        sys.exit("The benchmark runs against a database on this machine only (127.0.0.1).")
    levels = [int(n) for n in args.reviewers.split(",")]
    print(f"Setting up {args.database_url.rsplit('/', 1)[-1]} with {args.documents} documents", flush=True)
    if not args.keep_db:
        recreate_database(args.database_url)
    # Submissions knock on learning.tasks.labels_changed, which goes to the benchmarks' broker; the server gets
    # what docs/deploy.md asks of several web processes: a shared cache (sessions, throttle counts).
    server_environment = {"DOCKET_CACHE_URL": os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/14")}
    if args.in_process:  # metrics as the deployed web processes keep them (see start_server)
        server_environment["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="docket-bench-metrics-")
    configure_django(args.database_url, **server_environment)
    started = time.monotonic()
    project_id, reviewers = set_up(args)
    print(f"  set-up (migrations, documents, reviewers) took {time.monotonic() - started:.1f} s", flush=True)
    from django.db import connections

    connections.close_all()  # the forked reviewers must not share this process's connection
    if args.in_process:
        try:
            in_process(project_id, reviewers[0][0], args.in_process, args.json, args.profile)
        finally:
            shutil.rmtree(server_environment["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
        return

    pace = Pace(args.think, lockstep=args.lockstep)
    port = args.port or free_port()
    server = start_server(args, port)
    meter = CpuMeter(server)
    rows = []
    try:
        # Unmeasured warm-up: every worker loads its code paths once (a first submission in a fresh worker
        # imports learning.tasks, which brings in the ML stack), so the levels below measure steady state.
        print(f"Warm-up: {max(levels)} reviewers for {args.warmup_seconds:.0f} s (not measured)", flush=True)
        outputs, _ = run_level(
            reviewer_loop,
            max(levels),
            args.warmup_seconds,
            lambda i: (port, project_id, *reviewers[i], args.max_loops, Pace(0.0, lockstep=True)),
        )
        warmup_acknowledged = sum(len(out["acknowledged"]) for out in outputs)
        cold_submit = max((t for out in outputs for t in out["timings"]["annotate"]), default=float("nan"))
        print(f"  slowest warm-up submission: {ms(cold_submit)} ms", flush=True)
        for count in levels:
            print(f"Baseline, {count} concurrent client(s)", flush=True)
            outputs, _ = run_level(
                baseline_loop, count, args.baseline_seconds, lambda i: (port, args.max_loops, pace, i)
            )
            base = [t for out in outputs for t in out["timings"]]
            print(
                f"{count} reviewer(s): get-next + submit for {args.seconds:.0f} s, think {args.think:g} s", flush=True
            )
            meter.start()
            outputs, seconds = run_level(
                reviewer_loop,
                count,
                args.seconds,
                lambda i: (port, project_id, *reviewers[i], args.max_loops, pace),
            )
            server_cpu = meter.stop()
            next_times = [t for out in outputs for t in out["timings"]["next"]]
            annotate_times = [t for out in outputs for t in out["timings"]["annotate"]]
            both = next_times + annotate_times
            offered: dict[int, set[str]] = {}
            for out in outputs:
                for document_id in out["offered"]:
                    offered.setdefault(document_id, set()).add(out["username"])
            duplicates = sum(1 for who in offered.values() if len(who) > 1)
            acknowledged = {d for out in outputs for d in out["acknowledged"]}
            errors = [e for out in outputs for e in out["errors"]]
            client_cpu = sum(out["client_cpu"] for out in outputs)
            rows.append(
                {
                    "reviewers": count,
                    "loops": len(annotate_times),
                    "labels_per_s": len(annotate_times) / seconds,
                    "requests_per_s": len(both) / seconds,
                    "next_p50": percentile(next_times, 50),
                    "next_p95": percentile(next_times, 95),
                    "next_p99": percentile(next_times, 99),
                    "annotate_p50": percentile(annotate_times, 50),
                    "annotate_p95": percentile(annotate_times, 95),
                    "annotate_p99": percentile(annotate_times, 99),
                    "all_p95": percentile(both, 95),
                    "baseline_p50": percentile(base, 50),
                    "baseline_p95": percentile(base, 95),
                    "baseline_per_s": len(base) / args.baseline_seconds,
                    # The simulated reviewers' own CPU per label, and their share of the machine's 2 cores.
                    "client_cpu_ms_per_label": client_cpu / max(len(annotate_times), 1) * 1000,
                    "web_cpu_ms_per_label": server_cpu["web"] / max(len(annotate_times), 1) * 1000,
                    "database_cpu_ms_per_label": server_cpu["database"] / max(len(annotate_times), 1) * 1000,
                    "client_cpu_share": client_cpu / (seconds * (os.cpu_count() or 1)),
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                    "duplicates": duplicates,
                    "acknowledged": len(acknowledged),
                    "errors": len(errors),
                    "first_errors": errors[:3],
                }
            )
            print(f"  {json.dumps({k: v for k, v in rows[-1].items() if k != 'first_errors'}, default=str)}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(server.metrics_dir, ignore_errors=True)
        from config.celery import app

        app.control.purge()  # the labels_changed knocks; no worker of this benchmark will ever read them

    from django.db.models import Count

    from annotation.models import Annotation, Document, Lease

    stored = Annotation.objects.filter(document__project_id=project_id)
    twice = Document.objects.filter(project_id=project_id).annotate(n=Count("annotations")).filter(n__gt=1).count()
    acknowledged_total = warmup_acknowledged + sum(row["acknowledged"] for row in rows)
    check = {
        "slowest_warmup_submit_ms": round(cold_submit * 1000, 1),
        "annotations_stored": stored.count(),
        "answers_acknowledged": acknowledged_total,
        "documents_with_two_answers": twice,
        "leases_left": Lease.objects.filter(project_id=project_id).count(),
    }
    print(json.dumps(check))
    report(args, rows, check)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "check": check}, indent=2, default=str))
    if twice or stored.count() != acknowledged_total or any(row["duplicates"] for row in rows):
        sys.exit("FAILED: a document went to two reviewers or an acknowledged answer is missing")


def report(args: argparse.Namespace, rows: list[dict], check: dict) -> None:
    print()
    print(
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs; gunicorn {args.workers} workers x "
        f"{args.threads} threads{' (preloaded)' if args.preload else ''}; {args.documents} documents; "
        f"{'scored' if args.scored else 'unscored'} queue; "
        f"think time {args.think:g} s" + (" (lockstep)" if args.lockstep else " (0.5-1.5x, staggered)")
    )
    print()
    print(
        "| Reviewers | Loops | Labels/s | next p50 / p95 / p99 (ms) | submit p50 / p95 / p99 (ms) "
        "| Baseline p50 / p95 (ms) | p95 ÷ baseline p95 | Duplicates | Errors |"
    )
    print("|---:|---:|---:|---|---|---|---:|---:|---:|")
    for row in rows:
        ratio = row["all_p95"] / row["baseline_p95"] if row["baseline_p95"] else float("nan")
        print(
            f"| {row['reviewers']} | {row['loops']} | {row['labels_per_s']:.0f} "
            f"| {ms(row['next_p50'])} / {ms(row['next_p95'])} / {ms(row['next_p99'])} "
            f"| {ms(row['annotate_p50'])} / {ms(row['annotate_p95'])} / {ms(row['annotate_p99'])} "
            f"| {ms(row['baseline_p50'])} / {ms(row['baseline_p95'])} | {ratio:.1f}× "
            f"| {row['duplicates']} | {row['errors']} |"
        )
    print()
    for row in rows:
        print(
            f"{row['reviewers']} reviewer(s), CPU per label: gunicorn {row['web_cpu_ms_per_label']:.2f} ms, "
            f"PostgreSQL (this database's backends) {row['database_cpu_ms_per_label']:.2f} ms, the simulated "
            f"reviewers {row['client_cpu_ms_per_label']:.2f} ms ({row['client_cpu_share']:.0%} of the machine's "
            f"{os.cpu_count()} CPUs); load average at the end {row['load_average']}"
        )
    print(
        f"After the run: {check['annotations_stored']} annotations stored for {check['answers_acknowledged']} "
        f"acknowledged submissions (warm-up included); {check['documents_with_two_answers']} documents with two "
        f"answers; {check['leases_left']} leases still held (each reviewer's current and prefetched document). "
        f"Slowest warm-up submission: {check['slowest_warmup_submit_ms']} ms."
    )


if __name__ == "__main__":
    main()
