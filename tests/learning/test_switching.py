"""Which model serves: promotion policies, manual promote and rollback, atomic and audited."""

import pytest
from django.db import IntegrityError, transaction

from annotation.models import AuditEvent, Project
from learning import services, tasks
from learning.exceptions import ModelSwitchRefused
from learning.models import ModelVersion
from learning.services import registry
from tests.factories import project_with_labels

pytestmark = pytest.mark.django_db

Policy = Project.PromotionPolicy


def version(project, number, status, **fields) -> ModelVersion:
    return ModelVersion.objects.create(
        project=project,
        number=number,
        status=status,
        kind="fast",
        taxonomy_version=1,
        artifact_path=f"models/{project.pk}/v{number}",
        **fields,
    )


def statuses(project) -> dict[int, str]:
    return dict(ModelVersion.objects.filter(project=project).values_list("number", "status"))


@pytest.fixture
def rescores(monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.rescore_pool, "delay", lambda project_id: sent.append(project_id))
    return sent


def test_promote_flips_both_versions_in_one_transaction_audits_and_rescores(
    project, project_admin, django_capture_on_commit_callbacks, rescores
):
    version(project, 1, "active")
    ready = version(project, 2, "ready")
    with django_capture_on_commit_callbacks(execute=True):
        services.model_version_promote(version=ready, actor=project_admin)
    assert statuses(project) == {1: "retired", 2: "active"}
    event = AuditEvent.objects.get(action="model.promote")
    assert (event.actor, event.project, event.target_id) == (project_admin, project, str(ready.pk))
    assert event.before == {"active_version": 1}
    assert event.after["active_version"] == 2
    assert rescores == [project.pk]


def test_a_promotion_that_fails_midway_changes_nothing(project, project_admin, monkeypatch):
    version(project, 1, "active")
    ready = version(project, 2, "ready")

    def broken_audit(**kwargs):
        raise RuntimeError("audit log unavailable")

    monkeypatch.setattr(registry, "audit_record", broken_audit)  # where the switch writes its audit row
    with pytest.raises(RuntimeError):
        services.model_version_promote(version=ready, actor=project_admin)
    assert statuses(project) == {1: "active", 2: "ready"}


def test_the_database_allows_one_active_version_per_project(project):
    version(project, 1, "active")
    with pytest.raises(IntegrityError), transaction.atomic():
        version(project, 2, "active")


def test_a_usable_version_needs_its_artifact(project):
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(project=project, number=1, status="ready", kind="fast", taxonomy_version=1)


def test_rollback_steps_back_through_retired_versions_and_is_audited(project, project_admin, rescores):
    version(project, 1, "retired")
    version(project, 2, "ready")  # never served: skipped
    version(project, 3, "retired")
    version(project, 4, "active")
    assert services.model_version_rollback(project=project, actor=project_admin).number == 3
    assert statuses(project) == {1: "retired", 2: "ready", 3: "active", 4: "retired"}
    assert services.model_version_rollback(project=project, actor=project_admin).number == 1
    events = list(AuditEvent.objects.filter(action="model.rollback").order_by("id"))
    assert [(e.before, e.after["active_version"]) for e in events] == [
        ({"active_version": 4}, 3),
        ({"active_version": 3}, 1),
    ]
    assert all(e.actor == project_admin for e in events)


def test_rollback_with_nothing_earlier_is_refused_with_a_reason(project, project_admin):
    version(project, 1, "active")
    with pytest.raises(ModelSwitchRefused, match="nothing to roll back to"):
        services.model_version_rollback(project=project, actor=project_admin)
    assert statuses(project) == {1: "active"}


def test_a_failed_version_cannot_be_promoted(project, project_admin):
    version(project, 1, "active")
    failed = ModelVersion.objects.create(project=project, number=2, status="failed", kind="slow", taxonomy_version=1)
    with pytest.raises(ModelSwitchRefused, match="failed"):
        services.model_version_promote(version=failed, actor=project_admin)
    assert statuses(project) == {1: "active", 2: "failed"}


def test_versions_of_another_project_are_untouched(project, project_admin, rescores):
    other = project_with_labels(("a", "b"))
    version(other, 1, "active")
    version(project, 1, "active")
    ready = version(project, 2, "ready")
    services.model_version_promote(version=ready, actor=project_admin)
    assert statuses(other) == {1: "active"}


@pytest.mark.parametrize(
    ("new", "old", "promoted"),
    [(0.80, 0.80, True), (0.81, 0.80, True), (0.79, 0.80, False)],
)
def test_not_worse_policy_compares_macro_f1_on_the_same_evaluation_set(new, old, promoted):
    comparison = {
        "comparable": True,
        "new_macro_f1": new,
        "active_macro_f1": old,
        "n_documents": 12,
        "active_version": 3,
    }
    decision, reason = services.promotion_decision(policy=Policy.NOT_WORSE, has_active=True, comparison=comparison)
    assert decision is promoted
    assert "same 12 evaluation documents" in reason


def test_always_and_manual_policies_ignore_the_metrics():
    worse = {"comparable": True, "new_macro_f1": 0.1, "active_macro_f1": 0.9, "n_documents": 5, "active_version": 1}
    assert services.promotion_decision(policy=Policy.ALWAYS, has_active=True, comparison=worse)[0] is True
    assert services.promotion_decision(policy=Policy.MANUAL, has_active=True, comparison=worse)[0] is False
    assert services.promotion_decision(policy=Policy.MANUAL, has_active=False, comparison={})[0] is False


def test_the_first_model_is_promoted_without_anything_to_compare():
    decision, reason = services.promotion_decision(policy=Policy.NOT_WORSE, has_active=False, comparison={})
    assert decision is True and "First model" in reason


def test_reviewer_cannot_reach_the_switch_through_the_page(client, project, reviewer):
    ready = version(project, 1, "ready")
    client.force_login(reviewer)
    response = client.post(f"/projects/{project.pk}/models/{ready.number}/promote/")
    assert response.status_code == 403
    assert statuses(project) == {1: "ready"}


def test_admin_promotes_through_the_page(client, project, project_admin, rescores):
    version(project, 1, "active")
    version(project, 2, "ready")
    client.force_login(project_admin)
    response = client.post(f"/projects/{project.pk}/models/2/promote/")
    assert response.status_code == 302
    assert statuses(project) == {1: "retired", 2: "active"}
