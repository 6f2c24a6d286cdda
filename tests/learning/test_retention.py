"""Pruning model files and embedding caches: what goes, what stays, and that nothing kept is touched."""

import os

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from annotation.models import AuditEvent
from learning import services, serving
from learning.exceptions import ModelSwitchRefused
from learning.ml.classifier import base_body_id, default_base_model
from learning.models import EmbeddingShard, ModelVersion, TrainingRun
from learning.retention import artifacts_prune, checkpoints_prune
from learning.services import _shard_write
from tests.factories import UserFactory, project_with_labels

pytestmark = pytest.mark.django_db


def version(project, number, status, body, *, link_to=None, kind="fast"):
    """A version with files on disk; `link_to` hard-links the body file of an earlier version, as fast runs do."""
    path = f"models/{project.pk}/v{number}"
    directory = services.artifact_root() / path
    directory.mkdir(parents=True)
    if link_to is not None:
        os.link(link_to.artifact_dir / "model.safetensors", directory / "model.safetensors")
    else:
        (directory / "model.safetensors").write_bytes(b"w" * 1000)
    (directory / "model_head.pkl").write_bytes(b"h" * 10)
    return ModelVersion.objects.create(
        project=project, number=number, status=status, kind=kind, taxonomy_version=1, artifact_path=path, body_id=body
    )


def shard(project, body):
    return _shard_write(project.pk, body, np.arange(4, dtype=np.int64), np.ones((4, 8), dtype=np.float32))


@pytest.fixture
def history(artifact_dir):
    """v1 and v2 fine-tuned bodies b1 and b2; v3-v5 head refits sharing v2's body; v5 serves; v6 trains."""
    project = project_with_labels()
    v1 = version(project, 1, "retired", "b1", kind="slow")
    v2 = version(project, 2, "retired", "b2", kind="slow")
    v3 = version(project, 3, "retired", "b2", link_to=v2)
    v4 = version(project, 4, "ready", "b2", link_to=v2)
    v5 = version(project, 5, "active", "b2", link_to=v2)
    ModelVersion.objects.create(project=project, number=6, status="training", kind="fast", taxonomy_version=1)
    base = base_body_id(default_base_model())
    shards = {"b1": shard(project, "b1"), "b2": shard(project, "b2"), "base": shard(project, base)}
    return project, (v1, v2, v3, v4, v5), shards


def test_old_versions_and_unused_caches_go_and_everything_kept_stays(history, django_capture_on_commit_callbacks):
    project, (v1, v2, v3, v4, v5), shards = history
    b1_file = services.artifact_root() / shards["b1"].path
    expected_bytes = 1010 + 10 + b1_file.stat().st_size  # v2's body is shared with kept versions: frees nothing

    with django_capture_on_commit_callbacks(execute=True):
        result = artifacts_prune(project=project, keep=2, actor=UserFactory())

    assert (result.versions, result.bodies, result.shards) == ([1, 2], ["b1"], 1)
    assert result.bytes_freed == expected_bytes
    pruned = dict(ModelVersion.objects.filter(project=project).values_list("number", "pruned_at"))
    assert sorted(n for n, at in pruned.items() if at is not None) == [1, 2]
    assert not v1.artifact_dir.exists() and not v2.artifact_dir.exists()
    for kept in (v3, v4, v5):  # the shared body is still whole in every kept version
        assert (kept.artifact_dir / "model.safetensors").read_bytes() == b"w" * 1000
    assert not b1_file.exists()
    assert set(EmbeddingShard.objects.filter(project=project).values_list("body_id", flat=True)) == {
        "b2",
        base_body_id(default_base_model()),
    }
    event = AuditEvent.objects.get(action="model.artifacts_pruned", project=project)
    assert event.after["versions"] == [1, 2] and event.after["bytes_freed"] == expected_bytes

    # Running it again finds nothing more to do.
    again = artifacts_prune(project=project, keep=2)
    assert (again.versions, again.shards, again.bytes_freed) == ([], 0, 0)


