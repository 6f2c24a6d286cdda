"""Review quality pages: admins only, the dashboard's tables and CSV, gold marking, sending a document back."""

import numpy as np
import pytest

from annotation.models import AuditEvent, Document, GoldAnswer, Label
from annotation.services.labeling import annotation_submit
from learning.services import _shard_write
from quality.label_errors import project_body_id
from tests.factories import DocumentFactory, MembershipFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("artifact_dir")]


PAGES = ["", "adjudication/", "gold/", "label-errors/"]


@pytest.fixture
def labeled(project, reviewer):
    documents = [DocumentFactory(project=project, metadata={"product": ["Mail", "Maps"][i % 2]}) for i in range(6)]
    for i, document in enumerate(documents):
        annotation_submit(reviewer=reviewer, document=document, label_keys=[["first_party", "third_party"][i % 2]])
    return documents


@pytest.mark.parametrize("page", PAGES)
def test_quality_pages_are_for_admins(client, project, reviewer, project_admin, page):
    client.force_login(reviewer)
    assert client.get(f"/projects/{project.pk}/quality/{page}").status_code == 403
    client.force_login(UserFactory())
    assert client.get(f"/projects/{project.pk}/quality/{page}").status_code == 404
    client.force_login(project_admin)
    assert client.get(f"/projects/{project.pk}/quality/{page}").status_code == 200


def test_dashboard_shows_every_chart_with_a_table_and_withholds_agreement(client, project, project_admin, labeled):
    client.force_login(project_admin)
    html = client.get(f"/projects/{project.pk}/quality/?field=product").content.decode()
    for chart in ("labels", "batches", "weeks", "field", "burndown", "throughput", "agreement", "confusion", "models"):
        assert f'id="chart-{chart}"' in html
    assert "<svg" in html and "Table view" in html
    assert "Not enough overlap yet" in html
    assert 'src="http' not in html and 'href="http' not in html  # nothing loads from the network


def test_dashboard_tables_download_as_csv(client, project, project_admin, labeled):
    client.force_login(project_admin)
    response = client.get(f"/projects/{project.pk}/quality/?field=product&csv=field")
    assert response["Content-Type"].startswith("text/csv")
    lines = response.content.decode().strip().splitlines()
    assert lines[0] == "product,label,answers"
    assert "Mail,First Party,3" in lines
    assert client.get(f"/projects/{project.pk}/quality/?csv=nope").status_code == 404


def test_admin_marks_a_gold_document_and_changes_the_settings(client, project, project_admin):
    document = DocumentFactory(project=project, external_id="clause-7")
    client.force_login(project_admin)
    client.post(f"/projects/{project.pk}/quality/gold/", {"document": "clause-7", "labels": ["data_security"]})
    assert GoldAnswer.objects.get(document=document).label_keys == ["data_security"]
    client.post(
        f"/projects/{project.pk}/quality/settings/",
        {"overlap_percent": "20", "overlap_reviewers": "3", "gold_percent": "5"},
    )
    project.refresh_from_db()
    assert (project.overlap_rate, project.overlap_reviewers, project.gold_rate) == (0.2, 3, 0.05)
    response = client.post(
        f"/projects/{project.pk}/quality/settings/",
        {"overlap_percent": "20", "overlap_reviewers": "9", "gold_percent": "5"},
        follow=True,
    )
    assert "Not saved" in response.content.decode()


def labeled_with_one_flip(project, *, flipped: int, unlabeled: int = 0, seed: int = 0) -> tuple[object, list]:
    """40 labeled documents in two well-separated clusters with cached embeddings; document `flipped` carries
    the other cluster's label. `unlabeled` more documents follow, embedded but not answered."""
    reviewer = UserFactory()
    MembershipFactory(project=project, user=reviewer)
    rng = np.random.default_rng(seed)
    keys = ["first_party", "third_party"]
    documents, vectors = [], []
    for i in range(40 + unlabeled):
        true = i % 2
        document = DocumentFactory(project=project)
        documents.append(document)
        vectors.append(np.eye(8)[true] * 4 + rng.normal(0, 0.5, 8))
        if i < 40:
            given = keys[1 - true] if i == flipped else keys[true]
            annotation_submit(reviewer=reviewer, document=document, label_keys=[given])
    _shard_write(
        project.pk,
        project_body_id(project),
        np.asarray([d.pk for d in documents], dtype=np.int64),
        np.asarray(vectors, dtype=np.float32),
    )
    return reviewer, documents


