"""A project deleted while its queue is being rescored: the task ends quietly and no file of it stays behind."""

import pytest
from django.test import Client

from annotation.models import AuditEvent, Project
from learning import services, tasks
from learning.models import EmbeddingShard
from learning.services import pool
from tests.factories import UserFactory
from tests.learning.conftest import build_labelled_project

pytestmark = [pytest.mark.django_db(transaction=True)]


def project_files(project_id, root):
    return sorted(p for p in root.rglob("*") if p.is_file() and f"/{project_id}/" in f"/{p.relative_to(root)}")


def test_deleting_a_project_while_its_rescore_runs_ends_the_task_quietly_and_removes_its_files(
    artifact_dir, monkeypatch
):
    project, _ = build_labelled_project(pool=12)
    project_id = project.pk
    staff = UserFactory(is_staff=True, is_superuser=True)
    deleted = []
    read_pool = services.queued_pool

    def pool_then_delete(*args, **kwargs):
        pool = read_pool(*args, **kwargs)
        if not deleted:
            # The admin deletes the project while the worker holds the queue in memory, before it embeds it.
            admin = Client()
            admin.force_login(staff)
            response = admin.post(f"/admin/annotation/project/{project_id}/delete/", {"post": "yes"})
            assert response.status_code == 302, response.content[:2000]
            deleted.append(True)
        return pool

    monkeypatch.setattr(pool, "queued_pool", pool_then_delete)  # where the rescore reads the queue
    outcome = tasks.rescore_pool(project_id)

    assert deleted and not Project.objects.filter(pk=project_id).exists()
    assert outcome == {"project": project_id, "written": 0, "project_deleted": True}
    assert not EmbeddingShard.objects.filter(project_id=project_id).exists()
    assert project_files(project_id, artifact_dir) == []
    assert AuditEvent.objects.filter(action="project.deleted", target_id=str(project_id)).exists()


def test_deleting_a_project_removes_its_models_and_embedding_caches(artifact_dir):
    from annotation.services.projects import project_delete

    project, _ = build_labelled_project(pool=4)
    assert tasks.rescore_pool(project.pk)["written"] == 4  # cold start: embeddings cached on disk
    assert project_files(project.pk, artifact_dir)
    project_delete(actor=None, project=project)
    assert project_files(project.pk, artifact_dir) == []
