"""Taxonomy operations: what each does to labels, annotations, the queue, exports, versions and the audit log."""

import json
import sys
import types

import pytest
import yaml

from annotation.exceptions import InvalidLabels, LabelInUse, TaxonomyInvalid
from annotation.models import (
    AnnotationLabel,
    AnnotationRevision,
    AuditEvent,
    Document,
    Label,
    Skip,
    TaxonomyVersion,
)
from annotation.selectors import review_labels
from annotation.services import taxonomy
from annotation.services.exports import export_records
from annotation.services.labeling import annotation_submit, labels_for_submission
from annotation.services.queue import next_document_for
from annotation.services.taxonomy import SplitPart
from tests.factories import AnnotationFactory, DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="admin")
    return user


def label(project, key):
    return Label.objects.get(taxonomy__project=project, key=key)


def annotate(project, *keys, status=Document.Status.LABELED, reviewer=None):
    document = DocumentFactory(project=project, status=status)
    return AnnotationFactory(
        document=document, reviewer=reviewer or UserFactory(), label_list=[label(project, k) for k in keys]
    )


def keys_of(annotation):
    return sorted(AnnotationLabel.objects.filter(annotation=annotation).values_list("label__key", flat=True))


def exported(project):
    return {record["docket_id"]: record for record in export_records(project)}


# --- Adding and editing -----------------------------------------------------------------------------------------


def test_adding_a_label_bumps_the_version_and_stores_a_snapshot(project, admin):
    taxonomy.label_add(project=project, actor=admin, key="user_choice", name="User choice", shortcut="4")
    project.taxonomy.refresh_from_db()
    assert project.taxonomy.version == 2
    versions = list(TaxonomyVersion.objects.filter(taxonomy=project.taxonomy).order_by("version"))
    assert [(v.version, v.operation) for v in versions] == [(1, "baseline"), (2, "add")]
    assert [lab["key"] for lab in versions[0].labels] == ["first_party", "third_party", "data_security"]
    assert versions[1].labels[-1]["key"] == "user_choice" and versions[1].created_by == admin


def test_labels_nest_three_levels_deep_and_export_in_tree_order(project, admin):
    taxonomy.label_add(project=project, actor=admin, key="ads", name="Advertising", parent_key="third_party")
    taxonomy.label_add(project=project, actor=admin, key="retargeting", name="Retargeting", parent_key="ads")
    assert label(project, "retargeting").parent.parent.key == "third_party"
    keys = [lab["key"] for lab in taxonomy.taxonomy_labels(project.taxonomy)]
    assert keys == ["first_party", "third_party", "ads", "retargeting", "data_security"]


def test_a_label_cannot_be_moved_under_its_own_descendant(project, admin):
    taxonomy.label_add(project=project, actor=admin, key="ads", name="Advertising", parent_key="third_party")
    with pytest.raises(TaxonomyInvalid, match="inside it"):
        taxonomy.label_update(label=label(project, "third_party"), actor=admin, parent="ads")


@pytest.mark.parametrize("shortcut", ["1", "s", "ab"])
def test_a_taken_reserved_or_long_shortcut_is_refused(project, admin, shortcut):
    with pytest.raises(TaxonomyInvalid):
        taxonomy.label_add(project=project, actor=admin, key="other", name="Other", shortcut=shortcut)
    assert project.taxonomy.versions.count() == 0


def test_shortcuts_clash_regardless_of_case(project, admin):
    taxonomy.label_add(project=project, actor=admin, key="other", name="Other", shortcut="x")
    with pytest.raises(TaxonomyInvalid, match="already belongs"):
        taxonomy.label_add(project=project, actor=admin, key="more", name="More", shortcut="X")


def test_rename_keeps_key_annotations_and_exports(project, admin):
    annotation = annotate(project, "third_party")
    taxonomy.label_rename(label=label(project, "third_party"), actor=admin, name="Sharing with others")
    assert label(project, "third_party").name == "Sharing with others"
    assert keys_of(annotation) == ["third_party"]
    assert exported(project)[annotation.document_id]["labels"] == ["third_party"]
    version = TaxonomyVersion.objects.get(taxonomy=project.taxonomy, operation="rename")
    assert version.details["changes"]["name"] == ["Third Party", "Sharing with others"]
    assert taxonomy.label_key_mapping(project, 1)["third_party"] == "third_party"


