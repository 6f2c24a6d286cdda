"""Shared fixtures: users and projects, and a real Celery worker process on the suite's broker."""

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import environ
import psycopg2
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.color import no_style
from django.core.management.sql import emit_post_migrate_signal, sql_flush
from django.db import connections
from django.test import TransactionTestCase

from tests.factories import MembershipFactory, UserFactory, project_with_labels

ROOT = Path(__file__).resolve().parent.parent


# --- The database: its owner creates it, the app's restricted role uses it ---------------------------------


def _owner_credentials() -> dict[str, str]:
    """USER and PASSWORD of the role that owns the tables (DATABASE_OWNER_URL); empty when the suite runs as one
    role throughout, as it does with a TEST_DATABASE_URL of a role that may create databases itself."""
    if not settings.DATABASE_OWNER_URL:
        return {}
    config = environ.Env.db_url_config(settings.DATABASE_OWNER_URL)
    return {"USER": config["USER"], "PASSWORD": config.get("PASSWORD") or ""}


@contextmanager
def _connected_as(credentials: dict[str, str]) -> Iterator[None]:
    """The default connection as another role for a while (no other thread holds one yet when this is used)."""
    database = connections["default"]
    saved = {key: database.settings_dict.get(key, "") for key in ("USER", "PASSWORD")}
    database.close()
    database.settings_dict.update(credentials)
    try:
        yield
    finally:
        database.close()
        database.settings_dict.update(saved)


def _execute_outlasting_deadlocks(cursor, statement: str, attempts: int = 5) -> None:
    """Run the flush's TRUNCATE again when PostgreSQL picks it as a deadlock's victim: a live Celery worker may
    still be ending a task of the test that just finished, holding one table while the TRUNCATE holds another.
    The worker's transaction ends, so a later attempt succeeds; a test never sees a half-flushed database."""
    for attempt in range(1, attempts + 1):
        try:
            cursor.execute(statement)
            return
        except psycopg2.errors.DeadlockDetected:
            if attempt == attempts:
                raise
            time.sleep(0.5 * attempt)


def _flush_as_owner(self: TransactionTestCase) -> None:
    """TransactionTestCase's flush, with the TRUNCATE run by the tables' owner: the app's role may not truncate
    the audit log, which is the point. The rest (post_migrate's content types) runs as the app, as in Django."""
    owner = _owner_credentials()
    for alias in self._databases_names(include_mirrors=False):
        connection = connections[alias]
        statements = sql_flush(
            no_style(), connection, reset_sequences=False, allow_cascade=self.available_apps is not None
        )
        params = connection.settings_dict
        with psycopg2.connect(
            dbname=params["NAME"],
            user=owner["USER"],
            password=owner["PASSWORD"],
            host=params["HOST"] or "127.0.0.1",
            port=params["PORT"] or 5432,
        ) as owner_connection:
            owner_connection.autocommit = True
            with owner_connection.cursor() as cursor:
                for statement in statements:
                    _execute_outlasting_deadlocks(cursor, statement)
        owner_connection.close()
        if self.available_apps is None:
            emit_post_migrate_signal(verbosity=0, interactive=False, db=alias)


@pytest.fixture(scope="session")
def django_db_setup(request, django_test_environment, django_db_blocker, django_db_keepdb, django_db_createdb):
    """pytest-django's database set-up, done by the owner role; then the whole run (tests, the live server, the
    Celery worker) connects as the app's role, which `grant_app_role` lets in as in production."""
    from django.test.utils import setup_databases, teardown_databases

    owner = _owner_credentials()
    app_role = connections["default"].settings_dict["USER"]
    verbosity = request.config.option.verbose
    with django_db_blocker.unblock(), _connected_as(owner):
        db_cfg = setup_databases(
            verbosity=verbosity, interactive=False, keepdb=django_db_keepdb and not django_db_createdb
        )
        if owner:
            call_command("grant_app_role", app_role, stdout=io.StringIO())
    original_teardown = TransactionTestCase._fixture_teardown
    if owner:
        TransactionTestCase._fixture_teardown = _flush_as_owner
    yield
    TransactionTestCase._fixture_teardown = original_teardown
    if not django_db_keepdb:
        with django_db_blocker.unblock(), _connected_as(owner):
            teardown_databases(db_cfg, verbosity=verbosity)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Real hashing costs over a second per user on a busy 2-core machine; tests check access, not PBKDF2."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def learning_knocks_sent():
    """A submission knocks on the learning loop from a thread of the process; each test's knocks go out before
    the next test starts, so none lands in another test's broker."""
    from annotation.services.knocks import knocks

    yield
    knocks.flush()


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
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    env["DATABASE_URL"] = (
        f"postgres://{db['USER'] or 'postgres'}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
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
