"""manage.py backup and restore: the database and the artifact store together, into an empty installation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import environ
import psycopg2
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation.models import AuditEvent, Document
from annotation.services.audit import audit_record
from learning.models import ModelVersion
from operations.backup import MANIFEST, BackupFailed, backup_create
from tests.factories import project_with_labels

ROOT = Path(__file__).resolve().parent.parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


def installation_with_a_model(artifact_dir: Path):
    project = project_with_labels()
    Document.objects.create(project=project, text="We keep logs for a year.", content_hash="a" * 64)
    model_dir = artifact_dir / "models" / str(project.pk) / "v1-test"
    model_dir.mkdir(parents=True)
    (model_dir / "model.safetensors").write_bytes(b"weights" * 1000)
    ModelVersion.objects.create(
        project=project,
        number=1,
        status="active",
        kind="fast",
        taxonomy_version=1,
        artifact_path=str(model_dir.relative_to(artifact_dir)),
    )
    audit_record(action="project.settings_changed", actor_label="backup test", project=project, after={"x": 1})
    return project, model_dir


def owner_role() -> tuple[str, str]:
    """Restores create and fill a database: the owner role's job (docs/deploy.md), not the restricted app's."""
    if settings.DATABASE_OWNER_URL:
        config = environ.Env.db_url_config(settings.DATABASE_OWNER_URL)
        return config["USER"], config.get("PASSWORD") or ""
    db = settings.DATABASES["default"]
    return db["USER"] or "postgres", db.get("PASSWORD") or ""


def fresh_database(name: str) -> str:
    db = settings.DATABASES["default"]
    user, password = owner_role()
    connection = psycopg2.connect(
        dbname="postgres", host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=user, password=password
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    secret = f":{password}" if password else ""
    return f"postgres://{user}{secret}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"


def drop_database(name: str) -> None:
    db = settings.DATABASES["default"]
    user, password = owner_role()
    connection = psycopg2.connect(
        dbname="postgres", host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=user, password=password
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
    connection.close()


def restore(source: Path, database_url: str, artifact_dir: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DOCKET_ARTIFACT_DIR": str(artifact_dir),
        "DOCKET_DEVELOPMENT": "1",
    }
    return subprocess.run(
        [sys.executable, "manage.py", "restore", str(source)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_backup_restores_into_an_empty_installation_with_the_same_rows_and_files(artifact_dir, tmp_path):
    project, model_dir = installation_with_a_model(artifact_dir)
    call_command("backup", str(tmp_path / "backup"))
    manifest = json.loads((tmp_path / "backup" / MANIFEST).read_text())
    assert manifest["model_versions"] == 1 and manifest["artifacts"]["files"] == 1

    name = f"{settings.DATABASES['default']['NAME']}_restored"
    url = fresh_database(name)
    try:
        restored_artifacts = tmp_path / "restored-artifacts"
        result = restore(tmp_path / "backup", url, restored_artifacts)
        assert result.returncode == 0, result.stderr
        restored_model = restored_artifacts / model_dir.relative_to(artifact_dir) / "model.safetensors"
        assert restored_model.read_bytes() == (model_dir / "model.safetensors").read_bytes()
        connection = psycopg2.connect(url)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM annotation_document")
            assert cursor.fetchone()[0] == Document.objects.count()
            cursor.execute("SELECT action FROM annotation_auditevent ORDER BY id")
            assert [row[0] for row in cursor.fetchall()] == list(
                AuditEvent.objects.order_by("id").values_list("action", flat=True)
            )
            cursor.execute("SELECT artifact_path, status FROM learning_modelversion")
            assert cursor.fetchall() == [(str(model_dir.relative_to(artifact_dir)), "active")]
        connection.close()
        # A second restore into the same (now full) installation is refused, and changes nothing.
        again = restore(tmp_path / "backup", url, tmp_path / "other-artifacts")
        assert again.returncode != 0 and "already has tables" in again.stderr
    finally:
        drop_database(name)


def test_a_backup_whose_model_files_are_missing_fails_and_leaves_nothing(artifact_dir, tmp_path):
    _, model_dir = installation_with_a_model(artifact_dir)
    for path in model_dir.iterdir():
        path.unlink()
    model_dir.rmdir()
    with pytest.raises(BackupFailed, match="model files disappeared"):
        backup_create(destination=tmp_path / "backup")
    assert not (tmp_path / "backup").exists() and not (tmp_path / "backup.partial").exists()


def test_restore_refuses_a_backup_whose_dump_was_altered(artifact_dir, tmp_path):
    installation_with_a_model(artifact_dir)
    call_command("backup", str(tmp_path / "backup"))
    with open(tmp_path / "backup" / "database.dump", "ab") as dump:
        dump.write(b"tampered")
    with pytest.raises(CommandError, match="does not match its checksum"):
        call_command("restore", str(tmp_path / "backup"))
