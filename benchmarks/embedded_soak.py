"""The embedded default under a fast pair of reviewers: `make run`'s configuration, two reviewers answering every
0.2 s for two minutes while the worker trains.

    .venv/bin/python benchmarks/embedded_soak.py [--seconds 120] [--interval 0.2] [--port 8200] [--documents 1600]
        [--no-baseline] [--json results.json] [--keep]

Everything lives in a fresh temporary directory (DOCKET_VAR_DIR), never in a developer's var/: SQLite, the
file-system broker, the file result backend and the model artifacts, exactly as `make run` sets them up. The
script migrates, loads the demo project (`load_demo`), imports `--documents` more unlabeled clauses from the
OPP-115 data set (text only, read from /work/shared/datasets/opp115, written to the temporary directory and
deleted with it) so the queue cannot run dry, then starts a Celery worker (`--concurrency=2`, as `make run`)
and `manage.py runserver` on 127.0.0.1:`--port`.

Two reviewers then do what the labeling page does, over HTTP with a session and the CSRF header: ask for the
next document with the one on screen as `after` (the prefetch), and every `--interval` seconds submit the
document on screen with the ticket it came with. Every answer asks the learning loop for a retraining, so the
worker refits the head every 10 labels, fine-tunes the body every 200 and rescores the queue meanwhile.
Reviewers start once the worker has laid out the queue it was given (up to `--warmup` seconds), as after
`make run`. After `--seconds` they stop and the worker gets up to `--drain` seconds to finish what it holds.

Reported: server errors (HTTP 5xx or no answer), crashed tasks (tasks the worker logged as failed), runs
stuck (training runs still queued or running after the drain, or failed), and saves acknowledged against
answers stored. The goal is 0 / 0 / 0 and acknowledged = stored.

The baseline, in the same run and under the same load, is the SQLite configuration Docket had before (a
rollback journal, transactions that take the write lock at their first write, a 30 s busy timeout), set by a
settings module in the temporary directory; `--no-baseline` skips it. Body fine-tunes are capped at
`--fine-tune-steps` (20; `make run` allows 100, about five minutes on two busy cores) so that several runs
start and end inside the window: more contention for the database, not less.
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
OPP115 = Path("/work/shared/datasets/opp115/segments.jsonl")
DEMO_PROJECT = "Northwind privacy review (demo)"
REVIEWERS = [("reviewer1", "docket-review"), ("reviewer2", "docket-review")]
# A run that has reported nothing for this long at the end is stuck; one still reporting progress is working.
STUCK_AFTER_S = 120

# The configuration before WAL and immediate transactions, for the baseline: same code, old database options.
BASELINE_SETTINGS = """
from config.settings import *  # noqa: F403

DATABASES["default"]["OPTIONS"] = {"timeout": 30, "init_command": "PRAGMA journal_mode=DELETE"}  # noqa: F405
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the reviewers label")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between one reviewer's answers")
    parser.add_argument("--port", type=int, default=8200, help="first port to try (127.0.0.1 only)")
    parser.add_argument("--documents", type=int, default=1000, help="unlabeled OPP-115 clauses added to the demo")
    parser.add_argument("--warmup", type=float, default=900.0, help="longest wait for the first scoring of the queue")
    parser.add_argument("--drain", type=float, default=240.0, help="seconds the worker may take to finish after")
    parser.add_argument("--fine-tune-steps", type=int, default=20)
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on the previous SQLite options")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    return parser.parse_args()


@dataclass
class Tally:
    """What one reviewer saw."""

    requests: int = 0
    server_errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # 4xx: the page would show these
    acknowledged: dict[int, int] = field(default_factory=dict)  # document id -> annotation id, from 200 answers
    latencies: list[float] = field(default_factory=list)