def test_an_edit_that_changes_nothing_makes_no_version(project, admin):
    taxonomy.label_update(label=label(project, "first_party"), actor=admin, name="First Party")
    assert not TaxonomyVersion.objects.filter(taxonomy=project.taxonomy).exclude(operation="baseline").exists()


# --- Merge -----------------------------------------------------------------------------------------------------


def test_merge_into_a_new_label_moves_annotations_and_keeps_their_history(admin):
    project = project_with_labels(("first_party", "third_party", "data_security"), multi_label=True)
    only_first = annotate(project, "first_party")
    both = annotate(project, "first_party", "third_party")
    untouched = annotate(project, "data_security")

    target = taxonomy.labels_merge(
        project=project,
        actor=admin,
        source_keys=["first_party", "third_party"],
        target_key="collection_sharing",
        target_name="Collection and sharing",
    )

    assert keys_of(only_first) == ["collection_sharing"]
    assert keys_of(both) == ["collection_sharing"]  # once, not twice
    assert keys_of(untouched) == ["data_security"]
    assert not Label.objects.filter(key__in=["first_party", "third_party"], taxonomy=project.taxonomy).exists()
    assert target.shortcut == "1" and target.order == 0  # the first source's place and shortcut
    revisions = AnnotationRevision.objects.filter(reason="taxonomy.merge", changed_by=admin)
    assert sorted(revisions.values_list("annotation_id", flat=True)) == sorted([only_first.pk, both.pk])
    # The state before the merge is a revision too, so history shows both sides.
    before = AnnotationRevision.objects.filter(annotation=both).order_by("id").first()
    assert sorted(before.label_keys) == ["first_party", "third_party"]
    assert exported(project)[both.document_id]["labels"] == ["collection_sharing"]
    assert taxonomy.label_key_mapping(project, 1) == {
        "first_party": "collection_sharing",
        "third_party": "collection_sharing",
        "data_security": "data_security",
    }


def test_merge_into_an_existing_label_keeps_it_and_removes_the_others(project, admin):
    annotation = annotate(project, "third_party")
    kept = annotate(project, "first_party")
    taxonomy.labels_merge(
        project=project, actor=admin, source_keys=["third_party", "first_party"], target_key="first_party"
    )
    assert keys_of(annotation) == ["first_party"] and keys_of(kept) == ["first_party"]
    assert list(Label.objects.filter(taxonomy=project.taxonomy).values_list("key", flat=True)) == [
        "first_party",
        "data_security",
    ]
    assert not AnnotationRevision.objects.filter(annotation=kept, reason="taxonomy.merge").exists()
    version = TaxonomyVersion.objects.get(taxonomy=project.taxonomy, operation="merge")
    assert version.details["sources"] == ["third_party"] and version.details["target"] == "first_party"


def test_merge_moves_the_sources_children_under_the_target(project, admin):
    taxonomy.label_add(project=project, actor=admin, key="ads", name="Advertising", parent_key="third_party")
    taxonomy.labels_merge(
        project=project, actor=admin, source_keys=["first_party", "third_party"], target_key="parties", target_name="P"
    )
    assert label(project, "ads").parent.key == "parties"


def test_merge_needs_two_labels(project, admin):
    with pytest.raises(TaxonomyInvalid, match="at least two"):
        taxonomy.labels_merge(project=project, actor=admin, source_keys=["first_party"], target_key="first_party")


def test_merged_label_is_what_reviewers_choose_afterwards(project, admin, reviewer):
    taxonomy.labels_merge(
        project=project, actor=admin, source_keys=["first_party", "third_party"], target_key="parties", target_name="P"
    )
    assert [lab["key"] for lab in review_labels(project)] == ["parties", "data_security"]
    with pytest.raises(InvalidLabels):
        labels_for_submission(project, ["first_party"])


# --- Split -----------------------------------------------------------------------------------------------------


