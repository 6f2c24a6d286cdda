"""A body fine-tune saves checkpoints and, stopped midway, a second attempt resumes from the last one."""

import json

import pytest

from learning.ml.checkpoint import STATE_FILE, FineTuneCheckpoint, stop_requested
from learning.ml.classifier import Classifier, TrainingArgs
from learning.ml.exceptions import FineTuneInterrupted
from tests.learning.ml.test_classifier import LABELS, SINGLE, TEXTS

ARGS = TrainingArgs(max_steps=6, num_iterations=2, batch_size=8, seed=5)


@pytest.fixture(autouse=True)
def no_stop_left_over():
    stop_requested.clear()
    yield
    stop_requested.clear()


def test_a_fine_tune_asked_to_stop_saves_and_the_next_attempt_trains_only_the_rest(tmp_path):
    checkpoint = FineTuneCheckpoint(directory=tmp_path / "run-1", every_steps=2)
    steps_seen: list[int] = []

    def stop_after_three(done: int, total: int) -> None:
        steps_seen.append(done)
        if done == 3:
            stop_requested.set()  # what the worker's SIGTERM handler does

    first = Classifier.create(LABELS, args=ARGS)
    with pytest.raises(FineTuneInterrupted) as stopped:
        first.fine_tune_body(TEXTS, SINGLE, progress_callback=stop_after_three, checkpoint=checkpoint)
    assert stopped.value.steps_done == 3 and steps_seen == [1, 2, 3]
    assert json.loads((checkpoint.directory / STATE_FILE).read_text())["steps_done"] == 3

    stop_requested.clear()
    resumed_steps: list[int] = []
    second = Classifier.create(LABELS, args=ARGS)
    second.fine_tune_body(TEXTS, SINGLE, progress_callback=lambda d, t: resumed_steps.append(d), checkpoint=checkpoint)
    assert resumed_steps == [4, 5, 6]  # steps 1-3 were not trained again

    uninterrupted = Classifier.create(LABELS, args=ARGS).fine_tune_body(TEXTS, SINGLE)
    assert second.body_id == uninterrupted.body_id  # the same recipe, so the same embedding cache key
    second.fit_head(second.encode(TEXTS), SINGLE)
    assert second.predict(TEXTS[:1])[0] in LABELS


def test_a_checkpoint_of_other_training_data_is_not_resumed(tmp_path):
    checkpoint = FineTuneCheckpoint(directory=tmp_path / "run-2", every_steps=2)
    stop = []

    def stop_at_two(done: int, total: int) -> None:
        if done == 2:
            stop_requested.set()
        stop.append(done)

    with pytest.raises(FineTuneInterrupted):
        Classifier.create(LABELS, args=ARGS).fine_tune_body(
            TEXTS, SINGLE, progress_callback=stop_at_two, checkpoint=checkpoint
        )
    stop_requested.clear()
    other_labels = SINGLE[::-1]
    seen: list[int] = []
    Classifier.create(LABELS, args=ARGS).fine_tune_body(
        TEXTS, other_labels, progress_callback=lambda d, t: seen.append(d), checkpoint=checkpoint
    )
    assert seen[0] == 1 and seen[-1] == 6
