"""Start Docket exactly as deploy/ and docs/deploy.md say, and check that a real installation works.

    .venv/bin/python benchmarks/production_commands.py [--port 8300] [--keep]

The commands are read from the systemd units in deploy/ (ExecStart and Environment lines), and the environment
from deploy/docket.env.example; only what belongs to this host is changed: paths under /srv and /var, the
database (PostgreSQL deploy_bench_prod, dropped and recreated), the broker (RabbitMQ vhost docket_deploy, or
PROD_BROKER_URL), the cache (Redis, key prefix of its own), the port, a random SECRET_KEY, and fewer fine-tune
steps so the run ends in minutes. DEBUG is off and the HTTPS settings stay on: requests come as from nginx on
this host (X-Forwarded-Proto: https from 127.0.0.1, a trusted proxy).

Install steps (migrate, collectstatic, load_demo), then web, default worker, training worker and scheduler
(and Flower when deploy/requirements-flower.txt is installed) run side by side, and the script checks: both
workers start under their node names, /healthz and /readyz, the login and labeling pages with their CSS and
JS (hashed, compressed, cached for a year), the API docs, a fine-tune on the training worker while a head
refit from new labels finishes on the default worker, predict, /metrics, a rolling restart (HUP) of the web
processes. Every process is stopped at the end; exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
DEPLOY = ROOT / "deploy"
DATABASE = "deploy_bench_prod"
HOSTNAME = socket.gethostname()
PROXY_HEADERS = {"X-Forwarded-Proto": "https"}


class Check:
    def __init__(self) -> None:
        self.rows: list[tuple[str, bool, str]] = []

    def __call__(self, what: str, ok: bool, detail: str = "") -> bool:
        self.rows.append((what, bool(ok), detail))
        print(f"{'ok  ' if ok else 'FAIL'} {what}{': ' + detail if detail else ''}", flush=True)
        return bool(ok)


def unit_commands(port: int, state: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """ExecStart and Environment of each unit in deploy/, with this host's paths and port."""
    commands = {}
    for unit in sorted(DEPLOY.glob("docket-*.service")):
        exec_start, environment = None, {}
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                exec_start = line.removeprefix("ExecStart=")
            elif line.startswith("Environment="):
                key, _, value = line.removeprefix("Environment=").partition("=")
                environment[key] = value.replace("/run/", f"{state}/run/")
        text = (
            exec_start.replace("/srv/docket/.venv/bin/", f"{ROOT}/.venv/bin/")
            .replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            .replace("--port=5555", f"--port={port + 1}")
            .replace("/var/lib/docket", str(state))
            .replace("%%", "%")  # systemd's escape of celery's %h
        )
        commands[unit.stem] = (shlex.split(text), environment)
    return commands