def test_split_sends_documents_back_for_re_review_and_keeps_old_annotations(project, admin, reviewer):
    labeled = annotate(project, "third_party")
    flagged = annotate(project, "third_party", status=Document.Status.FLAGGED)
    other = annotate(project, "first_party")
    Skip.objects.create(document=labeled.document, reviewer=reviewer)

    parts = [SplitPart(key="processors", name="Processors"), SplitPart(key="advertisers", name="Advertisers")]
    new_labels, requeued = taxonomy.label_split(label=label(project, "third_party"), actor=admin, parts=parts)

    assert requeued == 1
    labeled.document.refresh_from_db()
    assert labeled.document.status == Document.Status.QUEUED
    assert "split into “Processors”, “Advertisers”" in labeled.document.rereview_reason
    flagged.document.refresh_from_db()
    assert flagged.document.status == Document.Status.FLAGGED and flagged.document.rereview_reason
    other.document.refresh_from_db()
    assert other.document.status == Document.Status.LABELED and not other.document.rereview_reason
    # The old answer stays as it was, in the database and in exports, until someone answers again.
    assert keys_of(labeled) == ["third_party"]
    record = exported(project)[labeled.document_id]
    assert record["labels"] == ["third_party"] and record["status"] == "queued"
    old = label(project, "third_party")
    assert old.deprecated and old.shortcut == ""
    assert [n.shortcut for n in new_labels] == ["2", ""]  # the first part takes over the shortcut
    assert [lab["key"] for lab in review_labels(project)] == [
        "first_party",
        "processors",
        "advertisers",
        "data_security",
    ]
    assert not Skip.objects.filter(document=labeled.document).exists()
    assert taxonomy.label_key_mapping(project, 1)["third_party"] is None


def test_split_document_comes_back_through_the_queue_and_takes_a_new_label(project, admin, reviewer):
    annotation = annotate(project, "third_party", reviewer=reviewer)
    parts = [SplitPart(key="processors", name="Processors"), SplitPart(key="advertisers", name="Advertisers")]
    taxonomy.label_split(label=label(project, "third_party"), actor=admin, parts=parts)

    offer = next_document_for(reviewer=reviewer, project=project)
    assert offer.document.pk == annotation.document_id
    annotation_submit(reviewer=reviewer, document=offer.document, label_keys=["advertisers"])
    assert keys_of(annotation) == ["advertisers"]
    reasons = list(AnnotationRevision.objects.filter(annotation=annotation).values_list("reason", "label_keys"))
    assert reasons[-1] == ("edit", ["advertisers"])
    assert Document.objects.get(pk=annotation.document_id).status == Document.Status.LABELED


def test_split_needs_two_parts_with_new_keys(project, admin):
    with pytest.raises(TaxonomyInvalid):
        taxonomy.label_split(label=label(project, "third_party"), actor=admin, parts=[SplitPart("a", "A")])
    with pytest.raises(TaxonomyInvalid, match="already has a label"):
        parts = [SplitPart("first_party", "A"), SplitPart("b", "B")]
        taxonomy.label_split(label=label(project, "third_party"), actor=admin, parts=parts)
    assert not label(project, "third_party").deprecated  # nothing of the failed split was kept


# --- Deprecate, restore, delete -------------------------------------------------------------------------------


def test_deprecated_label_is_hidden_for_labeling_but_kept_in_history_and_exports(project, admin):
    annotation = annotate(project, "data_security")
    taxonomy.label_deprecate(label=label(project, "data_security"), actor=admin)
    assert "data_security" not in [lab["key"] for lab in review_labels(project)]
    with pytest.raises(InvalidLabels):
        labels_for_submission(project, ["data_security"])
    assert keys_of(annotation) == ["data_security"]
    assert exported(project)[annotation.document_id]["labels"] == ["data_security"]
    assert taxonomy.label_key_mapping(project, 1)["data_security"] is None


def test_restore_gives_back_the_shortcut_when_still_free(project, admin):
    taxonomy.label_deprecate(label=label(project, "data_security"), actor=admin)
    assert label(project, "data_security").shortcut == ""
    taxonomy.label_restore(label=label(project, "data_security"), actor=admin)
    restored = label(project, "data_security")
    assert not restored.deprecated and restored.shortcut == "3"
    assert taxonomy.label_key_mapping(project, 1)["data_security"] == "data_security"


def test_deleting_a_label_in_use_is_refused_and_points_to_deprecate_or_merge(project, admin):
    annotate(project, "first_party")
    with pytest.raises(LabelInUse) as refused:
        taxonomy.label_delete(label=label(project, "first_party"), actor=admin)
    message = str(refused.value)
    assert "1 annotation on 1 document" in message and "Deprecate" in message and "merge" in message
    assert Label.objects.filter(key="first_party", taxonomy=project.taxonomy).exists()
    project.taxonomy.refresh_from_db()
    assert project.taxonomy.version == 1
    assert not AuditEvent.objects.filter(action="taxonomy.delete").exists()