class Reviewer:
    """One reviewer's browser: a session, the CSRF header, the document on screen and the prefetched next one."""

    def __init__(self, base: str, username: str, password: str, project_id: int, labels: list[str], seed: int):
        self.base, self.project_id, self.labels = base, project_id, labels
        self.rng = random.Random(seed)
        self.http = requests.Session()
        self.tally = Tally()
        self.http.get(f"{base}/accounts/login/", timeout=60)
        token = self.http.cookies["csrftoken"]
        response = self.http.post(
            f"{base}/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base}/accounts/login/"},
            timeout=60,
            allow_redirects=False,
        )
        if response.status_code != 302:
            raise SystemExit(f"{username} could not log in: HTTP {response.status_code}")
        self.http.get(f"{base}/projects/{project_id}/label/", timeout=60)
        self.headers = {"X-CSRFToken": self.http.cookies["csrftoken"], "Accept": "application/json"}

    def _post(self, path: str, body: dict) -> dict | None:
        self.tally.requests += 1
        started = time.monotonic()
        try:
            response = self.http.post(f"{self.base}{path}", json=body, headers=self.headers, timeout=90)
        except requests.RequestException as error:
            self.tally.server_errors.append(f"{path}: {type(error).__name__}")
            return None
        self.tally.latencies.append(time.monotonic() - started)
        if response.status_code >= 500:
            self.tally.server_errors.append(f"{path}: HTTP {response.status_code} {response.text[:160]!r}")
            return None
        if response.status_code != 200:
            self.tally.refused.append(f"{path}: HTTP {response.status_code} {response.text[:160]!r}")
            return None
        return response.json()

    def _next(self, after: dict | None) -> dict | None:
        answer = self._post(f"/projects/{self.project_id}/queue/next", {"after": after["id"]} if after else {})
        return answer.get("document") if answer else None

    def _answer(self, document: dict, seconds: float) -> None:
        keys = self.rng.sample(self.labels, self.rng.choice((1, 1, 2)))
        body = {
            "labels": keys,
            "submission_id": str(uuid.uuid4()),
            "ticket": document["ticket"],
            "seconds_spent": seconds,
        }
        answer = self._post(f"/projects/{self.project_id}/documents/{document['id']}/annotate", body)
        if answer is not None:
            self.tally.acknowledged[document["id"]] = answer["annotation"]

    def label_until(self, deadline: float, interval: float) -> None:
        current = self._next(None)
        upcoming = self._next(current) if current else None
        while time.monotonic() < deadline:
            time.sleep(interval)
            if current is None:
                current = self._next(None)
                upcoming = self._next(current) if current else None
                continue
            self._answer(current, interval)
            current, upcoming = upcoming, None
            if current is not None:
                upcoming = self._next(current)


def free_port(first: int) -> int:
    for port in range(first, first + 50):
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) != 0:
                return port
    raise SystemExit(f"no free port in {first}-{first + 49}")


def embedded_env(var_dir: Path, *, settings_module: str, fine_tune_steps: int) -> dict[str, str]:
    """`make run`'s environment: nothing configured, so SQLite, the file-system broker and files under var_dir."""
    unset = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DOCKET_CACHE_URL", "DOCKET_ARTIFACT_DIR")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(
        DJANGO_SETTINGS_MODULE=settings_module,
        DOCKET_DEVELOPMENT="1",
        DEBUG="1",
        DOCKET_VAR_DIR=str(var_dir),
        DOCKET_FINE_TUNE_MAX_STEPS=str(fine_tune_steps),
        PYTHONPATH=os.pathsep.join(filter(None, [str(var_dir.parent), str(ROOT), os.environ.get("PYTHONPATH", "")])),
        PYTHONUNBUFFERED="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def extra_documents(path: Path, count: int) -> int:
    """Unlabeled OPP-115 clauses, one per distinct text, as a JSONL import file."""
    seen: set[str] = set()
    with OPP115.open() as source, path.open("w") as out:
        for line in source:
            text = json.loads(line)["text"].strip()
            if len(text) < 40 or text in seen:
                continue
            seen.add(text)
            out.write(json.dumps({"id": f"opp115-{len(seen)}", "text": text}) + "\n")
            if len(seen) == count:
                break
    return len(seen)


def wait_until_up(base: str, proc: subprocess.Popen, log: Path) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"the web server stopped:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{base}/accounts/login/", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit("the web server did not come up in 5 minutes")


def read_database(path: Path, sql: str, params=()) -> list[tuple]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60) as db:
        return db.execute(sql, params).fetchall()


def runs_by_status(database: Path, project_id: int) -> dict[str, int]:
    rows = read_database(
        database,
        "SELECT status, COUNT(*) FROM learning_trainingrun WHERE project_id = ? GROUP BY status",
        (project_id,),
    )
    return dict(rows)


def unscored(database: Path, project_id: int) -> int:
    """Queued documents the worker has not placed in the queue yet (no priority row)."""
    return read_database(
        database,
        "SELECT COUNT(*) FROM annotation_document d LEFT JOIN learning_queuepriority q ON q.document_id = d.id "
        "WHERE d.project_id = ? AND d.status = 'queued' AND q.document_id IS NULL",
        (project_id,),
    )[0][0]


