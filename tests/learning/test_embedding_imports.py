"""Embeddings made on Spark come back into the cache as if a worker had encoded them, a fine-tune waiting for them
goes on without encoding, and a file for another project, body or width is refused with nothing stored."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from annotation.models import AuditEvent, Document
from learning import services
from learning.ml.checkpoint import stop_requested
from learning.ml.exceptions import FineTuneInterrupted
from learning.ml.spark_embedding import BODY_FILE, body_identity, body_load, encode_texts, normalises
from learning.models import EmbeddingShard, TrainingRun
from learning.services import reembedding
from learning.services.embeddings import cached_document_ids
from tests.learning.conftest import build_labelled_project, make_document
from tests.learning.ml.frozen import frozen_body

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def running_fine_tune(project) -> TrainingRun:
    return TrainingRun.objects.create(project=project, kind="slow", trigger="labels", status=TrainingRun.Status.RUNNING)


def document_ids(project) -> np.ndarray:
    return np.asarray(sorted(project.documents.values_list("pk", flat=True)), dtype=np.int64)


def texts_of(ids) -> list[str]:
    by_id = dict(Document.objects.filter(pk__in=list(map(int, ids))).values_list("pk", "text"))
    return [by_id[int(pk)] for pk in ids]


def embedded_file(path, ids, vectors, body_id):
    """The Spark embedding job's output: id, body_id, vector (array<float>)."""
    table = pa.table(
        {
            "id": pa.array(np.asarray(ids, dtype=np.int64)),
            "body_id": pa.array([body_id] * len(ids)),
            "vector": pa.array(list(np.asarray(vectors, dtype=np.float32)), type=pa.list_(pa.float32())),
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "part-00000.parquet")
    return path


def waiting_plan(artifact_dir, project, run, ids, *, body_id="ft-waiting", dimension=384):
    """A plan as a fine-tune waiting for Spark leaves it (its body is not needed to import)."""
    plan = artifact_dir / "embeddings" / str(project.pk) / body_id / "plans" / f"run-{run.pk}"
    plan.mkdir(parents=True)
    np.save(plan / "ids.npy", np.asarray(ids, dtype=np.int64))
    meta = {"project_id": project.pk, "run_id": run.pk, "body_id": body_id, "shard_size": 4, "dimension": dimension}
    (plan / "plan.json").write_text(json.dumps(meta))
    return plan


def waiting_plan_path(artifact_dir, project, run, body_id="ft-waiting"):
    return artifact_dir / "embeddings" / str(project.pk) / body_id / "plans" / f"run-{run.pk}"


def nothing_stored(artifact_dir, project):
    assert not EmbeddingShard.objects.filter(project=project).exists()
    assert not list(artifact_dir.glob("embeddings/**/*.npz"))
    assert not AuditEvent.objects.filter(action="import.embeddings").exists()


def test_the_pool_export_writes_every_document_in_parts(artifact_dir, tmp_path):
    project, _ = build_labelled_project(pool=4)
    call_command("export_pool", str(project.pk), "--out", str(tmp_path / "pool"), "--rows-per-file", "8")
    table = pq.read_table(tmp_path / "pool" / "documents").to_pandas().sort_values("id")
    assert len(list((tmp_path / "pool" / "documents").glob("part-*.parquet"))) == 3  # 22 documents, 8 a file
    assert table["id"].tolist() == document_ids(project).tolist()
    assert table["text"].tolist() == texts_of(table["id"])


def test_a_fine_tune_waiting_for_spark_goes_on_once_its_embeddings_are_imported(
    artifact_dir, tmp_path, settings, monkeypatch
):
    settings.DOCKET_REEMBED_ON_SPARK_ABOVE = 10
    monkeypatch.setattr(reembedding, "SPARK_WAIT_SECONDS", 0.01)
    project, _ = build_labelled_project(pool=4)
    run = running_fine_tune(project)
    classifier = frozen_body()
    ids = document_ids(project)
    expected = classifier.encode(texts_of(ids))
    announced, exported = [], {}

    def admin_does_the_spark_part(done, total):
        """While the run waits: export what it needs, embed it (here: Docket's own encode), import it."""
        if exported:
            return
        call_command("export_pool", project.name, "--reembedding", "--out", str(tmp_path / "pool"))
        exported["body"] = body_identity(tmp_path / "pool" / "body")
        pool = pq.read_table(tmp_path / "pool" / "documents").to_pandas()
        rows = np.searchsorted(ids, pool["id"].to_numpy())
        path = embedded_file(tmp_path / "embedded", pool["id"], expected[rows], exported["body"]["body_id"])
        call_command("import_embeddings", str(project.pk), "--body", classifier.body_id, str(path))

    def never(*args, **kwargs):
        pytest.fail("the run encoded what Spark was to embed")

    monkeypatch.setattr(classifier, "encode", never)
    got = reembedding.embeddings_shared(
        project_id=project.pk,
        run_id=run.pk,
        classifier=classifier,
        document_ids=ids,
        progress=admin_does_the_spark_part,
        waiting_for_spark=announced.append,
    )
    assert announced == [len(ids)]
    assert exported["body"]["body_id"] == classifier.body_id and exported["body"]["dimension"] == 384
    assert (tmp_path / "pool" / "body" / "modules.json").is_file() and (
        tmp_path / "pool" / "body" / BODY_FILE
    ).is_file()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert not list(artifact_dir.glob("embeddings/*/*/plans/run-*"))  # the plan is gone once the run went on
    # Later readers find them in the cache, nothing encoded.
    cached = services.embeddings_for(project_id=project.pk, body_id=classifier.body_id, document_ids=ids, encode=never)
    np.testing.assert_allclose(cached, expected, atol=1e-5, rtol=0)


def test_the_import_reports_what_the_waiting_run_still_lacks(artifact_dir, tmp_path, capsys):
    project, _ = build_labelled_project(pool=4)
    run = running_fine_tune(project)
    ids = document_ids(project)
    waiting_plan(artifact_dir, project, run, ids, dimension=3)
    vectors = np.arange(len(ids) * 3, dtype=np.float32).reshape(-1, 3)
    call_command(
        "import_embeddings",
        str(project.pk),
        "--body",
        "ft-waiting",
        str(embedded_file(tmp_path / "half", ids[:10], vectors[:10], "ft-waiting")),
    )
    assert f"Run {run.pk} still waits for {len(ids) - 10} documents" in capsys.readouterr().out
    stored = services.embeddings_for(project_id=project.pk, body_id="ft-waiting", document_ids=ids[:10], encode=None)
    np.testing.assert_array_equal(stored, vectors[:10])
    assert AuditEvent.objects.get(action="import.embeddings").after["documents"] == 10


def test_ids_of_another_project_or_of_no_document_are_refused_with_nothing_stored(artifact_dir, tmp_path):
    project, _ = build_labelled_project(pool=2)
    other, _ = build_labelled_project(pool=0)
    stranger = make_document(other, "A document of another project entirely.")
    run = running_fine_tune(project)
    ids = document_ids(project)
    waiting_plan(artifact_dir, project, run, ids, dimension=3)
    wanted = np.concatenate([ids, [stranger.pk, 987654321]])
    path = embedded_file(tmp_path / "e", wanted, np.ones((len(wanted), 3)), "ft-waiting")
    with pytest.raises(CommandError) as refused:
        call_command("import_embeddings", str(project.pk), "--body", "ft-waiting", str(path))
    message = str(refused.value)
    assert f"2 of {len(wanted)} ids are not documents of" in message
    assert f"1 are documents of another project (e.g. {stranger.pk})" in message
    assert "1 are no document of Docket" in message and "987654321" in message
    nothing_stored(artifact_dir, project)


def test_documents_deleted_since_the_export_are_left_out_and_the_rest_stored(artifact_dir, tmp_path, capsys):
    project, _ = build_labelled_project(pool=4)
    run = running_fine_tune(project)
    ids = document_ids(project)
    waiting_plan(artifact_dir, project, run, ids, dimension=3)
    vectors = np.arange(len(ids) * 3, dtype=np.float32).reshape(-1, 3)
    path = embedded_file(tmp_path / "e", ids, vectors, "ft-waiting")
    gone = int(ids[1])
    Document.objects.filter(pk=gone).delete()

    call_command("import_embeddings", str(project.pk), "--body", "ft-waiting", str(path))

    out = capsys.readouterr().out
    assert f"1 ids are of documents deleted since the export (e.g. {gone})" in out
    assert f"Run {run.pk} has every embedding it waited for" in out
    kept = np.asarray([pk for pk in ids if pk != gone])
    stored = services.embeddings_for(project_id=project.pk, body_id="ft-waiting", document_ids=kept, encode=None)
    np.testing.assert_array_equal(stored, vectors[ids != gone])
    assert gone not in set(cached_document_ids(project_id=project.pk, body_id="ft-waiting").tolist())
    after = AuditEvent.objects.get(action="import.embeddings").after
    assert (after["documents"], after["deleted_left_out"]) == (len(ids) - 1, 1)
    reembedding.shards_wait(waiting_plan_path(artifact_dir, project, run), limit=0)  # waits for no deleted document


def test_vectors_of_another_width_are_refused_with_nothing_stored(artifact_dir, tmp_path):
    project, _ = build_labelled_project(pool=2)
    run = running_fine_tune(project)
    ids = document_ids(project)
    waiting_plan(artifact_dir, project, run, ids, dimension=384)
    path = embedded_file(tmp_path / "e", ids, np.ones((len(ids), 768)), "ft-waiting")
    with pytest.raises(CommandError, match="vectors have 768 dimensions, but body ft-waiting makes 384"):
        call_command("import_embeddings", str(project.pk), "--body", "ft-waiting", str(path))
    nothing_stored(artifact_dir, project)


def test_embeddings_of_a_body_nobody_waits_for_are_refused_with_nothing_stored(artifact_dir, tmp_path):
    project, _ = build_labelled_project(pool=2)
    run = running_fine_tune(project)
    ids = document_ids(project)
    waiting_plan(artifact_dir, project, run, ids, dimension=3)
    # Embedded with an older body than the one the run waits for.
    path = embedded_file(tmp_path / "old", ids, np.ones((len(ids), 3)), "ft-older")
    with pytest.raises(CommandError, match="No re-embedding of .* waits for body ft-older.*ft-waiting"):
        call_command("import_embeddings", str(project.pk), "--body", "ft-older", str(path))
    # A file whose rows say another body than the one named.
    with pytest.raises(CommandError, match="embeddings under body ft-older, not ft-waiting"):
        call_command("import_embeddings", str(project.pk), "--body", "ft-waiting", str(path))
    # Once the run is over, nothing waits for its body any more.
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.FAILED)
    good = embedded_file(tmp_path / "good", ids, np.ones((len(ids), 3)), "ft-waiting")
    with pytest.raises(CommandError, match="no re-embedding waits now"):
        call_command("import_embeddings", str(project.pk), "--body", "ft-waiting", str(good))
    nothing_stored(artifact_dir, project)