def test_an_unused_label_can_be_deleted(project, admin):
    taxonomy.label_delete(label=label(project, "data_security"), actor=admin)
    assert not Label.objects.filter(key="data_security", taxonomy=project.taxonomy).exists()
    assert taxonomy.label_key_mapping(project, 1)["data_security"] is None
    assert AuditEvent.objects.get(action="taxonomy.delete").before["label"]["key"] == "data_security"


def test_a_label_with_children_cannot_be_deleted(project, admin):
    taxonomy.label_add(project=project, actor=admin, key="ads", name="Advertising", parent_key="third_party")
    with pytest.raises(TaxonomyInvalid, match="Advertising"):
        taxonomy.label_delete(label=label(project, "third_party"), actor=admin)


# --- Reorder, mode ---------------------------------------------------------------------------------------------


def test_moving_a_label_up_reorders_siblings_with_their_children(project, admin):
    taxonomy.label_add(project=project, actor=admin, key="ads", name="Advertising", parent_key="third_party")
    taxonomy.label_move(label=label(project, "third_party"), actor=admin, offset=-1)
    keys = [lab["key"] for lab in taxonomy.taxonomy_labels(project.taxonomy)]
    assert keys == ["third_party", "ads", "first_party", "data_security"]
    assert [lab["key"] for lab in review_labels(project)] == keys
    assert TaxonomyVersion.objects.filter(taxonomy=project.taxonomy, operation="reorder").count() == 1


def test_moving_the_first_label_up_changes_nothing(project, admin):
    taxonomy.label_move(label=label(project, "first_party"), actor=admin, offset=-1)
    assert not TaxonomyVersion.objects.filter(taxonomy=project.taxonomy, operation="reorder").exists()


def test_single_label_mode_is_refused_while_annotations_hold_several_labels(admin):
    project = project_with_labels(multi_label=True)
    annotate(project, "first_party", "third_party")
    with pytest.raises(TaxonomyInvalid, match="1 annotation hold"):
        taxonomy.taxonomy_set_mode(project=project, actor=admin, multi_label=False)
    project.refresh_from_db()
    assert project.multi_label


# --- Previews --------------------------------------------------------------------------------------------------


def test_previews_count_what_each_operation_touches(admin):
    project = project_with_labels(multi_label=True)
    annotate(project, "first_party")
    annotate(project, "first_party", "third_party")
    annotate(project, "third_party", status=Document.Status.FLAGGED)
    merge = taxonomy.operation_preview(project=project, operation="merge", label_keys=["first_party", "third_party"])
    assert (merge.annotations, merge.documents, merge.combined) == (3, 3, 1)
    split = taxonomy.operation_preview(project=project, operation="split", label_keys=["third_party"])
    assert (split.annotations, split.documents, split.requeued) == (2, 2, 1)
    delete = taxonomy.operation_preview(project=project, operation="delete", label_keys=["first_party"])
    assert delete.refused and "Deprecate" in delete.refused
    unused = taxonomy.operation_preview(project=project, operation="delete", label_keys=["data_security"])
    assert (unused.annotations, unused.refused) == (0, "")


# --- Files and templates ---------------------------------------------------------------------------------------


def test_export_and_import_round_trip_in_json_and_yaml(project, admin):
    taxonomy.label_add(project=project, actor=admin, key="ads", name="Advertising", parent_key="third_party")
    for fmt in ("json", "yaml"):
        text = taxonomy.taxonomy_export(project, fmt)
        other = project_with_labels(())
        taxonomy.taxonomy_import(project=other, actor=admin, data=taxonomy.taxonomy_parse(text, fmt=fmt))
        assert taxonomy.taxonomy_labels(other.taxonomy) == taxonomy.taxonomy_labels(project.taxonomy)


def test_import_reads_nested_yaml_children_and_mode(admin):
    project = project_with_labels(())
    text = """
mode: multi
labels:
  - key: sharing
    name: Sharing
    shortcut: "2"
    children:
      - key: ads
        name: Ad networks
        shortcut: a
        children:
          - {key: retargeting, name: Retargeting}
"""
    result = taxonomy.taxonomy_import(project=project, actor=admin, data=taxonomy.taxonomy_parse(text, fmt="yaml"))
    assert result.added == ["sharing", "ads", "retargeting"]
    assert label(project, "retargeting").parent.parent.key == "sharing"
    project.refresh_from_db()
    assert project.multi_label