def production_environment(scratch: Path, port: int, steps: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKET_", "CELERY_", "DATABASE_URL", "DEBUG"))}
    for line in (DEPLOY / "docket.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    env.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        CSRF_TRUSTED_ORIGINS=f"https://127.0.0.1:{port}",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        DOCKET_CACHE_URL=os.environ.get("PROD_CACHE_URL", "redis://127.0.0.1:6379/5?key_prefix=deploy-prod"),
        CELERY_BROKER_URL=os.environ.get(
            "PROD_BROKER_URL", "amqp://docket_deploy:deploy-local-only@127.0.0.1:5672/docket_deploy"
        ),
        DOCKET_ARTIFACT_DIR=str(scratch / "artifacts"),
        DOCKET_VAR_DIR=str(scratch / "var"),
        STATIC_ROOT=str(scratch / "staticfiles"),
        DOCKET_FINE_TUNE_MAX_STEPS=str(steps),
        DOCKET_FINE_TUNE_CHECKPOINT_STEPS="2",
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
    )
    return env


def items(response: requests.Response) -> list[dict]:
    """A list answer of the API, paginated ({"results": [...]}) or not."""
    body = response.json()
    return body["results"] if isinstance(body, dict) else body


def wait_until(condition, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (requests.RequestException, ValueError):
            value = None
        if value:
            return value
        time.sleep(interval)
    return None


class Browser:
    """A session as a browser behind nginx has it: HTTPS in the proxy header, cookies kept despite Secure."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()

    def _keep_cookies(self) -> None:
        for cookie in self.http.cookies:
            cookie.secure = False  # the proxy would have ended TLS; here the hop is plain HTTP

    def get(self, path: str, **kwargs) -> requests.Response:
        response = self.http.get(self.base + path, headers={**PROXY_HEADERS, **kwargs.pop("headers", {})}, **kwargs)
        self._keep_cookies()
        return response

    def post(self, path: str, **kwargs) -> requests.Response:
        token = self.http.cookies.get("csrftoken", "")
        headers = {**PROXY_HEADERS, "Referer": f"https://{self.base.split('//')[1]}/", "X-CSRFToken": token}
        response = self.http.post(self.base + path, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)
        self._keep_cookies()
        return response

    def log_in(self, username: str, password: str) -> bool:
        page = self.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = self.post(
            "/accounts/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            allow_redirects=False,
        )
        return response.status_code == 302


def main() -> int:
    from bench_setup import recreate_database

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8300)
    parser.add_argument("--steps", type=int, default=6, help="DOCKET_FINE_TUNE_MAX_STEPS for this run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory and database")
    options = parser.parse_args()
    check = Check()
    scratch = Path(tempfile.mkdtemp(prefix="deploy-prod-"))
    (scratch / "run").mkdir()
    env = production_environment(scratch, options.port, options.steps)
    commands = unit_commands(options.port, scratch)
    base = f"http://127.0.0.1:{options.port}"
    processes: dict[str, subprocess.Popen] = {}
    started = time.monotonic()
    timings: dict[str, float] = {}

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [f"{ROOT}/.venv/bin/python", "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )

    try:
        recreate_database(DATABASE)
        step = time.monotonic()
        for args in (["migrate", "--noinput"], ["collectstatic", "--noinput"], ["load_demo"]):
            result = manage(*args)
            check(f"manage.py {' '.join(args)}", result.returncode == 0, (result.stderr or "").strip()[-300:])
        check("manage.py check --deploy", "no issues" in manage("check", "--deploy").stdout)
        timings["install steps"] = time.monotonic() - step

        step = time.monotonic()
        wanted = ["docket-web", "docket-worker", "docket-training", "docket-scheduler"]
        try:
            import flower  # noqa: F401

            wanted.append("docket-flower")
        except ImportError:
            print("Flower is not installed (deploy/requirements-flower.txt): its unit is skipped")
        for name in wanted:
            command, extra = commands[name]
            for value in extra.values():
                Path(value).mkdir(parents=True, exist_ok=True)
            print(f"start {name}: {' '.join(command)}", flush=True)
            processes[name] = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**env, **extra},
                stdout=(scratch / f"{name}.log").open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def ping() -> list[str]:
            from celery import Celery

            probe = Celery(broker=env["CELERY_BROKER_URL"])
            replies = probe.control.ping(timeout=2.0) or []
            return sorted(name for reply in replies for name in reply)

        wait_until(lambda: len(ping()) >= 2, timeout=180)
        nodes = ping()
        check(
            "both workers run on one host under their node names",
            set(nodes) >= {f"default@{HOSTNAME}", f"training@{HOSTNAME}"},
            ", ".join(nodes),
        )
        healthz = wait_until(lambda: requests.get(f"{base}/healthz", timeout=5).status_code == 200, timeout=120)
        check("/healthz answers 200", healthz)
        ready = wait_until(lambda: (r := requests.get(f"{base}/readyz", timeout=10)).status_code == 200 and r, 180)
        check("/readyz answers 200 (database, cache, broker, models)", ready, ready.text if ready else "")
        timings["start to ready"] = time.monotonic() - step
        for name in ("docket-worker", "docket-training"):
            log = (scratch / f"{name}.log").read_text()
            check(f"{name} logs what it serves at start", "Docket worker" in log and "ready: queues=" in log)
        check("scheduler runs", processes["docket-scheduler"].poll() is None)

        reviewer = Browser(base)
        check("reviewer signs in", reviewer.log_in("reviewer1", "docket-review"))
        project = items(reviewer.get("/api/v1/projects"))[0]["id"]
        page = reviewer.get(f"/projects/{project}/label/")
        check("labeling page answers 200 with DEBUG off", page.status_code == 200)
        assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
        for asset in assets:
            response = reviewer.get(asset, headers={"Accept-Encoding": "gzip"})
            check(
                f"static {asset}",
                response.status_code == 200
                and "max-age=315360000" in response.headers.get("Cache-Control", "")
                and response.headers.get("Content-Encoding") == "gzip",
                f"{response.status_code} {response.headers.get('Cache-Control')}",
            )
        docs = reviewer.get("/api/docs/")
        docs_assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', docs.text)
        check(
            "/api/docs/ and its scripts answer 200",
            docs.status_code == 200 and docs_assets and all(reviewer.get(a).status_code == 200 for a in docs_assets),
            f"{len(docs_assets)} assets",
        )

        admin = Browser(base)
        check("admin signs in", admin.log_in("admin", "docket-admin"))
        step = time.monotonic()
        fine_tune = admin.post(f"/api/v1/projects/{project}/training-runs", json={})
        check("fine-tune requested through the API", fine_tune.status_code in (200, 201, 202), fine_tune.text[:200])
        slow_id = fine_tune.json().get("id")
        running = wait_until(
            lambda: admin.get(f"/api/v1/projects/{project}/training-runs/{slow_id}").json()["status"] == "running",
            timeout=180,
        )
        check("the training worker took the fine-tune", running)
        # New labels from the reviewer ask for a head refit, which the default worker runs meanwhile.
        labels = [label["key"] for label in items(reviewer.get(f"/api/v1/projects/{project}/labels"))]
        queued = items(reviewer.get(f"/api/v1/projects/{project}/documents", params={"status": "queued"}))
        for index, document in enumerate(queued[:10]):
            reviewer.post(
                f"/api/v1/projects/{project}/annotations",
                json={"document": document["id"], "labels": [labels[index % 3]]},
            )

        def runs() -> list[dict]:
            return items(admin.get(f"/api/v1/projects/{project}/training-runs"))

        refit = wait_until(
            lambda: next((r for r in runs() if r["kind"] == "fast" and r["status"] == "succeeded"), None), 300
        )
        slow_then = next((r for r in runs() if r["id"] == slow_id), {})
        check(
            "a head refit finished while the fine-tune of the same project ran",
            refit is not None and slow_then.get("status") == "running",
            f"fine-tune {slow_then.get('status')} at step {slow_then.get('done')} of {slow_then.get('total')}",
        )
        timings["head refit during the fine-tune"] = time.monotonic() - step
        done = wait_until(
            lambda: (
                (r := admin.get(f"/api/v1/projects/{project}/training-runs/{slow_id}").json())["status"]
                in ("succeeded", "failed", "refused")
                and r
            ),
            timeout=900,
            interval=3,
        )
        check("the fine-tune succeeded", done and done["status"] == "succeeded", (done or {}).get("error", ""))
        timings["fine-tune"] = time.monotonic() - step

        # Web processes look for a newly promoted model every DOCKET_MODEL_POLL_SECONDS (10) and load it.
        time.sleep(15)
        step = time.monotonic()
        predict = admin.post(f"/api/v1/projects/{project}/predict", json={"texts": ["We sell your data."]})
        check(
            "predict answers 200 with the newest model, already loaded",
            predict.status_code == 200 and time.monotonic() - step < 5,
            f"{predict.text[:80]}, {1000 * (time.monotonic() - step):.0f} ms",
        )
        timings["first predict after the promotion"] = time.monotonic() - step
        metrics = requests.get(f"{base}/metrics", headers=PROXY_HEADERS, timeout=30).text
        check(
            "/metrics has queue depth per queue, runs by outcome, predict latency by version",
            all(f'docket_queue_depth{{queue="{q}"}}' in metrics for q in ("celery", "fast", "training"))
            and 'docket_training_runs{kind="slow",status="succeeded"}' in metrics
            and "docket_predict_seconds_count{" in metrics,
        )
        web_log = (scratch / "docket-web.log").read_text()
        check(
            "access log lines carry time, level and request id",
            re.search(r"INFO docket.access \[[0-9a-f]{32}\]", web_log),
        )

        if "docket-flower" in processes:
            # Flower's JSON API stays closed without authentication; its workers page lists the nodes.
            page = wait_until(
                lambda: (
                    (r := requests.get(f"http://127.0.0.1:{options.port + 1}/workers", timeout=10)).ok
                    and f"training@{HOSTNAME}" in r.text
                    and r.text
                ),
                90,
            )
            check(
                "Flower shows both workers",
                page and f"default@{HOSTNAME}" in page and f"training@{HOSTNAME}" in page,
            )

        step = time.monotonic()
        os.kill(processes["docket-web"].pid, signal.SIGHUP)  # systemctl reload docket-web
        time.sleep(3)
        after = wait_until(
            lambda: (
                (r := requests.get(f"{base}/readyz", timeout=10)).status_code == 200
                and r.json()["checks"]["models"].get("detail") == "1 loaded"
                and r
            ),
            180,
        )
        check("after a rolling restart (HUP): /readyz 200 with the active model loaded", after)
        timings["rolling restart to ready"] = time.monotonic() - step
        # Every fresh web process loaded the model before it was ready: no prediction pays a cold load.
        latencies = []
        for text in ("Backups are encrypted.", "We share data with partners.", "Cookies remember you.", "We log IPs."):
            step = time.monotonic()
            predict = admin.post(f"/api/v1/projects/{project}/predict", json={"texts": [text]})
            latencies.append(time.monotonic() - step)
        check(
            "first predictions after the restart are warm",
            predict.status_code == 200 and max(latencies) < 5,
            ", ".join(f"{1000 * t:.0f} ms" for t in latencies),
        )
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        if not options.keep:
            shutil.rmtree(scratch, ignore_errors=True)
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", f'DROP DATABASE IF EXISTS "{DATABASE}"']
            )
        else:
            print(f"kept {scratch} and database {DATABASE}")

    failed = [row for row in check.rows if not row[1]]
    print("\n" + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"total {time.monotonic() - started:.0f} s; load average {open('/proc/loadavg').read().strip()}")
    print(json.dumps({"checks": len(check.rows), "failed": [row[0] for row in failed]}))
    print("PRODUCTION COMMANDS PASSED" if not failed else "PRODUCTION COMMANDS FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