def test_the_reembedding_export_is_refused_when_no_run_waits(artifact_dir, tmp_path):
    project, _ = build_labelled_project(pool=2)
    with pytest.raises(CommandError, match="No fine-tune of .* waits for its re-embedding"):
        call_command("export_pool", str(project.pk), "--reembedding", "--out", str(tmp_path / "pool"))


def test_a_run_waiting_for_spark_gives_up_after_its_limit_and_pauses_when_its_worker_stops(artifact_dir):
    project, _ = build_labelled_project(pool=2)
    run = running_fine_tune(project)
    plan = waiting_plan(artifact_dir, project, run, document_ids(project), dimension=3)
    with pytest.raises(TimeoutError, match="import them with manage.py import_embeddings"):
        reembedding.shards_wait(plan, limit=0)
    stop_requested.set()
    try:
        with pytest.raises(FineTuneInterrupted):
            reembedding.shards_wait(plan, limit=60, steps=5)
    finally:
        stop_requested.clear()


def test_a_fine_tune_left_to_spark_switches_models_once_the_import_is_in(artifact_dir, tmp_path, settings, monkeypatch):
    settings.DOCKET_REEMBED_ON_SPARK_ABOVE = 5
    monkeypatch.setattr(reembedding, "SPARK_WAIT_SECONDS", 0.01)
    project, _ = build_labelled_project(pool=4)
    run = services.training_run_request(project=project, kind="slow", trigger=TrainingRun.Trigger.LABELS, max_steps=2)
    real_wait = reembedding.shards_wait

    def spark_meanwhile(plan, **options):
        """What an admin does while the run waits: export, embed as the Spark job does, import."""
        assert TrainingRun.objects.get(pk=run.pk).phase.startswith("Waiting for 22 embeddings from Spark")
        call_command("export_pool", str(project.pk), "--reembedding", "--out", str(tmp_path / "pool"))
        body = tmp_path / "pool" / "body"
        pool = pq.read_table(tmp_path / "pool" / "documents").to_pandas()
        vectors = encode_texts(body_load(str(body), 1)[0], pool["text"].tolist(), normalise=normalises(body))
        embedded = embedded_file(tmp_path / "embedded", pool["id"], vectors, body_identity(body)["body_id"])
        call_command("import_embeddings", str(project.pk), "--body", body_identity(body)["body_id"], str(embedded))
        return real_wait(plan, **options)

    monkeypatch.setattr(reembedding, "shards_wait", spark_meanwhile)
    run = services.training_run_execute(run_id=run.pk)
    assert run.status == "succeeded", run.error
    version = run.model_version
    assert version.status == "active" and version.body_id.startswith("ft-")
    # Every embedding under the new body is the import's: the worker encoded none of the documents.
    shards = EmbeddingShard.objects.filter(project=project, body_id=version.body_id)
    assert list(shards.values_list("document_count", flat=True)) == [22]
    assert run.timings["embed_spark"] > 0
