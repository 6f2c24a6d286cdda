"""Restore drill: back up a working Docket, restore it into a fresh database and directory, prove nothing changed.

    .venv/bin/python benchmarks/restore_drill.py [--keep]

1. Source: database deploy_bench_drill_source (dropped and recreated), its own artifact directory; migrate,
   load the demo project, train a model on the demo labels (it becomes the active one), write audit events.
2. `manage.py backup DIR` exactly as docs/deploy.md says.
3. Target: a fresh, empty database deploy_bench_drill_restored and an empty artifact directory, with a broker
   (RabbitMQ vhost docket_deploy_drill, or DRILL_BROKER_URL) and a cache (Redis with a key prefix of its own)
   that are not the source's, so nothing the restored copy does reaches production workers or sessions.
   `manage.py restore DIR`, then `manage.py migrate` (a no-op on the same code).
4. Both sides are fingerprinted by this script in their own environment: model versions (with a checksum of
   every artifact file), annotations, the audit log, documents, and the active model's predictions on 20 demo
   texts; the restored side's /readyz must answer 200. Any difference fails the drill (exit status 1).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
PYTHON = sys.executable
SOURCE_DB = "deploy_bench_drill_source"
TARGET_DB = "deploy_bench_drill_restored"


def environment(database: str, artifacts: Path, var: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKET_", "CELERY_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{database}",
        DOCKET_DEVELOPMENT="1",
        DOCKET_ARTIFACT_DIR=str(artifacts),
        DOCKET_VAR_DIR=str(var),
        DOCKET_WARM_MODELS="0",
        LOG_LEVEL="WARNING",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        DJANGO_SETTINGS_MODULE="config.settings",
        **extra,
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout.strip()


def in_environment(env: dict[str, str], mode: str) -> dict:
    result = subprocess.run([PYTHON, __file__, mode], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{mode} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- run inside one environment (the script calls itself) -------------------------------------------------------


def train_active_model() -> dict:
    """A head refit on the demo's imported labels, promoted as the first model, and a few audited actions."""
    import django

    django.setup()
    from annotation.models import Project
    from learning import services
    from learning.models import TrainingRun

    project = Project.objects.get()
    run = TrainingRun.objects.create(project=project, kind="fast", trigger=TrainingRun.Trigger.ADMIN)
    run = services.training_run_execute(run_id=run.pk, task_id="drill")
    return {"run": run.pk, "status": run.status, "version": run.model_version.number if run.model_version else None}


def digest(rows) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint() -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client

    from annotation.models import Annotation, AuditEvent, Document, Project
    from learning import serving
    from learning.models import ModelVersion

    versions = []
    for version in ModelVersion.objects.order_by("project_id", "number"):
        files = {}
        if version.artifact_path:
            folder = Path(settings.ARTIFACT_DIR) / version.artifact_path
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    files[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
        versions.append([version.project_id, version.number, version.status, version.body_id, version.macro_f1, files])
    annotations = [
        [a.document_id, a.reviewer_id, sorted(a.labels.values_list("key", flat=True))]
        for a in Annotation.objects.order_by("pk").prefetch_related("labels")
    ]
    audit = list(
        AuditEvent.objects.order_by("pk").values_list(
            "pk", "created_at", "actor_label", "project_id", "action", "target_type", "target_id", "before", "after"
        )
    )
    documents = list(Document.objects.order_by("pk").values_list("pk", "content_hash", "status"))
    project = Project.objects.get()
    texts = list(Document.objects.filter(project=project).order_by("pk").values_list("text", flat=True)[:20])
    served = serving.served_model(project)
    probabilities = [[round(float(p), 6) for p in row] for row in served.predict_proba(texts)]
    ready = Client(HTTP_HOST="127.0.0.1").get("/readyz")
    return {
        "model versions": {"count": len(versions), "sha256": digest(versions)},
        "annotations": {"count": len(annotations), "sha256": digest(annotations)},
        "audit log": {"count": len(audit), "sha256": digest(audit)},
        "documents": {"count": len(documents), "sha256": digest(documents)},
        "predictions": {"count": len(probabilities), "model": served.number, "sha256": digest(probabilities)},
        "readyz": {"status": ready.status_code},
    }


# --- the drill ---------------------------------------------------------------------------------------------------


def main() -> int:
    from bench_setup import recreate_database

    keep = "--keep" in sys.argv
    scratch = Path(tempfile.mkdtemp(prefix="deploy-restore-drill-"))
    backup_dir = scratch / "backup"
    source = environment(
        SOURCE_DB,
        scratch / "source-artifacts",
        scratch / "source-var",
        CELERY_BROKER_URL=os.environ.get("DRILL_SOURCE_BROKER_URL", "redis://127.0.0.1:6379/5"),
    )
    target = environment(
        TARGET_DB,
        scratch / "restored-artifacts",
        scratch / "restored-var",
        CELERY_BROKER_URL=os.environ.get(
            "DRILL_BROKER_URL", "amqp://docket_deploy:deploy-local-only@127.0.0.1:5672/docket_deploy_drill"
        ),
        DOCKET_CACHE_URL=os.environ.get("DRILL_CACHE_URL", "redis://127.0.0.1:6379/5?key_prefix=drill-restored"),
    )
    timings = {}
    started = time.monotonic()
    recreate_database(SOURCE_DB)
    manage(source, "migrate", "--noinput")
    manage(source, "load_demo")
    trained = in_environment(source, "--train")
    timings["source set-up"] = time.monotonic() - started
    print(f"source: demo loaded, model v{trained['version']} {trained['status']}")

    step = time.monotonic()
    print(manage(source, "backup", str(backup_dir)))
    timings["backup"] = time.monotonic() - step

    step = time.monotonic()
    recreate_database(TARGET_DB)
    print(manage(target, "restore", str(backup_dir)))
    manage(target, "migrate", "--noinput")
    timings["restore"] = time.monotonic() - step

    before = in_environment(source, "--fingerprint")
    after = in_environment(target, "--fingerprint")
    failures = 0
    print("\n| what | source | restored | same |\n| --- | --- | --- | --- |")
    for key in before:
        same = before[key] == after[key]
        failures += not same
        show = lambda d: ", ".join(f"{k} {v if k != 'sha256' else v[:12]}" for k, v in d.items())  # noqa: E731
        print(f"| {key} | {show(before[key])} | {show(after[key])} | {'yes' if same else 'NO'} |")
    if after["readyz"]["status"] != 200:
        failures += 1
    print("\n" + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"load average: {open('/proc/loadavg').read().strip()}")
    print("RESTORE DRILL PASSED" if not failures else f"RESTORE DRILL FAILED: {failures} difference(s)")
    if not keep:
        shutil.rmtree(scratch, ignore_errors=True)
        for name in (SOURCE_DB, TARGET_DB):
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", f'DROP DATABASE IF EXISTS "{name}"']
            )
    return 1 if failures else 0


if __name__ == "__main__":
    if "--fingerprint" in sys.argv:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(fingerprint()))
    elif "--train" in sys.argv:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(train_active_model()))
    else:
        sys.exit(main())