def runs_stuck(database: Path, project_id: int, *, silent_for: float = STUCK_AFTER_S) -> list[str]:
    """Runs left open that show no sign of life: running with no heartbeat for `silent_for` seconds, or
    queued that long with nothing running ahead of them. A run still reporting progress is not stuck."""
    rows = read_database(
        database,
        "SELECT id, kind, status, phase, created_at, started_at, heartbeat_at FROM learning_trainingrun "
        "WHERE project_id = ? AND status IN ('queued', 'running')",
        (project_id,),
    )
    now = datetime.now(UTC).replace(tzinfo=None)  # SQLite holds naive UTC times
    running = any(row[2] == "running" for row in rows)
    stuck = []
    for pk, kind, status, phase, created, started, heartbeat in rows:
        last = datetime.fromisoformat(heartbeat or started or created)
        silent = (now - last).total_seconds()
        if silent > silent_for and (status == "running" or not running):
            stuck.append(f"run {pk} ({kind}) {status} at {phase!r}, silent for {silent:.0f} s")
    return stuck


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def soak(args: argparse.Namespace, *, label: str, settings_module: str, workdir: Path) -> dict:
    var_dir = workdir / "var"  # the settings module of a baseline lies in workdir, which is on the path
    var_dir.mkdir(parents=True)
    env = embedded_env(var_dir, settings_module=settings_module, fine_tune_steps=args.fine_tune_steps)
    print(f"[{label}] migrating and loading the demo under {var_dir}", flush=True)
    manage(env, "migrate", "--noinput")
    manage(env, "load_demo")
    extra = workdir / "opp115-clauses.jsonl"
    added = extra_documents(extra, args.documents)
    manage(env, "import_documents", DEMO_PROJECT, str(extra), "--label-field", "", "--no-progress")
    database = var_dir / "docket.sqlite3"
    project_id = read_database(database, "SELECT id FROM annotation_project WHERE name = ?", (DEMO_PROJECT,))[0][0]

    port = free_port(args.port)
    base = f"http://{HOST}:{port}"
    worker_log, web_log = workdir / "worker.log", workdir / "web.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", "--concurrency=2"],
        cwd=ROOT,
        env=env,
        stdout=worker_log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    web = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"{HOST}:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=web_log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_up(base, web, web_log)
        # As after `make run`: the worker first lays out the queue it was given (embedding every document once),
        # and only then does a reviewer's label set off quick head refits on those cached embeddings.
        warmup_started = time.monotonic()
        while unscored(database, project_id) and time.monotonic() - warmup_started < args.warmup:
            time.sleep(5)
        warmup = time.monotonic() - warmup_started
        unscored_at_start = unscored(database, project_id)
        print(f"[{label}] the worker scored the queue in {warmup:.0f} s ({unscored_at_start} left)", flush=True)
        reviewers = []
        for index, (username, password) in enumerate(REVIEWERS):
            reviewers.append(Reviewer(base, username, password, project_id, [], seed=index))
        page = reviewers[0].http.get(f"{base}/projects/{project_id}/label/", timeout=60).text
        boot = json.loads(re.search(r'id="labeling-bootstrap" type="application/json">(.*?)</script>', page, re.S)[1])
        for reviewer in reviewers:
            reviewer.labels = [item["key"] for item in boot["labels"]]

        load_before = Path("/proc/loadavg").read_text().split()[:3]
        print(
            f"[{label}] {len(reviewers)} reviewers answer every {args.interval} s for {args.seconds:.0f} s", flush=True
        )
        started = time.monotonic()
        deadline = started + args.seconds
        threads = [threading.Thread(target=r.label_until, args=(deadline, args.interval)) for r in reviewers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        labeled_for = time.monotonic() - started
        load_after = Path("/proc/loadavg").read_text().split()[:3]

        print(f"[{label}] reviewers done; the worker may take {args.drain:.0f} s to finish its runs", flush=True)
        drain_deadline = time.monotonic() + args.drain
        while time.monotonic() < drain_deadline:
            open_runs = runs_by_status(database, project_id)
            if not open_runs.get("queued") and not open_runs.get("running"):
                break
            time.sleep(2)
        drained_in = args.drain - max(0.0, drain_deadline - time.monotonic())
        stuck = runs_stuck(database, project_id)
    finally:
        stop(web)
        stop(worker)

    acknowledged = {
        (i, doc, annotation) for i, r in enumerate(reviewers) for doc, annotation in r.tally.acknowledged.items()
    }
    stored_ids = {
        row[0] for row in read_database(database, "SELECT id FROM annotation_annotation WHERE source = 'reviewer'")
    }
    missing = sorted(annotation for _, _, annotation in acknowledged if annotation not in stored_ids)
    runs = runs_by_status(database, project_id)
    failed_runs = read_database(
        database,
        "SELECT id, kind, error FROM learning_trainingrun WHERE project_id = ? AND status = 'failed'",
        (project_id,),
    )
    worker_text = worker_log.read_text(errors="replace")
    web_text = web_log.read_text(errors="replace")
    crashed = re.findall(r"Task (\S+)\[[^\]]+\] raised unexpected: (.{0,160})", worker_text)
    server_errors = [e for r in reviewers for e in r.tally.server_errors]
    latencies = sorted(t for r in reviewers for t in r.tally.latencies)
    result = {
        "configuration": label,
        "reviewers": len(reviewers),
        "interval_s": args.interval,
        "labeled_for_s": round(labeled_for, 1),
        "documents_added": added,
        "queue_scored_in_s": round(warmup, 1),
        "unscored_at_start": unscored_at_start,
        "requests": sum(r.tally.requests for r in reviewers),
        "server_errors": len(server_errors),
        "server_error_examples": server_errors[:5],
        "refused_4xx": sum(len(r.tally.refused) for r in reviewers),
        "refused_examples": [e for r in reviewers for e in r.tally.refused][:5],
        "crashed_tasks": len(crashed),
        "crashed_examples": [f"{name}: {message}" for name, message in crashed[:5]],
        "runs": runs,
        "runs_failed": len(failed_runs),
        "runs_failed_examples": [f"run {pk} ({kind}): {error[:160]}" for pk, kind, error in failed_runs[:5]],
        "runs_stuck": len(stuck),
        "runs_stuck_examples": stuck[:5],
        "runs_still_working": runs.get("queued", 0) + runs.get("running", 0) - len(stuck),
        "drained_in_s": round(drained_in, 1),
        "acknowledged": len(acknowledged),
        "stored": len(acknowledged) - len(missing),
        "missing": missing[:20],
        "locked_in_logs": web_text.count("database is locked") + worker_text.count("database is locked"),
        "latency_p50_ms": round(1000 * latencies[len(latencies) // 2]) if latencies else None,
        "latency_p95_ms": round(1000 * latencies[int(len(latencies) * 0.95)]) if latencies else None,
        "load_before": " ".join(load_before),
        "load_after": " ".join(load_after),
    }
    return result


def report(results: list[dict]) -> None:
    columns = [
        ("configuration", "configuration"),
        ("requests", "requests"),
        ("server_errors", "server errors"),
        ("crashed_tasks", "crashed tasks"),
        ("runs_stuck", "runs stuck"),
        ("runs_failed", "runs failed"),
        ("acknowledged", "saves acknowledged"),
        ("stored", "stored"),
        ("locked_in_logs", "'database is locked' in logs"),
        ("latency_p50_ms", "p50 ms"),
        ("latency_p95_ms", "p95 ms"),
    ]
    print("\n| " + " | ".join(title for _, title in columns) + " |")
    print("|" + " --- |" * len(columns))
    for result in results:
        print("| " + " | ".join(str(result[key]) for key, _ in columns) + " |")
    for result in results:
        runs = ", ".join(f"{n} {status}" for status, n in sorted(result["runs"].items()))
        print(
            f"\n{result['configuration']}: training runs {runs} ({result['runs_still_working']} still reporting "
            f"progress); waited {result['drained_in_s']} s for the worker; "
            f"load average {result['load_before']} before, {result['load_after']} after"
        )
        for key in (
            "server_error_examples",
            "crashed_examples",
            "runs_stuck_examples",
            "runs_failed_examples",
            "refused_examples",
        ):
            for example in result[key]:
                print(f"  {key.split('_')[0]}: {example}")


def main() -> None:
    args = parse_args()
    # A stopped soak still stops its web server and worker and removes its directory (the `finally`s below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not OPP115.exists():
        raise SystemExit(f"{OPP115} is missing: the soak adds OPP-115 clauses to the demo")
    root = Path(tempfile.mkdtemp(prefix="docket-embedded-soak-"))
    results = []
    try:
        if not args.no_baseline:
            (root / "baseline").mkdir()
            (root / "baseline" / "soak_baseline_settings.py").write_text(BASELINE_SETTINGS)
            results.append(
                soak(
                    args,
                    label="before: rollback journal, deferred",
                    settings_module="soak_baseline_settings",
                    workdir=root / "baseline",
                )
            )
        results.append(
            soak(args, label="make run: WAL, immediate", settings_module="config.settings", workdir=root / "embedded")
        )
    finally:
        if args.keep:
            print(f"\nKept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