def test_import_updates_known_keys_and_leaves_others(project, admin):
    data = {
        "labels": [{"key": "first_party", "name": "We collect"}, {"key": "new_one", "name": "New", "shortcut": "9"}]
    }
    result = taxonomy.taxonomy_import(project=project, actor=admin, data=data)
    assert (result.added, result.updated) == (["new_one"], ["first_party"])
    assert result.untouched == ["third_party", "data_security"]
    assert label(project, "first_party").name == "We collect" and label(project, "first_party").shortcut == "1"


def test_import_may_move_shortcuts_between_labels(project, admin):
    data = {"labels": [{"key": "first_party", "shortcut": "2"}, {"key": "third_party", "shortcut": "1"}]}
    taxonomy.taxonomy_import(project=project, actor=admin, data=data)
    assert (label(project, "first_party").shortcut, label(project, "third_party").shortcut) == ("2", "1")


@pytest.mark.parametrize(
    "labels, problem",
    [
        ([{"key": "a", "name": "A", "shortcut": "1"}], "would belong to both"),
        ([{"key": "a", "name": "A", "parent": "nowhere"}], "neither in the file"),
        ([{"key": "a", "name": "A", "parent": "b"}, {"key": "b", "name": "B", "parent": "a"}], "loop"),
        ([{"key": "a b", "name": "A"}], "letters, digits"),
        ([{"key": "a", "name": "A"}, {"key": "a", "name": "A again"}], "twice"),
        ([{"key": "a"}], "needs a name"),
        ([{"key": "a", "name": "A", "color": "red"}], "colour"),
    ],
)
def test_an_invalid_file_is_refused_whole(project, admin, labels, problem):
    with pytest.raises(TaxonomyInvalid, match=problem):
        taxonomy.taxonomy_import(project=project, actor=admin, data={"labels": labels})
    assert Label.objects.filter(taxonomy=project.taxonomy).count() == 3
    assert not TaxonomyVersion.objects.filter(taxonomy=project.taxonomy).exclude(operation="baseline").exists()


@pytest.mark.parametrize("text, fmt", [("{not json", "json"), ("labels: [", "yaml"), ("42", "json"), ("x", "csv")])
def test_unreadable_files_say_why(text, fmt):
    with pytest.raises(TaxonomyInvalid):
        taxonomy.taxonomy_parse(text, fmt=fmt)


def test_opp115_template_gives_the_ten_top_level_categories(admin):
    project = project_with_labels(())
    result = taxonomy.taxonomy_from_template(project=project, actor=admin, template="opp115")
    assert len(result.added) == 10
    assert label(project, "first_party").guideline.startswith("Use when")
    assert TaxonomyVersion.objects.get(taxonomy=project.taxonomy, version=result.version).operation == "template"


def test_exported_files_parse_as_plain_json_and_yaml(project):
    assert json.loads(taxonomy.taxonomy_export(project, "json"))["labels"][0]["key"] == "first_party"
    assert yaml.safe_load(taxonomy.taxonomy_export(project, "yaml"))["version"] == 1


# --- The model's label mapping ---------------------------------------------------------------------------------


def test_key_mapping_follows_merges_in_sequence_and_drops_splits_deletions_and_deprecations():
    operations = [
        ("rename", {"key": "a"}),
        ("merge", {"sources": ["a", "b"], "target": "ab"}),
        ("merge", {"sources": ["ab", "c"], "target": "abc"}),
        ("split", {"source": "d", "parts": ["d1", "d2"]}),
        ("delete", {"key": "e"}),
    ]
    mapping = taxonomy.compose_key_mapping(["a", "b", "c", "d", "e", "f", "g"], operations, ["abc", "d1", "d2", "f"])
    assert mapping == {"a": "abc", "b": "abc", "c": "abc", "d": None, "e": None, "f": "f", "g": None}


def test_key_mapping_from_the_current_version_is_the_identity_for_current_labels(project, admin):
    taxonomy.label_add(project=project, actor=admin, key="other", name="Other")
    assert taxonomy.label_key_mapping(project, 2) == {
        k: k for k in ["first_party", "third_party", "data_security", "other"]
    }


def test_key_mapping_from_an_intermediate_version_ignores_earlier_operations(project, admin):
    taxonomy.labels_merge(
        project=project, actor=admin, source_keys=["first_party", "third_party"], target_key="parties", target_name="P"
    )
    taxonomy.label_rename(label=label(project, "parties"), actor=admin, name="Parties")
    assert taxonomy.label_key_mapping(project, 2) == {"parties": "parties", "data_security": "data_security"}


