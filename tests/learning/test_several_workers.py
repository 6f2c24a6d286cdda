"""Two worker processes, each with a local directory of its own, sharing one artifact store: a run delivered to
both is trained once, the other worker helps re-embed its pool, and reads its files without encoding again."""

import uuid

import pytest

from learning import tasks
from learning.models import EmbeddingShard, ModelVersion, TrainingRun
from tests.learning.conftest import build_labelled_project, wait_for
from tests.learning.test_training_lanes import start_worker, stop_group, worker_answers

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

LABELS = TrainingRun.Trigger.LABELS


def test_two_workers_share_one_artifact_store_and_never_train_a_run_twice(tmp_path, artifact_dir):
    from config.celery import app

    app.control.purge()
    project, _ = build_labelled_project(pool=12)
    suffix = uuid.uuid4().hex[:8]
    first_queue, second_queue, embed_queue = f"docket-a-{suffix}", f"docket-b-{suffix}", f"docket-embed-{suffix}"
    shared = {"DOCKET_EMBED_SHARD_SIZE": "4", "DOCKET_EMBED_HELPERS": "1", "DOCKET_EMBED_QUEUE": embed_queue}
    local = {name: tmp_path / f"local-{name}" for name in ("first", "second")}
    first = start_worker(first_queue, first_queue, tmp_path / "first.log", DOCKET_VAR_DIR=str(local["first"]), **shared)
    second = start_worker(
        second_queue,
        f"{second_queue},{embed_queue}",
        tmp_path / "second.log",
        DOCKET_VAR_DIR=str(local["second"]),
        **shared,
    )
    try:
        wait_for(lambda: worker_answers(first_queue), timeout=180, what="the first worker")
        wait_for(lambda: worker_answers(second_queue), timeout=180, what="the second worker")
        run = TrainingRun.objects.create(project=project, kind="slow", trigger=LABELS, max_steps=2)
        delivered = tasks.train_slow.apply_async((run.pk,), queue=first_queue)
        wait_for(
            lambda: TrainingRun.objects.filter(pk=run.pk, status="running", celery_task_id=delivered.id).exists(),
            timeout=180,
            what="the first worker to claim the run",
        )
        # The same run delivered again, to the other worker (a broker redelivery, a duplicate send).
        again = tasks.train_slow.apply_async((run.pk,), queue=second_queue)
        assert again.get(timeout=180) == {"run": run.pk, "status": "not claimed"}
        run = wait_for(
            lambda: TrainingRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed", "refused"]).first(),
            timeout=600,
            what=f"the fine-tune to finish (logs in {tmp_path})",
        )
        assert run.status == "succeeded", run.error
        assert run.attempts == 1 and ModelVersion.objects.filter(project=project).count() == 1
        body_id = run.model_version.body_id
        counts = list(
            EmbeddingShard.objects.filter(project=project, body_id=body_id).values_list("document_count", flat=True)
        )
        assert sum(counts) == project.documents.count() == 30  # each document embedded once, by one of them
        wait_for(
            lambda: any(
                "learning.tasks.embed_shards" in line and "succeeded" in line
                for line in (tmp_path / "second.log").read_text().splitlines()
            ),
            timeout=120,
            what="the helper task to end on the second worker",
        )

        # A head refit on the second worker serves from the first worker's body and reads its embedding cache.
        shards = EmbeddingShard.objects.filter(project=project).count()
        refit = TrainingRun.objects.create(project=project, kind="fast", trigger=LABELS, label_events=99)
        tasks.train_fast.apply_async((refit.pk,), queue=second_queue)
        refit = wait_for(
            lambda: TrainingRun.objects.filter(pk=refit.pk, status__in=["succeeded", "failed", "refused"]).first(),
            timeout=300,
            what="the head refit on the second worker",
        )
        assert refit.status == "succeeded", refit.error
        assert refit.model_version.body_id == body_id
        assert EmbeddingShard.objects.filter(project=project).count() == shards  # nothing encoded again
        for directory in local.values():
            assert not [p for p in directory.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".npz")]
    finally:
        stop_group(first)
        stop_group(second)
