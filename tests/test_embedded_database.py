"""The embedded default (`make run`: SQLite, file-system broker) holds several processes writing at once.

The rest of the suite runs on PostgreSQL; this test drives the SQLite configuration itself, from separate
processes as the web server and the worker use it: reviewers asking for documents and answering them while a
worker process reads labels and writes its bookkeeping. No write may fail with "database is locked".
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REVIEWERS = 3
ROUNDS = 25

SETUP = """
import json, sys
import django
django.setup()
from tests.factories import DocumentFactory, MembershipFactory, UserFactory, project_with_labels
project = project_with_labels(overlap_rate=0.2, gold_rate=0.0)
for i in range(int(sys.argv[1])):
    DocumentFactory(project=project, text=f"Clause {i}: we keep your order history for seven years.")
reviewers = []
for i in range(int(sys.argv[2])):
    user = UserFactory(username=f"reviewer{i}")
    MembershipFactory(project=project, user=user)
    reviewers.append(user.pk)
print(json.dumps({"project": project.pk, "reviewers": reviewers}))
"""

# A reviewer as the labeling page drives the server: the document on screen, the prefetched next one, an answer.
REVIEWER = """
import json, sys, time
import django
django.setup()
from django.contrib.auth import get_user_model
from django.db import OperationalError
from annotation.models import Project
from annotation.services.labeling import annotation_submit
from annotation.services.queue import next_document_for
project = Project.objects.get(pk=int(sys.argv[1]))
reviewer = get_user_model().objects.get(pk=int(sys.argv[2]))
rounds, start_at = int(sys.argv[3]), float(sys.argv[4])
time.sleep(max(0.0, start_at - time.time()))
saved, errors = 0, []
offer = None
for i in range(rounds):
    try:
        offer = offer or next_document_for(reviewer=reviewer, project=project)
        if offer is None:
            break
        upcoming = next_document_for(reviewer=reviewer, project=project, after_document_id=offer.document.pk)
        keys = [("first_party", "third_party")[i % 2]]
        annotation_submit(reviewer=reviewer, document=offer.document, label_keys=keys)
        saved += 1
        offer = upcoming
    except OperationalError as error:
        errors.append(str(error))
        offer = None
print(json.dumps({"saved": saved, "errors": errors}))
"""

# The worker's side of the same file: what every `labels_changed` task does, and a training run's progress rows.
WORKER = """
import json, sys, time
import django
django.setup()
from django.db import OperationalError
from annotation.models import Project
from learning import services
from learning.models import TrainingRun
project = Project.objects.get(pk=int(sys.argv[1]))
rounds, start_at = int(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, start_at - time.time()))
errors = []
for i in range(rounds):
    try:
        services.evaluation_reserve(project=project)
        services.training_on_labels_changed(project_id=project.pk)
        services.label_snapshot(project)
        TrainingRun.objects.filter(project=project).update(phase=f"Reading labels {i}")
    except OperationalError as error:
        errors.append(str(error))
print(json.dumps({"errors": errors}))
"""


def _embedded_env(var_dir: Path) -> dict[str, str]:
    """`make run`'s environment: nothing configured, so SQLite and the file-system broker under var_dir."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
    }
    env.update(DJANGO_SETTINGS_MODULE="config.settings", DOCKET_DEVELOPMENT="1", DOCKET_VAR_DIR=str(var_dir))
    return env


def _python(code: str, *args, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_reviewers_and_the_worker_writing_at_once_never_meet_a_locked_database(tmp_path):
    env = _embedded_env(tmp_path / "var")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    setup = _result(_python(SETUP, REVIEWERS * ROUNDS * 2, REVIEWERS, env=env))

    start_at = time.time() + 8  # every process imported Django and is waiting when the clock strikes
    reviewers = [
        _python(REVIEWER, setup["project"], user_id, ROUNDS, start_at, env=env) for user_id in setup["reviewers"]
    ]
    worker = _python(WORKER, setup["project"], ROUNDS * 2, start_at, env=env)
    answers = [_result(proc) for proc in reviewers]
    worker_errors = _result(worker)["errors"]

    reviewer_errors = [error for answer in answers for error in answer["errors"]]
    assert reviewer_errors == [] and worker_errors == [], (reviewer_errors, worker_errors)
    assert sum(answer["saved"] for answer in answers) == REVIEWERS * ROUNDS
    mode = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.db import connection; "
            "c = connection.cursor(); c.execute('PRAGMA journal_mode'); print(c.fetchone()[0])",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()
    assert mode == "wal"