def test_a_pruned_version_can_be_neither_promoted_rolled_back_to_nor_pinned(
    history, django_capture_on_commit_callbacks
):
    project, (v1, v2, v3, v4, v5), _ = history
    with django_capture_on_commit_callbacks(execute=True):
        artifacts_prune(project=project, keep=2)
    admin = UserFactory()
    with pytest.raises(ModelSwitchRefused, match="pruned"):
        services.model_version_promote(version=v2, actor=admin)
    with pytest.raises(serving.NoModelReady, match="pruned"):
        serving.ModelCache(loader=lambda path: pytest.fail("a pruned version must not be loaded")).version(project, 1)
    with django_capture_on_commit_callbacks():
        target = services.model_version_rollback(project=project, actor=admin)
    assert target.number == 3  # the newest retired version whose files are still there


def test_a_dry_run_says_what_would_go_and_deletes_nothing(history):
    project, versions, shards = history
    result = artifacts_prune(project=project, keep=2, dry_run=True)
    assert result.versions == [1, 2] and result.shards == 1
    assert all(v.artifact_dir.exists() for v in versions)
    assert EmbeddingShard.objects.filter(project=project).count() == 3
    assert not ModelVersion.objects.filter(pruned_at__isnull=False).exists()
    assert not AuditEvent.objects.filter(action="model.artifacts_pruned").exists()


def test_the_command_reports_per_project_and_refuses_to_keep_nothing(history, capsys):
    project, versions, _ = history
    call_command("prune_artifacts", str(project.pk), "--keep", "2", "--dry-run")
    out = capsys.readouterr().out
    assert f"{project.name}: v1, v2, 1 embedding shard(s) of 1 old bodies" in out
    assert "would free" in out and all(v.artifact_dir.exists() for v in versions)
    with pytest.raises(CommandError, match="at least 1"):
        call_command("prune_artifacts", "--keep", "0")
    with pytest.raises(CommandError, match="No project"):
        call_command("prune_artifacts", "no such project")


def test_the_models_page_offers_no_rollback_to_pruned_files_and_marks_them(artifact_dir, client):
    from tests.factories import MembershipFactory

    project = project_with_labels()
    old = version(project, 1, "retired", "b1", kind="slow")
    version(project, 2, "active", "b1", link_to=old)
    admin = UserFactory()
    MembershipFactory(project=project, user=admin, role="admin")
    client.force_login(admin)
    assert 'id="rollback"' in client.get(f"/projects/{project.pk}/models/").content.decode()
    ModelVersion.objects.filter(pk=old.pk).update(pruned_at="2026-11-20T00:00:00Z")
    html = client.get(f"/projects/{project.pk}/models/").content.decode()
    assert 'id="rollback"' not in html and "files pruned" in html
    # The page's navigation is the project's, with the admin's Quality and Manage links.
    assert f'href="/projects/{project.pk}/quality/"' in html and f'href="/projects/{project.pk}/manage/"' in html


def test_checkpoints_of_ended_runs_go_and_a_resumable_one_stays(artifact_dir):
    """A worker stopped between a run's last commit and its cleanup leaves the checkpoint; pruning removes it."""
    project = project_with_labels()
    other = project_with_labels()
    runs = {
        status: TrainingRun.objects.create(project=project, kind="slow", trigger="admin", status=status)
        for status in ("queued", "running", "succeeded", "failed", "refused")
    }
    elsewhere = TrainingRun.objects.create(project=other, kind="slow", trigger="admin", status="succeeded")
    for run in [*runs.values(), elsewhere]:
        services.fine_tune_checkpoint(run.pk).directory.mkdir(parents=True)
    gone = services.fine_tune_checkpoint(elsewhere.pk + 1000).directory  # its run was deleted with its project
    gone.mkdir(parents=True)

    assert checkpoints_prune(projects=[project], dry_run=True) == sorted(
        runs[s].pk for s in ("succeeded", "failed", "refused")
    )
    assert services.fine_tune_checkpoint(runs["succeeded"].pk).directory.exists()

    call_command("prune_artifacts", str(project.pk), "--keep", "2")
    for status, run in runs.items():
        assert services.fine_tune_checkpoint(run.pk).directory.exists() == (status in ("queued", "running"))
    assert services.fine_tune_checkpoint(elsewhere.pk).directory.exists() and gone.exists()

    call_command("prune_artifacts", "--keep", "2")
    assert not services.fine_tune_checkpoint(elsewhere.pk).directory.exists() and not gone.exists()
    assert services.fine_tune_checkpoint(runs["running"].pk).directory.exists()
