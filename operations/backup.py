"""Backups of the database and the artifact store that agree with each other, and their restore.

Model versions and embedding caches in the database point at files in the artifact store, and training goes
on while a backup runs. So the backup opens one PostgreSQL snapshot, dumps the database from it
(`pg_dump --snapshot`), reads from the same snapshot which files the dump points at, and then copies the
artifact store. Files written after the snapshot are copied too and do no harm; a file the snapshot points at
that disappeared before it was copied (an embedding cache merged meanwhile) is listed in the manifest, and
restore drops its row (the cache is rebuilt on demand). A model file missing fails the backup.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
from django.conf import settings
from django.db import connection, transaction

DUMP = "database.dump"
ARTIFACTS = "artifacts"
MANIFEST = "manifest.json"
# Scratch files of writes in progress (atomic renames): never part of a backup.
SKIPPED_SUFFIXES = (".partial", ".tmp", ".link")


class BackupFailed(Exception):
    """The backup could not be made whole; nothing usable was left at the destination."""


class RestoreRefused(Exception):
    """The restore target is not empty, or the backup is incomplete or altered."""


@dataclass
class BackupResult:
    directory: Path
    database_bytes: int
    artifact_files: int
    artifact_bytes: int
    model_versions: int
    missing_caches: list[str]


def _pg_environment() -> tuple[list[str], dict[str, str]]:
    """Connection options of the default database for pg_dump/pg_restore, password in the environment."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        raise BackupFailed("backup and restore need PostgreSQL (DATABASE_URL=postgres://...)")
    args = ["--host", db.get("HOST") or "127.0.0.1", "--port", str(db.get("PORT") or 5432)]
    if db.get("USER"):
        args += ["--username", db["USER"]]
    env = dict(os.environ)
    if db.get("PASSWORD"):
        env["PGPASSWORD"] = db["PASSWORD"]
    return args, env


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_tree(source: Path, destination: Path) -> tuple[int, int]:
    files = size = 0
    if not source.exists():
        destination.mkdir(parents=True, exist_ok=True)
        return 0, 0
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.name.endswith(SKIPPED_SUFFIXES) or any(p.endswith(SKIPPED_SUFFIXES) for p in relative.parts):
            continue
        target = destination / relative
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copy2(path, target)
            except FileNotFoundError:  # removed while we walked (a merged cache, a pruned model)
                continue
            files += 1
            size += target.stat().st_size
    return files, size


def backup_create(*, destination: Path) -> BackupResult:
    """Write database.dump, artifacts/ and manifest.json into `destination` (which must not exist yet)."""
    destination = Path(destination)
    if destination.exists() and any(destination.iterdir()):
        raise BackupFailed(f"{destination} is not empty; give a new directory for each backup")
    partial = destination.with_name(destination.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    args, env = _pg_environment()
    db = settings.DATABASES["default"]
    snapshot_connection = psycopg2.connect(
        dbname=db["NAME"],
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
    )
    try:
        snapshot_connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with snapshot_connection.cursor() as cursor:
            cursor.execute("SELECT pg_export_snapshot()")
            snapshot = cursor.fetchone()[0]
            dump = subprocess.run(
                ["pg_dump", *args, "--format=custom", f"--snapshot={snapshot}", "--file", str(partial / DUMP)]
                + [db["NAME"]],
                env=env,
                capture_output=True,
                text=True,
            )
            if dump.returncode != 0:
                raise BackupFailed(f"pg_dump failed: {dump.stderr.strip()}")
            cursor.execute(
                "SELECT number, project_id, artifact_path FROM learning_modelversion "
                "WHERE artifact_path <> '' AND pruned_at IS NULL ORDER BY project_id, number"
            )
            models = cursor.fetchall()
            cursor.execute("SELECT path FROM learning_embeddingshard ORDER BY id")
            shards = [row[0] for row in cursor.fetchall()]
            # Copy while the snapshot is held, so what it points at is what we look for.
            files, size = _copy_tree(Path(settings.ARTIFACT_DIR), partial / ARTIFACTS)
        snapshot_connection.rollback()
    finally:
        snapshot_connection.close()
    missing_models = [
        f"v{n} of project {p}: {path}" for n, p, path in models if not (partial / ARTIFACTS / path).is_dir()
    ]
    if missing_models:
        shutil.rmtree(partial, ignore_errors=True)
        raise BackupFailed("model files disappeared during the backup: " + "; ".join(missing_models))
    missing_caches = [path for path in shards if not (partial / ARTIFACTS / path).is_file()]
    manifest = {
        "format": 1,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": {"file": DUMP, "sha256": _sha256(partial / DUMP), "bytes": (partial / DUMP).stat().st_size},
        "artifacts": {"files": files, "bytes": size},
        "model_versions": len(models),
        "missing_embedding_caches": missing_caches,
    }
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=2))
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists():
        destination.rmdir()
    os.replace(partial, destination)
    return BackupResult(destination, manifest["database"]["bytes"], files, size, len(models), missing_caches)


def backup_restore(*, source: Path) -> dict:
    """Restore a backup into the configured (empty) database and (empty) artifact directory."""
    source = Path(source)
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except FileNotFoundError as error:
        raise RestoreRefused(f"{source} has no {MANIFEST}: not a Docket backup, or an unfinished one") from error
    if _sha256(source / DUMP) != manifest["database"]["sha256"]:
        raise RestoreRefused(f"{DUMP} does not match its checksum in {MANIFEST}; the backup was altered or damaged")
    artifact_dir = Path(settings.ARTIFACT_DIR)
    if artifact_dir.exists() and any(artifact_dir.iterdir()):
        raise RestoreRefused(f"the artifact directory {artifact_dir} is not empty; restore into an empty one")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        if cursor.fetchone()[0]:
            raise RestoreRefused(
                f"the database {settings.DATABASES['default']['NAME']} already has tables; restore into a new one"
            )
    connection.close()
    args, env = _pg_environment()
    restored = subprocess.run(
        ["pg_restore", *args, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
        + ["--dbname", settings.DATABASES["default"]["NAME"], str(source / DUMP)],
        env=env,
        capture_output=True,
        text=True,
    )
    if restored.returncode != 0:
        raise RestoreRefused(f"pg_restore failed: {restored.stderr.strip()}")
    files, size = _copy_tree(source / ARTIFACTS, artifact_dir)
    dropped = 0
    missing = manifest.get("missing_embedding_caches") or []
    if missing:
        from learning.models import EmbeddingShard

        with transaction.atomic():
            dropped, _ = EmbeddingShard.objects.filter(path__in=missing).delete()
    return {"artifact_files": files, "artifact_bytes": size, "dropped_embedding_caches": dropped, **manifest}