# --- Side effects: audit, retrain, model status ----------------------------------------------------------------


def test_each_operation_writes_one_audit_event_with_before_and_after(project, admin):
    annotate(project, "first_party")
    taxonomy.label_add(project=project, actor=admin, key="x", name="X")
    taxonomy.label_rename(label=label(project, "x"), actor=admin, name="Y")
    taxonomy.label_deprecate(label=label(project, "x"), actor=admin)
    taxonomy.label_restore(label=label(project, "x"), actor=admin)
    taxonomy.labels_merge(project=project, actor=admin, source_keys=["x", "data_security"], target_key="data_security")
    parts = [SplitPart("p1", "P1"), SplitPart("p2", "P2")]
    taxonomy.label_split(label=label(project, "first_party"), actor=admin, parts=parts)
    taxonomy.label_move(label=label(project, "data_security"), actor=admin, offset=-1)
    taxonomy.label_delete(label=label(project, "p2"), actor=admin)
    taxonomy.taxonomy_set_mode(project=project, actor=admin, multi_label=True)
    events = list(AuditEvent.objects.filter(action__startswith="taxonomy.").order_by("id"))
    assert [e.action for e in events] == [
        "taxonomy.add",
        "taxonomy.rename",
        "taxonomy.deprecate",
        "taxonomy.restore",
        "taxonomy.merge",
        "taxonomy.split",
        "taxonomy.reorder",
        "taxonomy.delete",
        "taxonomy.mode",
    ]
    assert all(e.actor == admin and e.project == project for e in events)
    assert [(e.before["version"], e.after["version"]) for e in events] == [(n, n + 1) for n in range(1, 10)]
    assert events[1].before["name"] == "X" and events[1].after["changes"]["name"] == ["X", "Y"]


@pytest.fixture
def fake_learning_tasks(monkeypatch):
    """Stands in for learning.tasks.labels_changed, which the learning side provides."""
    calls = []
    module = types.ModuleType("learning.tasks")
    module.labels_changed = types.SimpleNamespace(delay=calls.append)
    monkeypatch.setitem(sys.modules, "learning.tasks", module)
    import learning

    monkeypatch.setattr(learning, "tasks", module, raising=False)
    return calls