def test_label_error_page_ranks_a_flipped_label_first_and_sends_it_back(client, project, project_admin):
    _, documents = labeled_with_one_flip(project, flipped=7)
    client.force_login(project_admin)
    html = client.get(f"/projects/{project.pk}/quality/label-errors/").content.decode()
    assert f'data-document-id="{documents[7].pk}" class="selected"' in html
    names = dict(Label.objects.filter(taxonomy__project=project).values_list("key", "name"))
    given = html.split(f'data-document-id="{documents[7].pk}"', 1)[1].split("</tr>", 1)[0]
    assert any(f"<td>{name}</td>" in given for key, name in names.items() if name != key)  # names, not keys
    client.post(f"/projects/{project.pk}/quality/label-errors/{documents[7].pk}/send-back/", {"reason": "check"})
    documents[7].refresh_from_db()
    assert documents[7].status == Document.Status.QUEUED
    assert AuditEvent.objects.filter(action="document.send_back").count() == 1
    html = client.get(f"/projects/{project.pk}/quality/label-errors/").content.decode()
    assert f'data-document-id="{documents[7].pk}"' not in html  # gone from the (cached) list at once


def test_a_large_projects_ranking_comes_from_a_worker_and_the_last_one_shows_meanwhile(
    client, project, project_admin, monkeypatch
):
    """Above the inline limit the page never fits heads itself: it asks the worker task and shows what it has."""
    from quality import label_errors as label_error_quality
    from quality.tasks import refresh_label_errors

    reviewer, documents = labeled_with_one_flip(project, flipped=3, unlabeled=1, seed=1)
    monkeypatch.setattr(label_error_quality, "INLINE_ANSWERS", 10)
    client.force_login(project_admin)

    html = client.get(f"/projects/{project.pk}/quality/label-errors/").content.decode()
    assert 'id="label-errors-computing"' in html and "data-document-id" not in html
    assert "labeled documents measured" not in html  # no "0 of 0" while nothing has been measured yet

    assert refresh_label_errors(project.pk) == {"project": project.pk, "computed": True}  # the worker's body
    assert refresh_label_errors(project.pk) == {"project": project.pk, "computed": False}  # current: no refit
    html = client.get(f"/projects/{project.pk}/quality/label-errors/").content.decode()
    assert f'data-document-id="{documents[3].pk}" class="selected"' in html
    assert "label-errors-computing" not in html and "label-errors-stale" not in html

    # A new answer outdates the ranking: the page keeps showing it, says so, and asks for a new one.
    annotation_submit(reviewer=reviewer, document=documents[40], label_keys=["first_party"])
    html = client.get(f"/projects/{project.pk}/quality/label-errors/").content.decode()
    assert 'id="label-errors-stale"' in html
    assert f'data-document-id="{documents[3].pk}" class="selected"' in html
    assert refresh_label_errors(project.pk)["computed"] is True
    assert "label-errors-stale" not in client.get(f"/projects/{project.pk}/quality/label-errors/").content.decode()


def test_a_stored_ranking_of_another_project_that_had_the_same_id_is_never_shown(client, project, project_admin):
    """A database restored or recreated reuses ids; the artifact directory may still hold the old rankings."""
    from quality import label_errors as label_error_quality

    labeled_with_one_flip(project, flipped=5)
    report = label_error_quality.LabelErrorReport(issues=[{"document_id": 1, "text": "not ours"}])
    label_error_quality._report_write(project.pk, f"{project.pk}:0.0:body:1:0:0:0:100", report)
    assert label_error_quality._report_read(project) is None
    client.force_login(project_admin)
    assert "not ours" not in client.get(f"/projects/{project.pk}/quality/label-errors/").content.decode()
