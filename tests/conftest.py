"""Shared fixtures: users and projects, and a real Celery worker process on the suite's broker."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.factories import MembershipFactory, UserFactory, project_with_labels

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Real hashing costs over a second per user on a busy 2-core machine; tests check access, not PBKDF2."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def artifact_dir(settings, tmp_path):
    """A test's own artifact storage: model files, embedding shards and stored rankings never meet another's."""
    settings.ARTIFACT_DIR = tmp_path / "artifacts"
    return settings.ARTIFACT_DIR


@pytest.fixture
def project(db):
    return project_with_labels()


@pytest.fixture
def reviewer(project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="reviewer")
    return user


@pytest.fixture
def project_admin(project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="admin")
    return user


def _worker_env() -> dict[str, str]:
    """The worker talks to the very database the test runner just created (test_<name>)."""
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env["DATABASE_URL"] = (
        f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    env["DOCKET_DEVELOPMENT"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real `celery worker` process on the suite's broker (Redis), writing results to PostgreSQL.

    Tests that use it must use `transaction=True` so the worker sees their rows. It lives for one module
    only: a worker left running would pick up the tasks later tests enqueue (every label asks for a
    retraining) and train models behind their backs.
    """
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.fail("Worker tests need PostgreSQL: run them through `make test`.")
    from config.celery import app

    app.control.purge()
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    handle = open(log, "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "--hostname",
            f"docket-test-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=_worker_env(),
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"Celery worker exited early:\n{log.read_text()}")
        if app.control.ping(timeout=1.0):
            break
    else:
        proc.terminate()
        pytest.fail(f"Celery worker did not answer a ping in 90 s:\n{log.read_text()}")
    proc.log_path = log
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    handle.close()