def test_a_retrain_is_requested_once_the_change_is_committed(
    project, admin, fake_learning_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        taxonomy.label_add(project=project, actor=admin, key="x", name="X")
    assert fake_learning_tasks == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert fake_learning_tasks == [project.pk]


def test_no_retrain_is_requested_for_a_refused_change(
    project, admin, fake_learning_tasks, django_capture_on_commit_callbacks
):
    annotate(project, "first_party")
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(LabelInUse):
        taxonomy.label_delete(label=label(project, "first_party"), actor=admin)
    assert fake_learning_tasks == []


def test_without_the_learning_task_the_change_still_goes_through(
    project, admin, monkeypatch, django_capture_on_commit_callbacks
):
    import learning

    empty = types.ModuleType("learning.tasks")
    monkeypatch.setitem(sys.modules, "learning.tasks", empty)
    monkeypatch.setattr(learning, "tasks", empty, raising=False)
    with django_capture_on_commit_callbacks(execute=True):
        taxonomy.label_add(project=project, actor=admin, key="x", name="X")
    assert label(project, "x")


def test_model_status_says_outdated_and_how_suggestions_map(project, admin, monkeypatch):
    import learning.selectors

    model = types.SimpleNamespace(pk=7, number=3, taxonomy_version=1)
    monkeypatch.setattr(learning.selectors, "active_model_version", lambda p: model, raising=False)
    assert taxonomy.model_status(project)["outdated"] is False
    taxonomy.labels_merge(
        project=project, actor=admin, source_keys=["first_party", "third_party"], target_key="parties", target_name="P"
    )
    status = taxonomy.model_status(project)
    assert status["outdated"] and status["number"] == 3 and status["current_version"] == 2
    assert status["changed"] == {"first_party": "parties", "third_party": "parties"}


def test_model_status_is_empty_before_the_learning_side_has_a_model(project, monkeypatch):
    import learning.selectors

    monkeypatch.setattr(learning.selectors, "active_model_version", lambda p: None, raising=False)
    assert taxonomy.model_status(project) is None
    monkeypatch.delattr(learning.selectors, "active_model_version")
    assert taxonomy.model_status(project) is None


def test_a_version_bumped_by_another_writer_gets_a_baseline_snapshot_first(project, admin):
    project.taxonomy.version = 5
    project.taxonomy.save()
    taxonomy.label_add(project=project, actor=admin, key="x", name="X")
    versions = list(TaxonomyVersion.objects.filter(taxonomy=project.taxonomy).values_list("version", "operation"))
    assert versions == [(5, "baseline"), (6, "add")]


def test_a_broken_yaml_file_is_explained_in_one_sentence_with_its_line():
    broken = "labels:\n  - key: a\n    name: A\n   - key: b\n"
    with pytest.raises(TaxonomyInvalid) as caught:
        taxonomy.taxonomy_parse(broken, fmt="yaml")
    message = str(caught.value)
    assert "line 4" in message
    assert "^" not in message and 'in "<unicode string>"' not in message  # no parser dump of the text


def test_renaming_with_a_guideline_sent_back_with_crlf_line_breaks_logs_only_the_rename(project, admin):
    label = Label.objects.get(taxonomy__project=project, key="first_party")
    taxonomy.label_update(label=label, actor=admin, guideline="Line one.\n\nLine two.")
    taxonomy.label_update(label=label, actor=admin, name="Collected by us", guideline="Line one.\r\n\r\nLine two.")
    version = TaxonomyVersion.objects.filter(taxonomy=project.taxonomy).order_by("-version").first()
    assert version.operation == "rename"
    assert set(version.details["changes"]) == {"name"}


def test_merge_preview_into_an_existing_label_counts_what_moves_not_what_is_there(project, admin):
    first, third = (Label.objects.get(taxonomy__project=project, key=k) for k in ("first_party", "third_party"))
    for _ in range(3):
        AnnotationFactory(document=DocumentFactory(project=project), label_list=[first])
    moved = [AnnotationFactory(document=DocumentFactory(project=project), label_list=[third]) for _ in range(2)]
    preview = taxonomy.operation_preview(
        project=project, operation="merge", label_keys=["first_party", "third_party"], target_key="first_party"
    )
    taxonomy.labels_merge(
        project=project, actor=admin, source_keys=["first_party", "third_party"], target_key="first_party"
    )
    really_moved = AnnotationRevision.objects.filter(reason="taxonomy.merge").count()
    assert (preview.annotations, preview.documents) == (really_moved, really_moved) == (len(moved), 2)


def test_current_labels_add_up_single_label_merges_and_keep_the_highest_multi_label_one():
    mapped = taxonomy.CurrentLabels(
        taxonomy_version=3, model_taxonomy_version=1, mapping={"a": "a", "b": "a", "c": None, "d": "d"}
    )
    probabilities = {"a": 0.3, "b": 0.4, "c": 0.2, "d": 0.1}
    assert mapped.probabilities(probabilities, multi_label=False) == pytest.approx({"a": 0.7, "d": 0.1})
    assert mapped.probabilities(probabilities, multi_label=True) == pytest.approx({"a": 0.4, "d": 0.1})
    assert (mapped.labels, mapped.unmapped) == (["a", "d"], ["c"])


def test_a_suggestion_after_a_merge_shows_the_merged_label_with_the_sources_probability(project, admin):
    from annotation.selectors import suggestion_for
    from learning.models import ModelVersion, QueuePriority

    document = DocumentFactory(project=project)
    ModelVersion.objects.create(
        project=project,
        number=1,
        status="active",
        kind="fast",
        taxonomy_version=project.taxonomy.version,
        label_keys=["first_party", "third_party", "data_security"],
        artifact_path="m/1",
    )
    QueuePriority.objects.create(
        document=document,
        project=project,
        score=0.5,
        model_version=1,
        probabilities={"first_party": 0.3, "third_party": 0.45, "data_security": 0.25},
    )
    taxonomy.labels_merge(
        project=project,
        actor=admin,
        source_keys=["first_party", "third_party"],
        target_key="parties",
        target_name="Parties",
    )
    keys = [label["key"] for label in review_labels(project)]
    suggestion = suggestion_for(project, document, keys)
    assert suggestion["labels"] == ["parties"]
    assert suggestion["probabilities"] == pytest.approx({"parties": 0.75, "data_security": 0.25})
